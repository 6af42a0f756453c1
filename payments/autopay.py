"""The Auto Pay drafts: ``securepay autopay run [--date D]``, once a day.

For each active agreement whose account has a bill due on ``day`` (the utility's local
date) that the agreement covers, the balance then (the import less the payments taken
since: a bill paid early by phone is not drafted) is charged off-session with the
agreed method, through the same ledger as the phone:

1. Under the account's row lock, the draft (unique per account and due date) and its
   payment attempt are written and COMMITTED before the processor hears of it; the
   attempt's id is the idempotency key. Its ``call_sid`` is ``autopay-{agreement}-{day}``.
2. Under the lock again, the draft is charged if still pending. A draft found pending
   from an earlier run (a crash, a processor that could not be reached) is first looked
   up at the processor, and charged with the SAME key only when not found there.
3. The outcome is committed with the lock: a second run, or two runs at once, find the
   bill drafted and charge nothing.

An unknown outcome (a 5xx, a timeout after sending) is looked up once; if still unknown
the draft stays ``unknown`` for ``securepay payments reconcile`` and is never charged
again. A decline leaves the bill unpaid and tells the member; ``declines_to_suspend``
declines in a row suspend the agreement, as does a method the processor no longer
holds. Amounts are within the phone's maximum, and the run stops drafting once
``cap_cents`` is reached (the rest wait for a later run the same day: a bad import must
not empty the members' accounts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.orm import Session, sessionmaker

from db.autopay import RUN_CHANNEL, SqlAutopay
from db.repositories import SqlAccounts, SqlEvents
from db.unit_of_work import SqlUnitOfWork
from ivr.flows.ports import AttemptView, Clock, MethodRef
from payments.autopay_notices import NoticeKind, Wording, write_notice
from payments.charge_outcomes import Declined, Deferred, DraftOutcome, NotCharged, Unknown
from payments.gateway import (
    ActionRequired,
    CardDeclined,
    ChargeResult,
    InvalidPaymentMethod,
    OutcomeUnknown,
    PaymentError,
    PaymentGateway,
    ProcessorUnavailable,
)

if TYPE_CHECKING:
    from ivr.settings import Settings

__all__ = ["DraftLine", "RunLimits", "RunReport", "limits_from", "run_drafts"]

log = structlog.get_logger()

CURRENCY = "usd"


@dataclass(frozen=True)
class RunLimits:
    min_cents: int
    max_cents: int  # one draft: the phone's maximum
    cap_cents: int  # the whole run
    declines_to_suspend: int


@dataclass(frozen=True)
class DraftLine:
    """What the run did with one account's bill."""

    account_number: str
    due_date: date
    result: str  # charged, processing, declined, unknown, deferred, not-charged, skipped
    amount_cents: int = 0
    reason: str = ""
    confirmation: str = ""

    def __str__(self) -> str:
        amount = f" {_dollars(self.amount_cents)}" if self.amount_cents else ""
        extra = f" confirmation {self.confirmation}" if self.confirmation else ""
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.account_number} due {self.due_date}: {self.result}{amount}{extra}{why}"


@dataclass
class RunReport:
    day: date
    lines: list[DraftLine] = field(default_factory=list)
    payment_ids: list[int] = field(default_factory=list)  # receipts to send
    notice_ids: list[int] = field(default_factory=list)  # notices to send

    def count(self, result: str) -> int:
        return sum(line.result == result for line in self.lines)

    def summary(self) -> str:
        charged = sum(line.amount_cents for line in self.lines if line.result in ("charged", "processing"))
        parts = [
            f"{self.count(result)} {result}"
            for result in (
                "charged",
                "processing",
                "declined",
                "unknown",
                "deferred",
                "not-charged",
                "skipped",
            )
        ]
        return f"{self.day}: " + ", ".join(parts) + f"; {_dollars(charged)} drafted"


def _dollars(cents: int) -> str:
    dollars, rest = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}${dollars:,}.{rest:02d}"


@dataclass(frozen=True)
class _Opened:
    draft_id: int
    attempt: AttemptView
    resumed: bool
    account_number: str


def run_drafts(
    sessions: sessionmaker[Session],
    gateway: PaymentGateway,
    clock: Clock,
    *,
    day: date,
    limits: RunLimits,
    wording: Wording,
    process: str = "securepay-autopay",
) -> RunReport:
    """Draft the bills due on ``day``; see the module's description. Raises only when
    the run cannot go on (the database); a processor's failure is a line of the report."""
    report = RunReport(day)
    drafted = 0

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(sessions, process=process, clock=clock.now)

    with sessions() as session:
        account_ids = SqlAutopay(session).due_on(day)
    for account_id in account_ids:
        with uow() as work:
            opened = _open(work, account_id, day, limits, drafted, report, clock)
            work.commit()
        if opened is None:
            continue
        with uow() as work:
            line = _charge(work, gateway, opened, day, limits, wording, report, clock)
            work.commit()
        report.lines.append(line)
        if line.result in ("charged", "processing"):
            drafted += line.amount_cents
        log.info("autopay_draft_done", account_id=account_id, due_date=str(day), result=line.result)
    return report


