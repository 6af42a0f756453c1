"""Our ledger against the processor's word, attempt by attempt (SECURITY 15b).

The processor's answer is the truth: a payment is ours only when its PaymentIntent says
``succeeded`` (or ``processing``, for a bank debit that settles later). This module
compares and REPORTS; it never changes the ledger or the processor. A mismatch is for a
person to look into: a refund, a payment to record by hand, a bug to fix.

Each attempt is looked up by its PaymentIntent id when we have one (``get_charge``),
otherwise by its own id, the idempotency key the charge was made under
(``find_charge``): that is how a ``pending`` or ``unknown`` attempt whose charge did
reach the processor is found. The money state of each side is one of ``succeeded``,
``processing`` and ``unpaid``; the processor may also have no such payment at all, hold
one it has not settled (``unsettled``), or be unable to search for it (``unsearched``):
each of those is a reported line, never an aborted run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from db.payment_reports import AttemptLine
from ivr.flows.amounts import format_cents
from payments.gateway import (
    ActionRequired,
    CardDeclined,
    ChargeResult,
    LookupIncomplete,
    PaymentGateway,
    PaymentUnsettled,
    ProcessorRejected,
)

__all__ = [
    "Mismatch",
    "MismatchKind",
    "ProcessorView",
    "ReconcileAborted",
    "ReconcileReport",
    "compare",
    "reconcile",
]

MismatchKind = Literal["status", "amount", "missing_at_processor", "processor_id"]

_PAID = ("succeeded", "processing")


class ReconcileAborted(Exception):
    """The processor refused our questions (a bad key, a missing permission): nothing
    can be compared. ``ProcessorUnavailable`` (unreachable) is raised as it is."""


@dataclass(frozen=True)
class Mismatch:
    attempt_id: str
    confirmation: str | None
    kind: MismatchKind
    ours: str
    theirs: str

    def __str__(self) -> str:
        return (
            f"{self.attempt_id} confirmation {self.confirmation or '-'}: {self.kind}: "
            f"ours {self.ours}; processor {self.theirs}"
        )


@dataclass(frozen=True)
class ReconcileReport:
    checked: int
    mismatches: tuple[Mismatch, ...]

    @property
    def matched(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        attempts = "attempt" if self.checked == 1 else "attempts"
        mismatched = len({mismatch.attempt_id for mismatch in self.mismatches})
        return f"checked {self.checked} {attempts}: {self.checked - mismatched} match, {mismatched} mismatch"


@dataclass(frozen=True)
class ProcessorView:
    """The processor's word on one attempt."""

    state: str  # succeeded, processing, unpaid, absent, unsettled (...), unsearched
    processor_id: str | None
    amount_cents: int | None
    text: str

    @classmethod
    def of_charge(cls, result: ChargeResult) -> ProcessorView:
        text = f"{result.status} {format_cents(result.amount_cents)} as {result.processor_id}"
        return cls(result.status, result.processor_id, result.amount_cents, text)


def _unpaid(processor_id: str | None, why: str) -> ProcessorView:
    where = f" as {processor_id}" if processor_id else ""
    return ProcessorView("unpaid", processor_id, None, f"{why}{where}")


_ABSENT = ProcessorView("absent", None, None, "has no such payment")


def _unsettled(exc: PaymentUnsettled) -> ProcessorView:
    """A PaymentIntent neither paid nor declined (waiting, or a state we never ask for):
    a line for a person to look at, whatever our side says."""
    where = f" as {exc.processor_id}" if exc.processor_id else ""
    return ProcessorView(f"unsettled ({exc.status})", exc.processor_id, None, f"{exc.status}{where}")


