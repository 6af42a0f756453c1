"""Figures from the raw call results, the targets of issue 5, and the printed report."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.driver import (
    AMOUNT,
    CONFIRM,
    GOODBYE,
    GREETING,
    IDENTIFY,
    KINDS,
    MENU,
    METHOD,
    PIN,
    STATUS,
    CallResult,
)
from bench.lookup import percentile
from ivr.cli.minute import Minute
from ivr.cli.minute import render as render_minutes

FAST_KINDS = (GREETING, IDENTIFY, MENU, AMOUNT, METHOD)  # the "every other kind" of the targets
MB = 1_000_000
MINUTE_FIELDS = ("path", "words", "waited_seconds", "confirmed", "target_seconds")


def latency(seconds: Iterable[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {"count": 0}
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def by_key(results: Sequence[CallResult], key: str) -> dict[str, dict[str, float]]:
    groups: dict[str, list[float]] = {}
    for result in results:
        if result.error is not None or result.cut_by_deadline:
            continue
        for timed in result.requests:
            groups.setdefault(getattr(timed, key), []).append(timed.seconds)
    order = {kind: n for n, kind in enumerate(KINDS)}
    return {name: latency(groups[name]) for name in sorted(groups, key=lambda k: (order.get(k, 99), k))}


def all_latencies(results: Sequence[CallResult]) -> list[float]:
    return [t.seconds for r in results if r.error is None and not r.cut_by_deadline for t in r.requests]


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    passed: bool


def targets(figures: dict[str, Any]) -> list[Check]:
    """Issue 5, item 2, against the figures of one run."""
    load = figures["load"]
    kinds = load["latency_by_kind"]
    checks = [
        Check(
            f"{figures['config']['concurrency']} concurrent calls (target: 50), zero errors, "
            "charges = ledger rows",
            f"{load['calls_completed']}/{load['calls_planned']} calls, {load['errors']} errors, "
            f"{figures['money']['processor_succeeded']} charges / {figures['money']['ledger_payments']} rows",
            figures["config"]["concurrency"] >= 50
            and load["errors"] == 0
            and load["calls_completed"] == load["calls_planned"]
            and figures["money"]["match"],
        )
    ]
    for kind in FAST_KINDS:
        p99 = kinds.get(kind, {}).get("p99_ms")
        checks.append(
            Check(
                f"{kind} p99 < 50 ms", "n/a" if p99 is None else f"{p99:.1f} ms", p99 is not None and p99 < 50
            )
        )
    pin_p99 = kinds.get(PIN, {}).get("p99_ms")
    checks.append(
        Check(
            "PIN p99 < 150 ms",
            "n/a" if pin_p99 is None else f"{pin_p99:.1f} ms",
            pin_p99 is not None and pin_p99 < 150,
        )
    )
    ratio = figures["floor"].get("median_ratio")
    checks.append(
        Check(
            "median latency / floor's <= 3",
            "n/a" if ratio is None else f"{ratio:.2f}",
            ratio is not None and ratio <= 3,
        )
    )
    big = figures["lookup"].get("at_1m")
    if big is None:
        checks.append(Check("Call Capture lookup < 1 ms at 1,000,000 accounts", "not measured", False))
    else:
        checks.append(
            Check(
                f"Call Capture lookup < 1 ms at {big['accounts']:,} accounts (mean; p99 shown)",
                f"mean {big['mean_ms']:.3f} ms, p99 {big['p99_ms']:.3f} ms",
                big["accounts"] >= 1_000_000 and big["mean_ms"] < 1,
            )
        )
    for minute in figures.get("caller_minute", []):
        if minute["target_seconds"] is not None:
            checks.append(
                Check(
                    f"caller's minute, {minute['path']}: <= {minute['target_seconds']} s (issue 9)",
                    f"{minute['words']} words + {minute['waited_seconds']} s waited = "
                    f"{minute['estimate_seconds']:.1f} s",
                    bool(minute["met"]),
                )
            )
    peak = figures["memory"]["peak_rss_mb_max"]
    checks.append(Check("memory per worker < 150 MB (peak RSS, worst worker)", f"{peak:.1f} MB", peak < 150))
    return checks


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        cell.ljust(width) if n == 0 else cell.rjust(width)
        for n, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def latency_table(table: dict[str, dict[str, float]], title: str) -> list[str]:
    lines = [title]
    widths = (20, 7, 8, 8, 8, 8)
    lines.append(_row(("kind", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"), widths))
    for name, row in table.items():
        if not row.get("count"):
            continue
        lines.append(
            _row(
                (
                    name,
                    str(int(row["count"])),
                    f"{row['p50_ms']:.1f}",
                    f"{row['p95_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                    f"{row['max_ms']:.1f}",
                ),
                widths,
            )
        )
    return lines


def render(figures: dict[str, Any], checks: Sequence[Check]) -> str:
    c, load, floor, money = figures["config"], figures["load"], figures["floor"], figures["money"]
    lines = [
        "",
        "SecurePay benchmark",
        f"  machine: {c['cores']} cores, {c['machine_busy_before_start']:.0%} busy before the start "
        f"(load average {c['load_average_at_start'][0]:.2f})",
        f"  gunicorn: {c['workers']} {c['worker_class']} workers {' '.join(c['gunicorn_args'])}".rstrip(),
        f"  load: {c['calls']} calls, {c['concurrency']} concurrent, think {c['think_seconds']} s "
        f"(+-50 %) before each key press, {c['generator_processes']} generator processes",
        "",
        f"Accounts loaded: {figures['setup']['accounts']:,} in {figures['setup']['load_seconds']:.1f} s "
        f"(hashes {figures['setup']['hash_seconds']:.1f} s, COPY {figures['setup']['copy_seconds']:.1f} s, "
        f"ANALYZE {figures['setup']['analyze_seconds']:.1f} s); stored cards at localstripe for "
        f"{figures['setup']['stored_cards']:,} accounts in {figures['setup']['stored_cards_seconds']:.1f} s",
        "",
        f"Calls: {load['calls_completed']} completed of {load['calls_planned']} "
        f"in {load['wall_seconds']:.1f} s: {load['calls_per_minute']:.0f} calls/minute, "
        f"{load['requests_per_second']:.1f} webhooks/s",
        f"Errors: {load['errors']}"
        + (f" (first: {load['first_errors'][0]})" if load["first_errors"] else ""),
        f"Cut by the deadline: {load['cut_by_deadline']}",
        f"Money: {money['processor_succeeded']} succeeded PaymentIntents at localstripe, "
        f"{money['ledger_payments']} payments rows ({money['ledger_cents'] / 100:,.2f} dollars; "
        f"expected {money['expected_cents'] / 100:,.2f}): {'match' if money['match'] else 'MISMATCH'}",
        f"Service log: {figures['service_log']['lines']} lines, "
        f"{figures['service_log']['errors']} at error level",
        "",
        *latency_table(load["latency_by_kind"], "Latency per webhook kind (client-side, successful calls)"),
        "",
        *latency_table(load["latency_by_state"], "Latency per flow state answered"),
        "",
        f"CPU: {figures['cpu']['workers_seconds']:.1f} s in gunicorn workers = "
        f"{figures['cpu']['seconds_per_call'] * 1000:.1f} ms per call "
        f"(localstripe {figures['cpu']['localstripe_seconds_per_call'] * 1000:.1f} ms, PostgreSQL at least "
        f"{figures['cpu']['postgres_seconds_per_call'] * 1000:.1f} ms per call; the machine was "
        f"{figures['cpu']['machine_busy_fraction']:.0%} busy)",
        "Memory per worker (peak RSS / last PSS, MB): "
        + ", ".join(f"{w['peak_rss_mb']:.1f}/{w['last_pss_mb']:.1f}" for w in figures["memory"]["workers"]),
        "",
        f"Floor ({floor.get('calls', 0)} calls of a constant-<Gather> Flask app, same gunicorn, same load): "
        f"median {floor.get('median_ms', float('nan')):.2f} ms, "
        f"p99 {floor.get('p99_ms', float('nan')):.2f} ms; "
        f"errors {floor.get('errors', 'n/a')}",
        f"SecurePay median per webhook {load['all_requests']['p50_ms']:.2f} ms: ratio to the floor "
        f"{floor.get('median_ratio', float('nan')):.2f}",
        "  per kind (median / floor median): "
        + ", ".join(f"{kind} {ratio:.1f}" for kind, ratio in floor.get("ratio_by_kind", {}).items()),
        "",
    ]
    for label in ("at_100k", "at_1m"):
        found = figures["lookup"].get(label)
        if found is not None:
            lines.append(
                f"Call Capture lookup (SqlAccounts.by_phone) at {found['accounts']:,} accounts: "
                f"mean {found['mean_ms']:.3f} ms, p50 {found['p50_ms']:.3f}, p99 {found['p99_ms']:.3f}, "
                f"max {found['max_ms']:.3f} ms over {found['count']} lookups"
            )
            lines.append(f"  plan: {found['plan'][:240]}")
    if figures["lookup"].get("load_1m_seconds") is not None:
        lines.append(
            f"  ({figures['lookup']['at_1m']['accounts']:,} accounts loaded into their own database in "
            f"{figures['lookup']['load_1m_seconds']:.1f} s)"
        )
    if figures.get("caller_minute"):
        minutes = [Minute(**{k: m[k] for k in MINUTE_FIELDS}) for m in figures["caller_minute"]]
        lines += ["", "The caller's minute (issue 9)", *render_minutes(minutes)]
    pin = figures["pin_hash"]
    lines += [
        f"PIN hash (Argon2id m=19 MiB t=2 p=1): hash mean {pin['hash_mean_ms']:.1f} ms, "
        f"verify mean {pin['verify_mean_ms']:.1f} ms (over {pin['rounds']}, one idle core)",
        "",
        "Targets (issue 5, item 2)",
    ]
    widths = (max(len(check.target) for check in checks), max(len(check.measured) for check in checks), 4)
    lines.append(_row(("target", "measured", "pass"), widths))
    for check in checks:
        lines.append(_row((check.target, check.measured, "PASS" if check.passed else "FAIL"), widths))
    lines.append(f"Total benchmark time: {figures['total_seconds']:.0f} s")
    return "\n".join(lines)


__all__ = ["CONFIRM", "GOODBYE", "STATUS", "Check", "by_key", "latency", "render", "targets"]
