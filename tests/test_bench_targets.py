"""``make bench``'s targets of issue 12 item 3, read from a run's figures (``bench.report``).

No benchmark runs here: each test builds the figures a run would write to
``bench-results.json`` and checks the rows the report prints for them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench import report, sizes


def _pass(role: str, accounts: int, cpu_ms: float, median_ms: float, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "role": role,
        "accounts": accounts,
        "audit_events": 0,
        "payment_attempts": 0,
        "calls": 200,
        "calls_completed": 200,
        "errors": 0,
        "first_errors": [],
        "wall_seconds": 40.0,
        "workers_cpu_ms_per_call": cpu_ms,
        "postgres_cpu_ms_per_call": 9.0,
        "median_ms": median_ms,
        "p99_ms": 80.0,
        "machine_busy_fraction": 0.8,
        "money_match": True,
        "charges": 220,
        "ledger_rows": 220,
    }
    found.update(extra)
    return found


def _scale(large_cpu: float, history_cpu: float, history_median: float, **history: Any) -> dict[str, Any]:
    seeded = {"audit_events": 2_000_000, "payment_attempts": 200_000, **history}
    return {
        "calls": 200,
        "warmup_calls": 20,
        "concurrency": 50,
        "think_seconds": 1.0,
        "tolerances": {"cpu": 0.15, "median": 0.25},
        "history_seed_seconds": 80.0,
        "seconds": 400.0,
        "sizes": [
            _pass(sizes.SMALL, 1_000, 40.0, 10.0),
            _pass(sizes.LARGE, seeded.pop("accounts", 1_000_000), large_cpu, 10.5),
            _pass(sizes.HISTORY, 1_000_000, history_cpu, history_median, **seeded),
            _pass(sizes.SMALL_AGAIN, 1_000, 44.0, 12.0),
        ],
    }


def _figures(
    *, cpu_ms: float = 45.0, verify_cpu_ms: float | None = 18.0, ratio: float = 2.2
) -> dict[str, Any]:
    kinds = {kind: {"count": 200, "p50_ms": 5.0, "p99_ms": 20.0} for kind in report.FAST_KINDS}
    kinds["PIN"] = {"count": 200, "p50_ms": 40.0, "p99_ms": 90.0}
    pin_hash: dict[str, Any] = {"rounds": 20, "hash_mean_ms": 20.0, "verify_mean_ms": 21.0}
    if verify_cpu_ms is not None:
        pin_hash["verify_cpu_mean_ms"] = verify_cpu_ms
    return {
        "config": {"concurrency": 50},
        "load": {
            "calls_planned": 1_000,
            "calls_completed": 1_000,
            "errors": 0,
            "latency_by_kind": kinds,
            "all_requests": {"p50_ms": 5.0},
        },
        "money": {"processor_succeeded": 1_000, "ledger_payments": 1_000, "match": True},
        "floor": {"median_ratio": ratio},
        "lookup": {"at_1m": {"accounts": 1_000_000, "mean_ms": 0.4, "p99_ms": 0.9}},
        "memory": {"peak_rss_mb_max": 120.0},
        "cpu": {"seconds_per_call": cpu_ms / 1000},
        "pin_hash": pin_hash,
        "scale": _scale(large_cpu=43.0, history_cpu=45.0, history_median=12.0),
    }


def _row(figures: dict[str, Any], starts: str) -> report.Check:
    rows = [check for check in report.targets(figures) if check.target.startswith(starts)]
    assert len(rows) == 1, [check.target for check in report.targets(figures)]
    return rows[0]


def test_issue_12_rows_are_printed_with_their_issue_and_result() -> None:
    figures = _figures()
    checks = report.targets(figures)
    ours = [check for check in checks if check.issue == "12.3"]
    assert [check.target.split(" <=")[0].split(":")[0] for check in ours] == [
        "CPU per paying call",
        "CPU per paying call outside the Argon2 verify",
        "median webhook / floor's",
        "scale passes",
        "flat with size",
        "flat with size",
    ]
    assert all(check.passed for check in ours)
    table = "\n".join(report.target_lines(checks))
    assert "12.3   CPU per paying call <= 50 ms" in table
    assert "FAIL" not in table.split("12.3", 1)[1]


def test_cpu_per_paying_call_passes_at_50_ms_and_a_miss_says_by_how_much() -> None:
    assert _row(_figures(cpu_ms=50.0), "CPU per paying call <= 50").passed
    missed = _row(_figures(cpu_ms=62.5), "CPU per paying call <= 50")
    assert not missed.passed
    assert missed.measured == "62.5 ms (12.50 ms over, +25%)"


def test_cpu_outside_the_verify_takes_one_verify_cpu_off_the_call() -> None:
    met = _row(_figures(cpu_ms=47.0, verify_cpu_ms=18.0), "CPU per paying call outside")
    assert met.passed
    assert met.measured == "47.0 - 18.0 = 29.0 ms"
    missed = _row(_figures(cpu_ms=47.0, verify_cpu_ms=15.0), "CPU per paying call outside")
    assert not missed.passed
    assert missed.measured.startswith("47.0 - 15.0 = 32.0 ms (2.00 ms over")


def test_cpu_outside_the_verify_fails_when_the_verify_was_not_measured() -> None:
    row = _row(_figures(verify_cpu_ms=None), "CPU per paying call outside")
    assert not row.passed
    assert row.measured == "not measured"


@pytest.mark.parametrize(
    ("ratio", "passed", "goal"),
    [(1.9, True, "goal 2 met"), (2.5, True, "goal 2: 0.50 over"), (2.6, False, "goal 2: 0.60 over")],
)
def test_median_against_the_floor_is_held_to_2_5_and_the_goal_of_2_printed(
    ratio: float, passed: bool, goal: str
) -> None:
    row = _row(_figures(ratio=ratio), "median webhook / floor's <= 2.5")
    assert row.passed is passed
    assert row.measured.endswith(goal)
    # Issue 5's row stays beside it.
    assert _row(_figures(ratio=ratio), "median latency / floor's <= 3").passed


def test_flat_with_size_compares_the_large_sizes_with_the_mean_of_both_small_passes() -> None:
    row = _row(_figures(), "flat with size: CPU")
    # Small reference (40 + 44) / 2 = 42: 43 is +2 %, 45 is +7 %; the small passes 10 % apart.
    assert row.passed
    assert row.measured == "42.0 -> 43.0 (+2%) -> 45.0 (+7%); 1,000 twice: 10% apart"


def test_flat_with_size_fails_when_the_largest_grows_past_the_tolerance() -> None:
    figures = _figures()
    figures["scale"] = _scale(large_cpu=43.0, history_cpu=50.0, history_median=16.0)
    cpu = _row(figures, "flat with size: CPU")
    assert not cpu.passed  # 50 / 42 = +19 % > 15 %
    assert "(+19%), 4% over" in cpu.measured
    median = _row(figures, "flat with size: median")
    assert not median.passed  # 16 / 11 = +45 % > 25 %
    assert "20% over" in median.measured


def test_flat_with_size_says_when_the_two_small_passes_differ_by_more_than_the_tolerance() -> None:
    figures = _figures()
    quiet = _row(figures, "flat with size: median")
    assert "too noisy" not in quiet.measured  # 10 and 12 ms: 18 % apart, under 25 %
    figures["scale"]["sizes"][3]["median_ms"] = 20.0  # 10 and 20 ms: 67 % apart
    noisy = _row(figures, "flat with size: median")
    assert "1,000 twice: 67% apart (more than the tolerance: too noisy to tell" in noisy.measured


def test_flat_with_size_fails_below_the_full_size_even_when_flat() -> None:
    figures = _figures()
    figures["scale"] = _scale(large_cpu=42.0, history_cpu=42.0, history_median=11.0, audit_events=20_000)
    row = _row(figures, "flat with size: CPU")
    assert not row.passed
    assert "not the full size" in row.measured


def test_a_scale_pass_with_an_error_or_a_money_mismatch_fails_its_row() -> None:
    figures = _figures()
    assert _row(figures, "scale passes").passed
    broken = copy.deepcopy(figures)
    broken["scale"]["sizes"][2]["errors"] = 3
    row = _row(broken, "scale passes")
    assert not row.passed
    assert row.measured.startswith("large+history: 3 errors")
    unpaid = copy.deepcopy(figures)
    unpaid["scale"]["sizes"][1]["money_match"] = False
    assert not _row(unpaid, "scale passes").passed


def test_without_the_scale_passes_the_flat_target_is_a_miss() -> None:
    figures = _figures()
    del figures["scale"]
    row = _row(figures, "flat with size")
    assert not row.passed
    assert row.measured == "not run (--no-scale)"


def test_scale_members_are_distinct_across_passes_and_repeat_from_their_seed() -> None:
    taken: set[int] = set()
    first = sizes.members(1_000, 220, taken, seed=1)
    second = sizes.members(1_000, 220, taken, seed=2)
    indexes = [m.index for m in first + second]
    assert len(set(indexes)) == 440
    assert all(1 <= index <= 1_000 for index in indexes)
    assert [m.index for m in sizes.members(1_000, 220, set(), seed=1)] == [m.index for m in first]
    with pytest.raises(ValueError, match="accounts left"):
        sizes.members(1_000, 600, taken, seed=3)