def _find(gateway: PaymentGateway, line: AttemptLine) -> ProcessorView:
    """By the attempt id (the idempotency key), under the account's customer first; a
    charge of a card not saved on the customer has none, so then under any."""
    try:
        found = gateway.find_charge(line.attempt_id, customer_id=line.customer_id)
        if found is None and line.customer_id is not None:
            found = gateway.find_charge(line.attempt_id, customer_id=None)
    except CardDeclined as exc:
        return _unpaid(exc.processor_id, f"declined ({exc.code or 'no code'})")
    except ActionRequired as exc:
        return _unpaid(exc.processor_id, "needs authentication, not charged")
    except PaymentUnsettled as exc:
        return _unsettled(exc)
    except LookupIncomplete:
        # One refused search is one reported line, not an aborted run.
        return ProcessorView("unsearched", None, None, "not found by listing, and its search was refused")
    except ProcessorRejected as exc:
        raise ReconcileAborted(f"the processor refused the lookup of {line.attempt_id}: {exc}") from exc
    return _ABSENT if found is None else ProcessorView.of_charge(found)


def _theirs(gateway: PaymentGateway, line: AttemptLine) -> ProcessorView:
    if line.processor_id is None:
        return _find(gateway, line)
    try:
        return ProcessorView.of_charge(gateway.get_charge(line.processor_id))
    except CardDeclined as exc:
        return _unpaid(line.processor_id, f"declined ({exc.code or 'no code'})")
    except ActionRequired:
        return _unpaid(line.processor_id, "needs authentication, not charged")
    except PaymentUnsettled as exc:
        return _unsettled(exc)
    except ProcessorRejected:
        # Most likely no such PaymentIntent: ask by the attempt's own key, which also
        # tells a refused key (raised) from a missing payment (absent).
        return _find(gateway, line)


def _ours(line: AttemptLine) -> tuple[str, str]:
    """Our money state and how to say it."""
    if line.payment_id is not None:
        amount = format_cents(line.payment_amount_cents or 0)
        state = line.payment_status or "unknown"
        return state, f"{state} {amount}" + (f" as {line.processor_id}" if line.processor_id else "")
    if line.status in _PAID:
        return f"{line.status} without a payment", f"attempt {line.status} but no payment recorded"
    return "unpaid", f"attempt {line.status}, no payment"


def compare(line: AttemptLine, theirs: ProcessorView) -> list[Mismatch]:
    """What differs between our record of one attempt and the processor's."""
    state, ours = _ours(line)

    def mismatch(kind: MismatchKind, ours_text: str, theirs_text: str) -> Mismatch:
        return Mismatch(line.attempt_id, line.confirmation, kind, ours_text, theirs_text)

    if theirs.state == "absent":
        if state == "unpaid" and line.processor_id is None:
            return []  # never reached the processor, and we took nothing
        return [mismatch("missing_at_processor", ours, theirs.text)]
    found: list[Mismatch] = []
    # Where money moved, the id we keep (and export) must be the processor's. For a
    # decline it is only a reference: localstripe names the charge (ch_...) rather
    # than the PaymentIntent in a decline, and nothing is owed either way.
    if (
        theirs.state in _PAID
        and line.processor_id is not None
        and theirs.processor_id not in (None, line.processor_id)
    ):
        found.append(mismatch("processor_id", line.processor_id, theirs.processor_id or "-"))
    if state != theirs.state:
        found.append(mismatch("status", ours, theirs.text))
    elif state in _PAID:
        amounts = {line.amount_cents, line.payment_amount_cents}
        if amounts != {theirs.amount_cents}:
            shown = " / ".join(format_cents(cents) for cents in sorted(a for a in amounts if a is not None))
            found.append(mismatch("amount", shown, format_cents(theirs.amount_cents or 0)))
    return found


def reconcile(lines: Iterable[AttemptLine], gateway: PaymentGateway) -> ReconcileReport:
    """Compare each attempt with the processor.

    Raises ``ProcessorUnavailable`` when the processor cannot be reached (nothing can be
    concluded from a partial run) and ``ReconcileAborted`` when it refuses to answer.
    """
    checked = 0
    mismatches: list[Mismatch] = []
    for line in lines:
        checked += 1
        mismatches.extend(compare(line, _theirs(gateway, line)))
    return ReconcileReport(checked, tuple(mismatches))