def _sid(enrollment_id: int, day: date) -> str:
    return f"autopay-{enrollment_id}-{day:%Y%m%d}"


def _open(
    work: SqlUnitOfWork,
    account_id: int,
    day: date,
    limits: RunLimits,
    drafted: int,
    report: RunReport,
    clock: Clock,
) -> _Opened | None:
    """Step 1: the draft and its attempt, or the one an earlier run left; None to skip."""
    autopay = SqlAutopay(work.session)
    work.ledger.lock_account(account_id)
    account = SqlAccounts(work.session).get(account_id)
    existing = autopay.draft_for(account_id, day)
    if existing is not None:
        attempt = work.ledger.attempt_by_id(existing.attempt_id)
        if attempt is None:  # pragma: no cover - a foreign key
            raise LookupError(f"no payment attempt {existing.attempt_id}")
        if existing.status == "pending":
            return _Opened(existing.id, attempt, True, account.number)
        report.lines.append(
            DraftLine(
                account.number, day, "skipped", existing.amount_cents, f"drafted already: {existing.status}"
            )
        )
        return None

    def skip(reason: str, amount: int = 0) -> None:
        report.lines.append(DraftLine(account.number, day, "skipped", amount, reason))

    enrollment = autopay.live(account_id)
    if enrollment is None or enrollment.status != "active":
        state = "cancelled" if enrollment is None else f"suspended ({enrollment.status_reason})"
        skip(f"Auto Pay {state}")
        return None
    if account.due_date != day or not enrollment.covers(day):
        skip("no bill covered due that day")
        return None
    balance = account.balance_cents
    if balance <= 0:
        skip("nothing due: paid already" if balance == 0 else "nothing due: a credit")
        return None
    if balance < limits.min_cents:
        skip("below the minimum payment", balance)
        return None
    if balance > limits.max_cents:
        skip("above the maximum payment: left for the member", balance)
        return None
    if drafted + balance > limits.cap_cents:
        skip("the run's cap is reached: run again after checking the import", balance)
        return None
    attempt = work.ledger.open_attempt(
        call_sid=_sid(enrollment.id, day),
        attempt_no=1,
        account_id=account_id,
        amount_cents=balance,
        method=MethodRef(enrollment.method_processor_id, enrollment.method_brand, enrollment.method_last4),
        caller=None,
        now=clock.now(),
    )
    draft = autopay.open_draft(
        enrollment.id, account_id, day, attempt_id=attempt.id, amount_cents=balance, now=clock.now()
    )
    _event(work.events, "autopay_draft_opened", attempt, amount_cents=balance, due_date=str(day))
    return _Opened(draft.id, attempt, False, account.number)


def _event(
    events: SqlEvents, name: str, attempt: AttemptView, success: bool = True, **detail: object
) -> None:
    events.record(
        name,
        call_sid=attempt.call_sid,
        account_id=attempt.account_id,
        actor="autopay",
        success=success,
        **detail,
    )


