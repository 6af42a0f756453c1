"""Call figures for ``securepay calls stats``: computed from calls and their trails.

Pure: ``compute`` takes rows (anything shaped like ``db.call_reports.CallTrail``) and
returns a frozen ``CallStats``; no database, no clock, so a test can check each figure
from a set of calls with known outcomes. Every figure comes from the trail's events,
not from where a call happens to stand, so it reads the same after the call is over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from ivr.flows.call_flow import CALL_FLOW

__all__ = ["FUNNEL", "CallStats", "FunnelStage", "compute"]

FUNNEL = ("started", "identified", "PIN verified", "amount chosen", "confirmed", "paid")
"""The stages a paying call goes through; each implies the ones before it."""

END_STATES = frozenset(name for name, state in CALL_FLOW.states.items() if state.is_end)
GAVE_UP = ("abandoned", "no-input")


class EventRow(Protocol):
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def event(self) -> str: ...
    @property
    def state(self) -> str | None: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...


class CallRow(Protocol):
    @property
    def started_at(self) -> datetime: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def events(self) -> Sequence[EventRow]: ...


@dataclass(frozen=True)
class FunnelStage:
    name: str
    calls: int


@dataclass(frozen=True)
class CallStats:
    calls: int
    outcomes: tuple[tuple[str, int], ...]  # most frequent first; "active" for calls not ended
    contained: int  # paid, and never transferred to member services
    gave_up: tuple[tuple[str, int], ...]  # abandoned or no-input calls by the last state reached
    paid_calls: int
    payments: int  # payments taken: a call that paid two accounts is one call, two payments
    average_time_to_pay: timedelta | None  # call start to the first payment taken
    pin_failures: int  # PIN entries rejected (wrong, locked, throttled)
    calls_with_pin_failures: int
    ssn_failures: int
    lockouts: int  # accounts locked by a failed entry during a call
    locked_out_calls: int  # calls that ended locked out
    per_hour: tuple[int, ...]  # 24 counts: calls started in each local hour
    funnel: tuple[FunnelStage, ...]

    @property
    def containment(self) -> float | None:
        """The share of calls paid without a transfer (None without calls)."""
        return self.contained / self.calls if self.calls else None


def _stage(events: Sequence[EventRow]) -> int:
    """How far down ``FUNNEL`` a call got (0: started)."""
    reached = 0
    for event in events:
        name = event.event
        if name == "account_identified" and event.detail.get("known"):
            reached = max(reached, 1)
        elif name in ("pin_verified", "pin_created"):
            reached = max(reached, 2)
        elif name == "amount_entered" or (
            name == "menu_chosen" and event.detail.get("choice") == "pay_full_balance"
        ):
            reached = max(reached, 3)
        elif name == "payment_attempt_opened":
            reached = max(reached, 4)
        elif name == "payment_succeeded":
            reached = max(reached, 5)
    return reached


def _last_state(events: Sequence[EventRow]) -> str:
    """The last state a caller was in before the call ended (not the goodbye)."""
    last = CALL_FLOW.start
    for event in events:
        target = event.detail.get("to_state") if event.event == "state_entered" else None
        if isinstance(target, str) and target not in END_STATES:
            last = target
    return last


def _ranked(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def compute(calls: Iterable[CallRow], zone: tzinfo) -> CallStats:
    """The figures of ``calls`` (hours in ``zone``)."""
    total = contained = paid_calls = payments = 0
    outcomes: Counter[str] = Counter()
    gave_up: Counter[str] = Counter()
    waits: list[timedelta] = []
    pin_failures = failing_calls = ssn_failures = lockouts = locked_out = 0
    per_hour = [0] * 24
    reached = [0] * len(FUNNEL)
    for call in calls:
        total += 1
        events = call.events
        names = [event.event for event in events]
        outcomes[call.outcome or "active"] += 1
        per_hour[call.started_at.astimezone(zone).hour] += 1
        for stage in range(_stage(events) + 1):
            reached[stage] += 1
        payments += len({  # one per processor charge, however often a retry recorded it
            str(e.detail.get("processor_id")) for e in events if e.event == "payment_succeeded"
        })
        paid_at = next((e.occurred_at for e in events if e.event == "payment_succeeded"), None)
        if paid_at is not None:
            paid_calls += 1
            waits.append(paid_at - call.started_at)
            if "transfer_requested" not in names:
                contained += 1
        if call.outcome in GAVE_UP:
            gave_up[_last_state(events)] += 1
        rejected = names.count("pin_rejected")
        pin_failures += rejected
        failing_calls += rejected > 0
        ssn_failures += names.count("ssn_rejected")
        lockouts += names.count("pin_locked")
        locked_out += call.outcome == "locked-out"
    return CallStats(
        calls=total,
        outcomes=_ranked(outcomes),
        contained=contained,
        gave_up=_ranked(gave_up),
        paid_calls=paid_calls,
        payments=payments,
        average_time_to_pay=sum(waits, timedelta()) / len(waits) if waits else None,
        pin_failures=pin_failures,
        calls_with_pin_failures=failing_calls,
        ssn_failures=ssn_failures,
        lockouts=lockouts,
        locked_out_calls=locked_out,
        per_hour=tuple(per_hour),
        funnel=tuple(FunnelStage(name, count) for name, count in zip(FUNNEL, reached, strict=True)),
    )
