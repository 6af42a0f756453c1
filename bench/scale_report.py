"""``make bench-scale``'s checks after the load, and its report.

Money (``bench.money``: the processor against the ledger), the audit chain
(``securepay audit verify``, after ``securepay audit seal`` where that command exists),
the servers' error-level log lines; then the targets with PASS/FAIL and the ratio of
calls per second (reported, not targeted), printed as one table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scale_phases import ALONE, TOGETHER
from bench.services import REPO, clean_env


def _securepay(args: Sequence[str], database_url: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("securepay")
    env = clean_env({"SECUREPAY_DATABASE_URL": database_url})  # nothing is hashed: no pepper
    return subprocess.run(  # noqa: S603 - our own command line, our arguments
        [str(command), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def audit_chain(database_url: str) -> dict[str, Any]:
    """``securepay audit seal`` where it exists (events sealed after commit by a sealer),
    then ``securepay audit verify``: exit status and its line."""
    found: dict[str, Any] = {}
    help_text = _securepay(["audit", "--help"], database_url).stdout
    if any(line.split()[:1] == ["seal"] for line in help_text.splitlines()):
        sealed = _securepay(["audit", "seal"], database_url)
        found["seal"] = {"exit": sealed.returncode, "output": (sealed.stdout + sealed.stderr).strip()[-500:]}
    verified = _securepay(["audit", "verify"], database_url)
    found["verify"] = {
        "exit": verified.returncode,
        "output": (verified.stdout + verified.stderr).strip()[-500:],
    }
    found["intact"] = verified.returncode == 0
    return found


def log_errors(path: Path) -> int:
    """Error-level lines in a server's JSON log."""
    count = 0
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") in ("error", "critical", "exception"):
                count += 1
    return count


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    passed: bool


def checks(figures: dict[str, Any]) -> list[Check]:
    """The targets of issue 12 item 5 (the speed-up is reported, not targeted)."""
    phases = figures["phases"]
    planned = sum(p["calls_planned"] for p in phases)
    completed = sum(p["calls_completed"] for p in phases)
    errors = sum(p["errors"] for p in phases)
    m = figures["money"]
    audit = figures["audit"]
    return [
        Check(
            "zero errors: every call completed, every reply the expected TwiML",
            f"{completed}/{planned} completed, {errors} errors",
            errors == 0 and completed == planned,
        ),
        Check(
            "processor charges = ledger rows and cents",
            f"{m['processor_succeeded']} succeeded PaymentIntents / {m['ledger_payments']} payments / "
            f"{m['expected_payments']} paid calls; cents {m['processor_cents']} / {m['ledger_cents']} / "
            f"{m['expected_cents']}",
            bool(m["match"]),
        ),
        Check(
            "audit chain intact (securepay audit verify exits 0)",
            audit["verify"]["output"].splitlines()[-1] if audit["verify"]["output"] else "no output",
            bool(audit["intact"]),
        ),
    ]


def speedup(phases: Sequence[dict[str, Any]], figure: str = "calls_per_second") -> float | None:
    """All the servers together over one server alone: calls per second, or another figure
    of the phases (``calls_per_bench_cpu_second``: calls per CPU second the bench used)."""
    alone = next((float(p[figure]) for p in phases if p["name"] == ALONE), 0.0)
    together = next((float(p[figure]) for p in phases if p["name"].endswith(TOGETHER)), None)
    if not alone or together is None:
        return None
    return round(together / alone, 2)


def _phase_row(p: dict[str, Any]) -> str:
    every = p["all_requests"]
    return (
        f"{p['name']:<32} {p['calls_completed']:>4}/{p['calls_planned']:<4} {p['errors']:>6} "
        f"{p['wall_seconds']:>7.1f} {p['calls_per_second']:>8.2f} {p['requests_per_second']:>7.1f} "
        f"{every.get('p50_ms', 0):>7.1f} {every.get('p99_ms', 0):>8.1f} "
        f"{p['workers_cpu_ms_per_call']:>9.1f} {p['bench_cpu_ms_per_call']:>9.1f} "
        f"{p['bench_share_of_machine']:>6.0%} {p['others_busy_fraction']:>6.0%}  {p['requests_per_server']}"
    )


def render(figures: dict[str, Any], found: Sequence[Check]) -> str:
    c = figures["config"]
    header = (
        f"{'phase':<32} {'calls':>9} {'errors':>6} {'wall s':>7} {'calls/s':>8} {'req/s':>7} "
        f"{'p50 ms':>7} {'p99 ms':>8} {'CPU ms/c':>9} {'bench ms':>9} {'bench':>6} {'others':>6}  "
        "requests per server"
    )
    lines = [
        "",
        f"== make bench-scale: {c['servers']} app servers, one PostgreSQL, one localstripe ==",
        f"network {c['network']}: {', '.join(c['servers_at'])} (own network namespace: "
        f"{c.get('servers_in_own_network_namespace')}); database connections by route: "
        f"{figures.get('database_connections')}",
        f"{c['workers_per_server']} gunicorn workers per server ({Path(c['gunicorn_config']).name}); "
        f"{c['calls_per_phase']} calls a phase in {c['rounds']} slices, {c['concurrency']} at once, "
        f"think {c['think_seconds']} s; {c['cores']} cores, {c['machine_busy_before_start']:.0%} busy "
        f"before the start (load average {c['load_average_at_start'][0]:.1f})",
        "",
        "slices, in the order run:",
        header,
        *(_phase_row(p) for p in figures.get("slices", [])),
        "",
        "phases (CPU ms/c: the serving workers' CPU per call; bench ms: all the bench's processes' "
        "CPU per call (workers, its PostgreSQL backends, localstripe, the generator); bench, others: "
        "their share of the machine's CPU time, and everything else's):",
        header,
        *(_phase_row(p) for p in figures["phases"]),
    ]
    ratio = figures.get("speedup")
    per_cpu = figures.get("speedup_per_bench_cpu_second")
    lines += [
        "",
        f"calls per second, {c['servers']} servers over one alone: "
        + (f"{ratio:.2f}x" if ratio is not None else "n/a")
        + (f"; per CPU second the bench used: {per_cpu:.2f}x" if per_cpu is not None else ""),
        f"(reported, not targeted: the {c['cores']} cores are shared by every server, PostgreSQL, "
        "localstripe and the generator, so more servers add capacity only with more cores; on a "
        "machine busy with other work, more processes also take a larger share of it, which the "
        "second figure takes out)",
        "",
        f"error-level lines in the servers' logs: {figures.get('server_log_errors')}",
        "",
        f"{'target':<66} {'result':<6} measured",
    ]
    for check in found:
        lines.append(f"{check.target:<66} {'PASS' if check.passed else 'FAIL':<6} {check.measured}")
    return "\n".join(lines)
