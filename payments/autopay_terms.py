"""Auto Pay's terms and what an agreement is, apart from where it is stored.

The flow, the portal, the draft run and the notices share these types; none of them
imports the database here. ``TERMS_VERSION`` names the wording the member agreed to
(said on the phone, sent in writing, accepted by the portal); a change of wording is a
new version, and agreements keep the version they were made under.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from ivr.flows.speech import say_date

__all__ = [
    "TERMS_VERSION",
    "Cancelled",
    "Channel",
    "ChangeView",
    "DraftView",
    "EnrollmentStatus",
    "Enrolled",
    "EnrollmentView",
    "Wording",
    "method_words",
    "written_terms",
]

TERMS_VERSION = "2026-12-01"

Channel = Literal["ivr", "portal", "staff"]
EnrollmentStatus = Literal["active", "cancelled", "suspended"]


@dataclass(frozen=True)
class EnrollmentView:
    """One agreement: what was agreed (never changed) and where it stands now."""

    id: int
    account_id: int
    payment_method_id: int | None  # None once the method is off file
    method_processor_id: str
    method_kind: str
    method_brand: str
    method_last4: str
    terms_version: str
    agreed_at: datetime
    channel: Channel
    agreed_by: str
    first_due_after: date  # bills due after this day are drafted
    recording_sid: str | None
    status: EnrollmentStatus
    status_changed_at: datetime
    status_reason: str | None
    consecutive_declines: int

    def covers(self, due_date: date) -> bool:
        return due_date > self.first_due_after


@dataclass(frozen=True)
class ChangeView:
    enrollment_id: int
    at: datetime
    action: str  # enrolled, method_changed, cancelled, suspended
    channel: str  # ivr, portal, staff, autopay (the draft run)
    actor: str
    reason: str | None


@dataclass(frozen=True)
class DraftView:
    id: int
    enrollment_id: int
    due_date: date
    amount_cents: int
    status: str
    decline_code: str | None
    attempt_id: str
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class Wording:
    """What every notice names: the utility, its member services number; and whether
    notices also go by text message (``SECUREPAY_SMS_FROM`` set: the text receipt is on)."""

    utility_name: str
    member_services: str
    texts: bool = False


@dataclass(frozen=True)
class Enrolled:
    enrollment: EnrollmentView
    change: str  # "enrolled", "method_changed", or "unchanged" (same method, already active)
    notice_ids: tuple[int, ...]  # the written notices to send after the commit (e-mail, text)


@dataclass(frozen=True)
class Cancelled:
    enrollment: EnrollmentView
    notice_ids: tuple[int, ...]


_BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover"}


def method_words(kind: str, brand: str, last4: str, lang: str) -> str:
    """``Visa ending in 4242`` / ``cuenta bancaria terminada en 6789``."""
    if kind == "bank":
        name = "bank account" if lang == "en" else "cuenta bancaria"
    else:
        name = _BRANDS.get(brand.lower(), brand.title())
    return f"{name} {'ending in' if lang == 'en' else 'terminada en'} {last4}"


def written_terms(
    enrollment: EnrollmentView,
    *,
    lang: str,
    utility_name: str,
    account_last4: str,
    member_services: str,
) -> str:
    """The terms as they are sent in writing; the same points the phone reads."""
    method = method_words(enrollment.method_kind, enrollment.method_brand, enrollment.method_last4, lang)
    after = say_date(enrollment.first_due_after, lang, with_year=True)
    if lang == "es":
        lines = [
            f"Pago automático de {utility_name}, cuenta terminada en {account_last4}.",
            f"Usted autorizó a {utility_name} a cobrar el saldo total de cada factura en su fecha de",
            f"vencimiento, con su {method}, a partir de la primera factura que vence después del {after}.",
            "Una factura ya emitida no está cubierta: páguela como de costumbre.",
            "Para cancelar: llame a esta línea y oprima 4, use el portal, o llame a servicios al",
            f"socio al {member_services}. Términos versión {enrollment.terms_version}.",
        ]
    else:
        lines = [
            f"{utility_name} Auto Pay, account ending in {account_last4}.",
            f"You authorized {utility_name} to charge the full balance of each bill on its due date",
            f"to your {method}, starting with the first bill due after {after}.",
            "A bill already issued is not covered: pay it as usual.",
            "To cancel: call this line and press 4, use the portal, or call member services at",
            f"{member_services}. Terms version {enrollment.terms_version}.",
        ]
    return "\n".join(lines) + "\n"
