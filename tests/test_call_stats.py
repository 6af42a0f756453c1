"""``ivr.cli.call_stats.compute``: the figures of ``securepay calls stats`` from calls with
known trails, built by hand (no database: the computation is pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from db.call_reports import CallLine, CallTrail, TrailEvent
from ivr.cli.call_stats import FUNNEL, FunnelStage, compute

CHICAGO = ZoneInfo("America/Chicago")
SIDS = itertools.count(1)
START = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 10:00 in Chicago


def trail(outcome: str | None, *events: tuple[int, str, dict[str, Any]],
          start: datetime = START) -> CallTrail:
    """A call started at ``start`` with ``(seconds after start, event, detail)`` events."""
    line = CallLine(
        call_sid=f"CA{next(SIDS):032x}", started_at=start,
        ended_at=None if outcome is None else start + timedelta(minutes=5), from_number="+12025550143",
        account_number="10004821", status="active" if outcome is None else "ended",
        state="language", outcome=outcome, paid_cents=0,
    )
    rows = tuple(
        TrailEvent(start + timedelta(seconds=at), name, None, True, detail) for at, name, detail in events
    )
    return CallTrail(line, rows)


def entered(at: int, state: str) -> tuple[int, str, dict[str, Any]]:
    return (at, "state_entered", {"to_state": state})


Event = tuple[int, str, dict[str, Any]]
VERIFIED: list[Event] = [
    (10, "account_identified", {"known": True, "via": "caller_id"}),
    (20, "pin_verified", {"entry_length": 4}),
]


def paid_after(seconds: int, *more: tuple[int, str, dict[str, Any]]) -> CallTrail:
    return trail(
        "paid", *VERIFIED, (30, "menu_chosen", {"choice": "pay_full_balance"}),
        (40, "payment_attempt_opened", {"attempt_no": 1, "amount_cents": 100}),
        (seconds, "payment_succeeded", {"processor_id": "pi_1", "amount_cents": 100}), *more,
    )


def test_no_calls_give_zeros_and_no_shares() -> None:
    stats = compute([], CHICAGO)
    assert (stats.calls, stats.containment, stats.average_time_to_pay) == (0, None, None)
    assert stats.funnel == tuple(FunnelStage(name, 0) for name in FUNNEL)
    assert stats.per_hour == (0,) * 24 and stats.gave_up == () and stats.outcomes == ()


def test_containment_counts_calls_paid_without_a_transfer() -> None:
    calls = [
        paid_after(60),
        paid_after(90, (100, "transfer_requested", {}), entered(100, "transfer")),
        trail("transferred", *VERIFIED, (30, "transfer_requested", {})),
        trail("declined", *VERIFIED, (30, "amount_entered", {"amount_cents": 500}),
              (40, "payment_attempt_opened", {}), (41, "payment_declined", {"decline_code": "x"})),
    ]
    stats = compute(calls, CHICAGO)
    assert (stats.calls, stats.contained, stats.paid_calls) == (4, 1, 2)
    assert stats.containment == 0.25
    assert stats.average_time_to_pay == timedelta(seconds=75)  # (60 + 90) / 2, exactly
    assert [stage.calls for stage in stats.funnel] == [4, 4, 4, 3, 3, 2]


def test_callers_gave_up_where_they_last_were_not_at_the_goodbye() -> None:
    calls = [
        trail("abandoned"),  # hung up at the language menu
        trail("no-input", entered(5, "confirm_found"), (20, "menu_abandoned", {"misses": 3}),
              entered(20, "no_input_goodbye"), (20, "call_ended", {"outcome": "no-input"})),
        trail("abandoned", entered(5, "confirm_found"), entered(10, "pin_entry")),
        trail("no-input", entered(5, "confirm_found"), entered(10, "pin_entry"),
              entered(20, "no_input_goodbye")),
        trail("auth-failed", entered(5, "pin_entry"), entered(9, "auth_failed")),  # not giving up
    ]
    assert compute(calls, CHICAGO).gave_up == (("pin_entry", 2), ("confirm_found", 1), ("language", 1))


def test_pin_failures_lockouts_and_outcomes() -> None:
    wrong = (10, "pin_rejected", {"reason": "mismatch", "entry_length": 4})
    calls = [
        trail("auth-failed", wrong, wrong, wrong),
        trail("locked-out", wrong, wrong, (11, "pin_locked", {"failures": 5}),
              (12, "pin_rejected", {"reason": "locked", "entry_length": 4})),
        trail("paid", (5, "ssn_rejected", {"reason": "mismatch"}), (8, "ssn_verified", {}),
              (9, "pin_created", {})),
        trail(None),  # still on the line
    ]
    stats = compute(calls, CHICAGO)
    assert (stats.pin_failures, stats.calls_with_pin_failures, stats.ssn_failures) == (6, 2, 1)
    assert (stats.lockouts, stats.locked_out_calls) == (1, 1)
    assert stats.outcomes == (("active", 1), ("auth-failed", 1), ("locked-out", 1), ("paid", 1))
    assert stats.funnel[2] == FunnelStage("PIN verified", 1)  # a new PIN set counts as verified


def test_calls_per_hour_are_in_the_utilitys_zone() -> None:
    calls = [
        trail("paid", start=START),  # 10:00 CST
        trail("paid", start=START + timedelta(minutes=59)),  # 10:59 CST
        trail("paid", start=datetime(2026, 11, 25, 4, 30, tzinfo=UTC)),  # 22:30 CST the day before
        trail("paid", start=datetime(2026, 7, 1, 15, 0, tzinfo=UTC)),  # 10:00 CDT
    ]
    per_hour = compute(calls, CHICAGO).per_hour
    assert len(per_hour) == 24 and per_hour[10] == 3 and per_hour[22] == 1 and sum(per_hour) == 4
