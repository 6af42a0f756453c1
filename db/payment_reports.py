"""Read-only queries over the ledger, for ``securepay payments export`` and ``reconcile``.

Windows are whole days in the utility's zone (what the billing office means by "the
payments of Tuesday"), turned here into a half-open range of aware UTC instants: a
payment at 02:00 UTC belongs to the previous day in Chicago. Rows are frozen copies,
detached from the session; money stays integer cents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from db.models import Account, AutopayDraft, Payment, PaymentAttempt

__all__ = ["AttemptLine", "DayWindow", "PaymentLine", "attempts_made", "payments_taken"]


@dataclass(frozen=True)
class DayWindow:
    """The days ``since`` to ``until`` (both included) in ``zone``."""

    since: date
    until: date
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.until < self.since:
            raise ValueError(f"the window ends ({self.until}) before it starts ({self.since})")

    @property
    def start(self) -> datetime:
        """The first instant of ``since`` in the zone, as UTC (included)."""
        return datetime.combine(self.since, time.min, self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The first instant of the day after ``until`` in the zone, as UTC (excluded)."""
        return datetime.combine(self.until + timedelta(days=1), time.min, self.zone).astimezone(UTC)

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    def __str__(self) -> str:
        days = str(self.since) if self.since == self.until else f"{self.since} to {self.until}"
        return f"{days} ({self.zone.key})"


@dataclass(frozen=True)
class PaymentLine:
    """One payment taken, as the billing system posts it."""

    payment_id: int
    attempt_id: str
    taken_at: datetime
    account_number: str
    amount_cents: int
    confirmation: str
    processor_id: str
    method_brand: str
    method_last4: str
    status: str
    channel: str = "ivr"  # "autopay" for an Auto Pay draft


def payments_taken(session: Session, window: DayWindow) -> list[PaymentLine]:
    """The payments taken in ``window``, oldest first."""
    rows = session.execute(
        select(
            Payment.id.label("payment_id"),
            Payment.attempt_id,
            Payment.taken_at,
            Account.account_number,
            Payment.amount_cents,
            Payment.confirmation,
            Payment.processor_id,
            PaymentAttempt.method_brand,
            PaymentAttempt.method_last4,
            Payment.status,
            case((AutopayDraft.id.is_not(None), "autopay"), else_="ivr").label("channel"),
        )
        .join(Account, Account.id == Payment.account_id)
        .join(PaymentAttempt, PaymentAttempt.id == Payment.attempt_id)
        .outerjoin(AutopayDraft, AutopayDraft.attempt_id == Payment.attempt_id)
        .where(Payment.taken_at >= window.start, Payment.taken_at < window.end)
        .order_by(Payment.taken_at, Payment.id)
    )
    return [PaymentLine(**row._asdict()) for row in rows]


@dataclass(frozen=True)
class AttemptLine:
    """One charge attempt and what we recorded of it, for comparing with the processor."""

    attempt_id: str
    created_at: datetime
    account_number: str
    customer_id: str | None  # the account's processor customer (cus_...), if any
    amount_cents: int
    status: str  # the attempt's: pending, succeeded, processing, declined, failed, unknown
    processor_id: str | None  # pi_..., when the processor answered
    payment_id: int | None
    payment_amount_cents: int | None
    payment_status: str | None
    confirmation: str | None


def attempts_made(session: Session, window: DayWindow) -> list[AttemptLine]:
    """The charge attempts created in ``window``, oldest first, with their payment."""
    rows = session.execute(
        select(
            PaymentAttempt.id.label("attempt_id"),
            PaymentAttempt.created_at,
            Account.account_number,
            Account.processor_customer_id.label("customer_id"),
            PaymentAttempt.amount_cents,
            PaymentAttempt.status,
            PaymentAttempt.processor_id,
            Payment.id.label("payment_id"),
            Payment.amount_cents.label("payment_amount_cents"),
            Payment.status.label("payment_status"),
            Payment.confirmation,
        )
        .join(Account, Account.id == PaymentAttempt.account_id)
        .outerjoin(Payment, Payment.attempt_id == PaymentAttempt.id)
        .where(PaymentAttempt.created_at >= window.start, PaymentAttempt.created_at < window.end)
        .order_by(PaymentAttempt.created_at, PaymentAttempt.id)
    )
    return [AttemptLine(**row._asdict()) for row in rows]
