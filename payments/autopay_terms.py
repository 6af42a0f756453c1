"""Auto Pay's terms and what an agreement is, apart from where it is stored.

The flow, the portal, the draft run and the notices share these types; none of them
imports the database here. The wording of the written terms is in the notice templates
(``payments/templates/autopay_*.txt.j2``). ``TERMS_VERSION`` names the wording the member agreed to
(said on the phone, sent in writing, accepted by the portal); a change of wording is a
new version, and agreements keep the version they were made under.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

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
    "brand_name",
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
    """What every notice names: the utility, its member services number; whether
    notices also go by text message (``SECUREPAY_SMS_FROM`` set: the text receipt is on);
    and where a utility's own notice templates are (``SECUREPAY_TEMPLATES_DIR``)."""

    utility_name: str
    member_services: str
    texts: bool = False
    templates_dir: str | None = None


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


def brand_name(brand: str) -> str:
    """``visa`` -> ``Visa``: a card's brand as the notices write it (the wording around
    it, ``ending in 4242``, is the templates')."""
    return _BRANDS.get(brand.lower(), brand.title())