def _charge(
    work: SqlUnitOfWork,
    gateway: PaymentGateway,
    opened: _Opened,
    day: date,
    limits: RunLimits,
    wording: Wording,
    report: RunReport,
    clock: Clock,
) -> DraftLine:
    """Step 2: charge the pending draft under the lock, and record what happened."""
    autopay = SqlAutopay(work.session)
    work.ledger.lock_account(opened.attempt.account_id)
    draft = autopay.draft_for(opened.attempt.account_id, day)
    attempt = opened.attempt
    line = _line_for(opened, day)
    if draft is None or draft.status != "pending":  # another run settled it meanwhile
        return line("skipped", "drafted already by another run")
    customer_id = work.methods.customer_id(attempt.account_id)
    outcome = _ask(gateway, attempt, customer_id, resumed=opened.resumed)
    now = clock.now()
    ledger = work.ledger
    if isinstance(outcome, ChargeResult):
        ledger.settle(attempt.id, status=outcome.status, processor_id=outcome.processor_id, now=now)
        payment = ledger.record_payment(
            attempt, processor_id=outcome.processor_id, status=outcome.status, now=now
        )
        autopay.settle_draft(opened.draft_id, status=outcome.status, now=now)
        _event(
            work.events,
            "autopay_draft_succeeded",
            attempt,
            processor_id=outcome.processor_id,
            amount_cents=attempt.amount_cents,
        )
        report.payment_ids.append(payment.id)
        result = "charged" if outcome.status == "succeeded" else "processing"
        return line(result, confirmation=payment.confirmation)
    if isinstance(outcome, Declined):
        ledger.settle(attempt.id, status="declined", decline_code=outcome.code, now=now)
        enrollment = autopay.settle_draft(
            opened.draft_id, status="declined", decline_code=outcome.code, now=now
        )
        _event(work.events, "autopay_draft_declined", attempt, success=False, decline_code=outcome.code)
        kinds: list[NoticeKind] = ["declined"]
        reason = "declined: the bill is left for the member"
        if outcome.method_unusable or enrollment.consecutive_declines >= limits.declines_to_suspend:
            why = "method_unusable" if outcome.method_unusable else "declines"
            enrollment = autopay.suspend(
                enrollment.id, reason=why, channel=RUN_CHANNEL, actor="autopay", now=now
            )
            _event(work.events, "autopay_suspended", attempt, success=False, reason=why)
            kinds.append("suspended")
            reason += "; Auto Pay suspended"
        for kind in kinds:
            report.notice_ids.extend(write_notice(
                work.session,
                kind,
                enrollment,
                wording=wording,
                now=now,
                amount_cents=attempt.amount_cents,
                due_date=day,
            ))
        return line("declined", reason)
    if isinstance(outcome, Unknown):
        ledger.settle(attempt.id, status="unknown", now=now)
        autopay.settle_draft(opened.draft_id, status="unknown", now=now)
        _event(work.events, "autopay_draft_unknown", attempt, success=False, reason=outcome.reason)
        return line("unknown", f"{outcome.reason}: left for payments reconcile, never charged again")
    if isinstance(outcome, Deferred):
        _event(work.events, "autopay_draft_deferred", attempt, success=False, reason=outcome.reason)
        return line("deferred", f"{outcome.reason}: the next run looks it up, then retries with the same key")
    ledger.settle(attempt.id, status="failed", now=now)
    autopay.settle_draft(opened.draft_id, status="failed", now=now)
    _event(work.events, "autopay_draft_failed", attempt, success=False, reason=outcome.reason)
    return line("not-charged", outcome.reason)


def _line_for(opened: _Opened, day: date) -> Callable[..., DraftLine]:
    def line(result: str, reason: str = "", confirmation: str = "") -> DraftLine:
        return DraftLine(
            opened.account_number, day, result, opened.attempt.amount_cents, reason, confirmation
        )

    return line




def _ask(
    gateway: PaymentGateway, attempt: AttemptView, customer_id: str | None, *, resumed: bool
) -> DraftOutcome:
    """The processor's answer for the attempt: looked up first when resumed, charged
    with the attempt's own key otherwise (or when the processor never heard of it)."""
    if resumed:
        found = _look_up(gateway, attempt, customer_id)
        if not (isinstance(found, Unknown) and found.reason == "not_found"):
            return found
    try:
        return gateway.charge(
            amount_cents=attempt.amount_cents,
            currency=CURRENCY,
            payment_method_id=attempt.method.processor_id,
            customer_id=customer_id,
            idempotency_key=attempt.id,
            metadata={"attempt_id": attempt.id, "call_sid": attempt.call_sid},
        )
    except (CardDeclined, ActionRequired) as exc:
        return Declined(_code(exc))
    except InvalidPaymentMethod:
        return Declined("invalid_payment_method", method_unusable=True)
    except ProcessorUnavailable:
        found = _look_up(gateway, attempt, customer_id)
        return Deferred("processor unavailable") if _not_found(found) else found
    except OutcomeUnknown:
        found = _look_up(gateway, attempt, customer_id)
        return Unknown("no answer from the processor") if _not_found(found) else found
    except PaymentError as exc:  # ProcessorRejected: refused outright, nothing charged
        return NotCharged(f"refused by the processor ({type(exc).__name__})")


def _look_up(gateway: PaymentGateway, attempt: AttemptView, customer_id: str | None) -> DraftOutcome:
    try:
        found = gateway.find_charge(attempt.id, customer_id=customer_id)
    except (CardDeclined, ActionRequired) as exc:
        return Declined(_code(exc))
    except ProcessorUnavailable:
        return Deferred("processor unavailable for the lookup")
    except PaymentError:
        return Unknown("lookup failed")
    return found if found is not None else Unknown("not_found")


def _not_found(outcome: DraftOutcome) -> bool:
    return isinstance(outcome, Unknown) and outcome.reason == "not_found"


def _code(exc: PaymentError) -> str:
    if isinstance(exc, CardDeclined):
        return exc.code or "card_declined"
    return "authentication_required"


def limits_from(settings: Settings) -> RunLimits:
    """One draft within the phone's limits; the run within ``SECUREPAY_AUTOPAY_RUN_CAP``."""
    return RunLimits(
        min_cents=settings.payment_min_cents,
        max_cents=settings.payment_max_cents,
        cap_cents=settings.autopay_run_cap_cents,
        declines_to_suspend=settings.autopay_declines_to_suspend,
    )
