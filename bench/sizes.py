"""``make bench``'s scale passes: does a call cost the same as the database grows?

Issue 12 asks for the per-call figures to stay flat from 1,000 to 1,000,000 accounts and
with a year of history in the database (2,000,000 audit events, 200,000 payment
attempts). ``bench.run`` plays the same short load (``--scale-calls``, at the run's
concurrency and think time, after ``--scale-warmup`` calls that are not measured) against
each size in turn, each under a gunicorn and a localstripe of its own:

1. ``small``: 1,000 accounts (``SMALL_ACCOUNTS``), a fresh database;
2. ``large``: ``--lookup-accounts`` (1,000,000), the database the Call Capture lookup is
   timed on, loaded with PINs;
3. ``large+history``: a copy of the large database taken before any call
   (``CREATE DATABASE ... TEMPLATE``), with the history seeded by ``bench.history``;
4. ``small`` again, on a fresh database: the two small passes bracket the large ones, so
   their mean is the reference (a machine whose load drifts during the run moves both),
   and their difference is the run-to-run noise of the figure, printed beside it.

This module holds what does not start processes: which members call in each pass, one
pass's figures, and the comparison the targets read.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.loader import Member, member

SMALL_ACCOUNTS = 1_000
SMALL, LARGE, HISTORY, SMALL_AGAIN = "small", "large", "large+history", "small again"
ROLES = (SMALL, LARGE, HISTORY, SMALL_AGAIN)
# How far the largest size may be from the smallest (see bench/README.md, "Flat with
# size": chosen against the spread of repeated passes at the same size on this machine).
CPU_TOLERANCE = 0.15
MEDIAN_TOLERANCE = 0.25


def members(accounts: int, count: int, taken: set[int], seed: int) -> list[Member]:
    """``count`` random members of ``1..accounts`` not in ``taken`` (added to it): every
    call pays a fresh account in full, and rows spread over the table as real callers'."""
    free = accounts - len(taken)
    if count > free:
        raise ValueError(f"{count} callers wanted, {free} accounts left of {accounts:,}")
    rng = random.Random(seed)  # noqa: S311 - which accounts call, not a secret
    chosen: list[int] = []
    while len(chosen) < count:
        index = rng.randint(1, accounts)
        if index not in taken:
            taken.add(index)
            chosen.append(index)
    return [member(index) for index in sorted(chosen)]


def pass_figures(
    role: str,
    *,
    accounts: int,
    history: Mapping[str, int] | None,
    load: Mapping[str, Any],
    workers_cpu_seconds: float,
    postgres_cpu_seconds: float,
    calls: int,
    machine_busy_fraction: float,
    money: Mapping[str, Any],
) -> dict[str, Any]:
    """One size's figures (``load`` is ``bench.run``'s phase figures of the measured calls)."""
    per_call = max(1, calls)
    overall = load["all_requests"]
    return {
        "role": role,
        "accounts": accounts,
        "audit_events": (history or {}).get("audit_events", 0),
        "payment_attempts": (history or {}).get("payment_attempts", 0),
        "calls": calls,
        "calls_completed": load["calls_completed"],
        "errors": load["errors"] + load["cut_by_deadline"] + load["not_started"],
        "first_errors": load["first_errors"],
        "wall_seconds": load["wall_seconds"],
        "workers_cpu_ms_per_call": round(workers_cpu_seconds / per_call * 1000, 2),
        "postgres_cpu_ms_per_call": round(postgres_cpu_seconds / per_call * 1000, 2),
        "median_ms": overall.get("p50_ms"),
        "p99_ms": overall.get("p99_ms"),
        "machine_busy_fraction": round(machine_busy_fraction, 3),
        "money_match": bool(money["match"]),
        "charges": money["processor_succeeded"],
        "ledger_rows": money["ledger_payments"],
    }


def _by_role(sizes: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {size["role"]: size for size in sizes}


def reference(sizes: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """The small size's figure: the mean of its passes (one or two)."""
    values = [float(s[key]) for s in sizes if s["role"] in (SMALL, SMALL_AGAIN) and s.get(key) is not None]
    return statistics.fmean(values) if values else None


def noise(sizes: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """How far the two small passes differ, relative to their mean (None with one pass)."""
    roles = _by_role(sizes)
    first, again = roles.get(SMALL), roles.get(SMALL_AGAIN)
    if first is None or again is None or not first.get(key) or not again.get(key):
        return None
    a, b = float(first[key]), float(again[key])
    return abs(a - b) / ((a + b) / 2)


def growth(sizes: Sequence[Mapping[str, Any]], key: str) -> dict[str, float]:
    """Each larger size's figure relative to the small reference (0.05: 5 % more)."""
    base = reference(sizes, key)
    if not base:
        return {}
    return {
        size["role"]: float(size[key]) / base - 1
        for size in sizes
        if size["role"] in (LARGE, HISTORY) and size.get(key) is not None
    }
