"""Read-only queries over calls and their trail, for ``securepay calls list|show|stats``.

A call belongs to the local day it started on (``DayWindow``: whole days in the
utility's zone, as aware UTC bounds). Rows are frozen copies, detached from the
session. Nothing here reads a secret: the trail never holds one (SECURITY 17), and
only the processor ids, brand and last four of a card are in the attempts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callcapture import normalize_caller_id
from db.models import Account, AuditEvent, Call, Payment, PaymentAttempt
from db.payment_reports import DayWindow

__all__ = [
    "OUTCOMES",
    "AttemptLine",
    "CallLine",
    "CallTrail",
    "TrailEvent",
    "call_trail",
    "call_trails",
    "calls_started",
]

# How a call can end, as stored in ``calls.outcome``: by the flow, or by Twilio's status
# callback (``abandoned`` when the caller hung up mid-call; busy, no-answer, failed and
# canceled for a call that never got going).
OUTCOMES = (
    "paid",
    "declined",
    "locked-out",
    "auth-failed",
    "abandoned",
    "transferred",
    "no-input",
    "unidentified",
    "payment-unknown",
    "completed",
    "error",
    "busy",
    "no-answer",
    "failed",
    "canceled",
)


@dataclass(frozen=True)
class CallLine:
    """One call as a list shows it; ``paid_cents`` sums the payments taken on it."""

    call_sid: str
    started_at: datetime
    ended_at: datetime | None
    from_number: str
    account_number: str | None
    status: str  # active or ended
    state: str  # where the call is (or ended)
    outcome: str | None  # None while the call is active
    paid_cents: int

    @property
    def caller(self) -> str | None:
        """The caller's number in E.164, as Call Capture reads Twilio's ``From``."""
        return normalize_caller_id(self.from_number)


@dataclass(frozen=True)
class TrailEvent:
    """One trail entry of a call: ``state`` is where the call was when it happened."""

    occurred_at: datetime
    event: str
    state: str | None
    success: bool
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class AttemptLine:
    """A charge attempt made on the call, with the payment it took, if any."""

    attempt_id: str
    attempt_no: int
    created_at: datetime
    amount_cents: int
    status: str
    method_brand: str
    method_last4: str
    processor_id: str | None
    decline_code: str | None
    confirmation: str | None


@dataclass(frozen=True)
class CallTrail:
    """A call with its trail (oldest first) and its charge attempts."""

    call: CallLine
    events: tuple[TrailEvent, ...]
    attempts: tuple[AttemptLine, ...] = ()

    @property
    def started_at(self) -> datetime:
        return self.call.started_at

    @property
    def outcome(self) -> str | None:
        return self.call.outcome

    @property
    def accounts_last4(self) -> tuple[str, ...]:
        """Every account the call was about, in order, by last four (a caller may pay
        another account in the same call, key 5): from the trail, and the call's own."""
        found: list[str] = []
        for event in self.events:
            last4 = event.detail.get("account_last4")
            if event.event == "account_identified" and isinstance(last4, str) and last4 not in found:
                found.append(last4)
        own = self.call.account_number
        if own is not None and own[-4:] not in found:
            found.append(own[-4:])
        return tuple(found)


def _call_lines(session: Session, *conditions: Any) -> list[CallLine]:
    paid = (
        select(func.coalesce(func.sum(Payment.amount_cents), 0))
        .join(PaymentAttempt, PaymentAttempt.id == Payment.attempt_id)
        .where(PaymentAttempt.call_sid == Call.call_sid)
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Call.call_sid,
            Call.started_at,
            Call.ended_at,
            Call.from_number,
            Account.account_number,
            Call.status,
            Call.state,
            Call.outcome,
            paid.label("paid_cents"),
        )
        .outerjoin(Account, Account.id == Call.account_id)
        .where(*conditions)
        .order_by(Call.started_at, Call.id)
    )
    return [CallLine(**{**row._asdict(), "paid_cents": int(row.paid_cents)}) for row in rows]


def calls_started(
    session: Session,
    window: DayWindow,
    *,
    account_number: str | None = None,
    caller: str | None = None,
    outcome: str | None = None,
) -> list[CallLine]:
    """The calls started in ``window``, oldest first.

    ``caller`` is an E.164 number (``normalize_on_file``); it is matched against each
    call's ``From`` read the way Call Capture reads it.
    """
    conditions: list[Any] = [Call.started_at >= window.start, Call.started_at < window.end]
    if account_number is not None:
        conditions.append(Account.account_number == account_number)
    if outcome is not None:
        conditions.append(Call.outcome == outcome)
    lines = _call_lines(session, *conditions)
    if caller is not None:
        lines = [line for line in lines if line.caller == caller]
    return lines


def _events(session: Session, call_sids: Iterable[str]) -> dict[str, list[TrailEvent]]:
    """Each call's trail in the order it was written (one call's steps are serialized)."""
    sids = list(call_sids)
    found: dict[str, list[TrailEvent]] = defaultdict(list)
    for start in range(0, len(sids), 500):  # keep the IN list within every backend's limits
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.call_sid.in_(sids[start : start + 500]))
            .order_by(AuditEvent.id)
        )
        for row in rows:
            detail = dict(row.detail or {})
            state = detail.pop("state", None)
            found[str(row.call_sid)].append(
                TrailEvent(row.occurred_at, row.event, state, bool(row.success), detail)
            )
    return found


def _attempts(session: Session, call_sid: str) -> tuple[AttemptLine, ...]:
    rows = session.execute(
        select(
            PaymentAttempt.id.label("attempt_id"),
            PaymentAttempt.attempt_no,
            PaymentAttempt.created_at,
            PaymentAttempt.amount_cents,
            PaymentAttempt.status,
            PaymentAttempt.method_brand,
            PaymentAttempt.method_last4,
            PaymentAttempt.processor_id,
            PaymentAttempt.decline_code,
            Payment.confirmation,
        )
        .outerjoin(Payment, Payment.attempt_id == PaymentAttempt.id)
        .where(PaymentAttempt.call_sid == call_sid)
        .order_by(PaymentAttempt.attempt_no)
    )
    return tuple(AttemptLine(**row._asdict()) for row in rows)


def call_trail(session: Session, call_sid: str) -> CallTrail | None:
    """One call with its trail and attempts, or None when no call has that SID."""
    lines = _call_lines(session, Call.call_sid == call_sid)
    if not lines:
        return None
    (line,) = lines
    events = _events(session, [call_sid]).get(call_sid, [])
    return CallTrail(line, tuple(events), _attempts(session, call_sid))


def call_trails(session: Session, window: DayWindow) -> list[CallTrail]:
    """The calls started in ``window`` with their trails (attempts left out), oldest first."""
    lines = calls_started(session, window)
    events = _events(session, (line.call_sid for line in lines))
    return [CallTrail(line, tuple(events.get(line.call_sid, ()))) for line in lines]
