"""``make bench``: SecurePay under load on this machine, and its figures against the targets.

Starts localstripe and the service under gunicorn on 127.0.0.1 with a dedicated
PostgreSQL database, bulk-loads N accounts, drives C concurrent simulated calls through
the whole flow over HTTP (Call Capture, PIN, balance, the full balance with a stored
card, confirmation), then the same load against a constant-TwiML floor app, then times
the Call Capture lookup at N and 1,000,000 accounts and the PIN hash; with ``--scale``
(the default), the same short load at 1,000 accounts, at 1,000,000, and at 1,000,000
with a year of history (``bench.sizes``). Prints the figures and the targets of issues
5, 9 and 12, and writes them to ``bench-results.json``.

Exit status: 0 when every call completed with no error and the processor's charges
match the ledger; 1 otherwise (or, with ``--strict``, when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench import driver, history, loader, lookup, procstat, report, sizes
from bench.money import money as money_check
from bench.services import REPO, Gunicorn, StripeEmulator, clean_env, free_port
from db import migrate
from ivr.cli.demo import caller_minute

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench"
DEFAULT_1M_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_1m"
DEFAULT_SMALL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_1k"
DEFAULT_HISTORY_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_1m_history"
BENCH_PEPPER = "securepay-bench-pepper-not-a-secret"
BENCH_TWILIO_TOKEN = "securepay-bench-twilio-token"  # noqa: S105 - a benchmark value, printed
DEFAULT_GUNICORN_CONFIG = REPO / "gunicorn.conf.py"


class Overtime(Exception):
    """The benchmark ran past ``--max-seconds``."""


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100_000, help="accounts loaded (default 100,000)")
    parser.add_argument("--calls", type=int, default=1_000, help="calls placed in all (default 1,000)")
    parser.add_argument("--concurrency", type=int, default=50, help="calls in progress at once (default 50)")
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="seconds a caller listens before each key press, +-50 %% (default 1.0; 0: saturate)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * cores + 1,
        help=f"gunicorn workers (default 2 x cores + 1 = {2 * cores + 1})",
    )
    parser.add_argument(
        "--gunicorn-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra gunicorn argument, repeatable (e.g. --gunicorn-arg=--threads=4)",
    )
    parser.add_argument(
        "--floor-calls", type=int, default=None, help="calls against the floor app (default: 500)"
    )
    parser.add_argument(
        "--lookup-accounts",
        type=int,
        default=1_000_000,
        help="accounts for the large Call Capture lookup (default 1,000,000; 0: skip)",
    )
    parser.add_argument(
        "--gunicorn-config",
        type=Path,
        default=None,
        help="gunicorn config file (default: the repository's gunicorn.conf.py when there is one)",
    )
    parser.add_argument("--procs", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help=f"dropped and recreated (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--lookup-database-url",
        default=DEFAULT_1M_URL,
        help=f"for the large lookup; dropped afterwards (default {DEFAULT_1M_URL})",
    )
    parser.add_argument(
        "--scale",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the scale passes: the same short load at 1,000 accounts, at --lookup-accounts, and there "
        "with a year of history, twice at 1,000 (default: on; about 7 minutes)",
    )
    parser.add_argument(
        "--scale-calls", type=int, default=200, help="measured calls per scale pass (default 200)"
    )
    parser.add_argument(
        "--scale-warmup", type=int, default=20, help="unmeasured calls before each scale pass (default 20)"
    )
    parser.add_argument(
        "--history-events",
        type=int,
        default=history.AUDIT_EVENTS,
        help=f"audit events seeded for the history pass (default {history.AUDIT_EVENTS:,})",
    )
    parser.add_argument(
        "--history-attempts",
        type=int,
        default=history.PAYMENT_ATTEMPTS,
        help=f"payment attempts seeded for the history pass (default {history.PAYMENT_ATTEMPTS:,})",
    )
    parser.add_argument(
        "--small-database-url",
        default=DEFAULT_SMALL_URL,
        help=f"the 1,000-account scale passes; dropped afterwards (default {DEFAULT_SMALL_URL})",
    )
    parser.add_argument(
        "--history-database-url",
        default=DEFAULT_HISTORY_URL,
        help="the copy of the large database with the history; dropped afterwards "
        f"(default {DEFAULT_HISTORY_URL})",
    )
    parser.add_argument(
        "--call-seconds", type=float, default=300, help="time limit of the calls phase (default 300)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="time limit of the whole run (default 1,800 with --scale, 570 without)",
    )
    parser.add_argument("--results", type=Path, default=Path("bench-results.json"), help="JSON results file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrency < 1 or args.accounts < args.calls:
        parser.error("need 1 <= calls <= accounts and concurrency >= 1 (each call pays one account in full)")
    if args.scale:
        if args.lookup_accounts < sizes.SMALL_ACCOUNTS:
            parser.error(f"--scale needs --lookup-accounts >= {sizes.SMALL_ACCOUNTS:,} (the large size)")
        if args.scale_calls < 1 or args.scale_warmup < 0:
            parser.error("need --scale-calls >= 1 and --scale-warmup >= 0")
        if 2 * (args.scale_calls + args.scale_warmup) > sizes.SMALL_ACCOUNTS:
            parser.error(f"two small passes must fit in {sizes.SMALL_ACCOUNTS:,} accounts (one each a call)")
        names = {
            loader.database_name(url)
            for url in (args.database_url, args.lookup_database_url, args.small_database_url,
                        args.history_database_url)
        }  # fmt: skip
        if len(names) != 4:
            parser.error(
                "--database-url, --lookup-, --small- and --history-database-url must name 4 databases"
            )
    if args.max_seconds is None:
        args.max_seconds = 1_800 if args.scale else 570
    return args


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _service_env(url: str, port: int, stripe_base: str, log_format: str = "json") -> dict[str, str]:
    return clean_env(
        {
            "SECUREPAY_DATABASE_URL": url,
            "TWILIO_AUTH_TOKEN": BENCH_TWILIO_TOKEN,
            "SECUREPAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SECUREPAY_PEPPER": BENCH_PEPPER,
            "STRIPE_API_KEY": loader.BENCH_STRIPE_KEY,
            "STRIPE_API_BASE": stripe_base,
            "SECUREPAY_LOG_FORMAT": log_format,
        }
    )


def _call_members(args: argparse.Namespace) -> list[loader.Member]:
    rng = random.Random(20261101)  # noqa: S311 - which accounts call, not a secret
    return [loader.member(index) for index in sorted(rng.sample(range(1, args.accounts + 1), args.calls))]


def _log_summary(path: Path) -> dict[str, Any]:
    lines = errors = 0
    events: dict[str, int] = {}
    with path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            lines += 1
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("level") in ("error", "critical", "exception"):
                errors += 1
                events[str(record.get("event"))] = events.get(str(record.get("event")), 0) + 1
    return {"path": str(path), "lines": lines, "errors": errors, "error_events": events}


@dataclass
class Phase:
    """One load phase: the calls' results and what the machine spent on them."""

    results: list[driver.CallResult]
    wall_seconds: float
    workers_cpu_seconds: float
    postgres_cpu_seconds: float
    machine_busy_fraction: float
    memory: procstat.MemoryPoller
    workers_system_seconds: float = 0.0


def _load_phase(
    args: argparse.Namespace,
    target: driver.Target,
    plans: list[driver.CallPlan],
    deadline: float,
    master: int,
    database: str | None = None,
) -> Phase:
    """``plans`` against ``target``; the PostgreSQL CPU is that of ``database``'s backends
    (default: ``--database-url``'s)."""
    poller = procstat.MemoryPoller(master).start()
    workers_before = procstat.workers_cpu_seconds(master)
    system_before = procstat.workers_cpu_seconds(master, system_only=True)
    machine_before = procstat.machine_cpu()
    database = database or loader.database_name(args.database_url)
    postgres_before = procstat.backend_cpu_seconds(database)
    try:
        results, wall = driver.run_calls(
            target, plans, concurrency=args.concurrency, think=args.think, deadline=deadline, procs=args.procs
        )
    finally:
        poller.stop()
    busy, total = (
        after - before for after, before in zip(procstat.machine_cpu(), machine_before, strict=True)
    )
    return Phase(
        results=results,
        wall_seconds=wall,
        workers_cpu_seconds=procstat.workers_cpu_seconds(master) - workers_before,
        workers_system_seconds=procstat.workers_cpu_seconds(master, system_only=True) - system_before,
        postgres_cpu_seconds=procstat.backend_cpu_delta(
            postgres_before, procstat.backend_cpu_seconds(database)
        ),
        machine_busy_fraction=busy / total if total else 0.0,
        memory=poller,
    )


def _gunicorn_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The product's ``gunicorn.conf.py`` when there is one (production settings), then
    ``--gunicorn-arg``s; the command line's ``--bind`` and ``--workers`` win over both."""
    config: list[str] = []
    if args.gunicorn_config is not None:
        config = [f"--config={args.gunicorn_config}"]
    elif DEFAULT_GUNICORN_CONFIG.exists():
        config = [f"--config={DEFAULT_GUNICORN_CONFIG}"]
    return (*config, *args.gunicorn_arg)


def _worker_class(log: Path) -> str:
    """What gunicorn says it uses ("Using worker: gthread")."""
    with log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if "Using worker: " in line:
                return line.split("Using worker: ", 1)[1].split('"')[0].strip()
    return "unknown"


def _phase_figures(phase: Phase, planned: int) -> dict[str, Any]:
    results = phase.results
    ok = [r for r in results if r.error is None and not r.cut_by_deadline]
    errors = [r for r in results if r.error is not None and not r.cut_by_deadline]
    requests = sum(len(r.requests) for r in results)
    wall = phase.wall_seconds
    return {
        "calls_planned": planned,
        "calls_completed": len(ok),
        "errors": len(errors),
        "cut_by_deadline": sum(1 for r in results if r.cut_by_deadline),
        "not_started": planned - len(results),
        "first_errors": [r.error for r in errors[:5]],
        "wall_seconds": round(wall, 2),
        "calls_per_minute": round(len(ok) / wall * 60, 1) if wall else 0.0,
        "requests_per_second": round(requests / wall, 1) if wall else 0.0,
        "latency_by_kind": report.by_key(results, "kind"),
        "latency_by_state": report.by_key(results, "state"),
        "all_requests": report.latency(report.all_latencies(results)),
    }


def _memory_figures(poller: procstat.MemoryPoller) -> dict[str, Any]:
    workers = [
        {
            "pid": pid,
            "peak_rss_mb": round(m.peak_rss_kib * 1024 / report.MB, 1),
            "last_rss_mb": round(m.last_rss_kib * 1024 / report.MB, 1),
            "last_pss_mb": round(m.last_pss_kib * 1024 / report.MB, 1),
        }
        for pid, m in sorted(poller.workers.items())
    ]
    return {"workers": workers, "peak_rss_mb_max": max((w["peak_rss_mb"] for w in workers), default=0.0)}


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="securepay-bench-"))
    gunicorn_args = _gunicorn_args(args)
    busy_before, total_before = procstat.machine_cpu()
    time.sleep(1)
    busy_after, total_after = procstat.machine_cpu()
    background = (busy_after - busy_before) / max(1e-9, total_after - total_before)
    figures: dict[str, Any] = {
        "config": {
            "cores": os.cpu_count(),
            "accounts": args.accounts,
            "calls": args.calls,
            "concurrency": args.concurrency,
            "think_seconds": args.think,
            "workers": args.workers,
            "gunicorn_args": list(gunicorn_args),
            "generator_processes": args.procs,
            "database_url": args.database_url,
            "load_average_at_start": os.getloadavg(),
            "machine_busy_before_start": round(background, 3),
        },
    }
    _log(f"work folder (logs): {workdir}")
    if background > 0.25:
        _log(
            f"WARNING: the machine is already {background:.0%} busy before the benchmark starts "
            f"(load average {os.getloadavg()[0]:.1f}): the figures will be worse than on an idle machine"
        )
    members = _call_members(args)
    pepper = BENCH_PEPPER.encode()
    with (workdir / "bench.log").open("w") as bench_log, StripeEmulator(bench_log) as stripe:
        _log(f"localstripe on {stripe.base_url} (pid {stripe.pid})")
        loader.recreate_database(args.database_url)
        migrate.upgrade(args.database_url)
        loaded = loader.load_accounts(args.database_url, args.accounts, pepper)
        _log(f"loaded {loaded.accounts:,} accounts in {loaded.seconds:.1f} s")
        cards_seconds = loader.attach_stored_cards(args.database_url, stripe.base_url, members)
        _log(f"stored cards for {len(members):,} calling accounts in {cards_seconds:.1f} s")
        figures["setup"] = {
            "accounts": loaded.accounts,
            "load_seconds": round(loaded.seconds, 2),
            "hash_seconds": round(loaded.hash_seconds, 2),
            "copy_seconds": round(loaded.copy_seconds, 2),
            "analyze_seconds": round(loaded.analyze_seconds, 2),
            "stored_cards": len(members),
            "stored_cards_seconds": round(cards_seconds, 2),
        }
        plans = [driver.securepay_plan(m, other_amount=n % 2 == 1) for n, m in enumerate(members)]
        service_log = workdir / "service.log"
        with service_log.open("w") as log:
            port = free_port()
            with Gunicorn(
                "ivr:create_app()",
                workers=args.workers,
                log=log,
                port=port,
                extra_args=gunicorn_args,
                env=_service_env(args.database_url, port, stripe.base_url),
            ) as gunicorn:
                _log(
                    f"SecurePay under gunicorn at {gunicorn.base_url} (master pid {gunicorn.pid}); "
                    f"{len(plans)} calls, {args.concurrency} at once"
                )
                stripe_cpu = procstat.cpu_seconds(stripe.pid)
                phase = _load_phase(
                    args,
                    driver.Target(gunicorn.base_url, BENCH_TWILIO_TOKEN),
                    plans,
                    time.time() + args.call_seconds,
                    gunicorn.pid,
                )
                stripe_cpu = procstat.cpu_seconds(stripe.pid) - stripe_cpu
        figures["config"]["worker_class"] = _worker_class(service_log)
        figures["load"] = _phase_figures(phase, len(plans))
        calls = max(1, len(phase.results))
        figures["cpu"] = {
            "workers_seconds": round(phase.workers_cpu_seconds, 2),
            "seconds_per_call": phase.workers_cpu_seconds / calls,
            "system_seconds_per_call": phase.workers_system_seconds / calls,
            "localstripe_seconds_per_call": stripe_cpu / calls,
            "postgres_seconds_per_call": phase.postgres_cpu_seconds / calls,
            "machine_busy_fraction": round(phase.machine_busy_fraction, 3),
        }
        figures["memory"] = _memory_figures(phase.memory)
        figures["money"] = money_check(args.database_url, stripe.base_url, phase.results)
        figures["caller_minute"] = _caller_minute(stripe.base_url, workdir)
        figures["service_log"] = _log_summary(service_log)
        _log(
            f"calls done: {figures['load']['calls_completed']} ok, {figures['load']['errors']} errors "
            f"in {phase.wall_seconds:.1f} s"
        )

    figures["floor"] = _floor(args, workdir, gunicorn_args)
    _ratios(figures["load"], figures["floor"])
    try:
        figures["lookup"] = _lookups(args, pepper, keep_large=args.scale)
        if args.scale:
            figures["scale"] = _scale(args, pepper, workdir, gunicorn_args)
    finally:
        if args.scale:
            for url in (args.lookup_database_url, args.history_database_url, args.small_database_url):
                loader.drop_database(url)
    pin = lookup.time_pin_hash(pepper)
    figures["pin_hash"] = {
        "rounds": pin.hash.count,
        "hash_mean_ms": round(pin.hash.mean_ms, 2),
        "verify_mean_ms": round(pin.verify.mean_ms, 2),
        "verify_p99_ms": round(pin.verify.p99_ms, 2),
        # A paying call verifies one PIN (the plan enters it once, right): the CPU it costs
        # the worker is what "outside the Argon2 verify" takes off the CPU per call.
        "verify_cpu_mean_ms": round(pin.verify_cpu.mean_ms, 2),
        "verify_cpu_p99_ms": round(pin.verify_cpu.p99_ms, 2),
    }
    figures["total_seconds"] = round(time.monotonic() - started, 1)
    checks = report.targets(figures)
    figures["targets"] = [
        {"issue": c.issue, "target": c.target, "measured": c.measured, "pass": c.passed} for c in checks
    ]
    print(report.render(figures, checks), flush=True)
    args.results.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    _log(f"results written to {args.results}; logs in {workdir}")
    correct = (
        figures["load"]["errors"] == 0
        and figures["load"]["calls_completed"] == args.calls
        and figures["money"]["match"]
        and all(p["errors"] == 0 and p["money_match"] for p in figures.get("scale", {}).get("sizes", []))
    )
    return 0 if correct and (not args.strict or all(c.passed for c in checks)) else 1


def _caller_minute(stripe_api_base: str, workdir: Path) -> list[dict[str, Any]]:
    """Issue 9's figure: the words said up to the confirmation number on each main path
    (the demo members on a fresh SQLite database, the same localstripe), the timeouts
    waited through, and the estimate at 150 words a minute."""
    _log("the caller's minute: each main path called once")
    minutes = caller_minute(stripe_api_base, workdir / "minute")
    return [
        {**asdict(m), "estimate_seconds": round(m.estimate_seconds, 1), "met": m.met} for m in minutes
    ]


def _floor(args: argparse.Namespace, workdir: Path, gunicorn_args: tuple[str, ...]) -> dict[str, Any]:
    calls = args.floor_calls if args.floor_calls is not None else min(args.calls, 500)
    # As many gathers answered as a SecurePay call: 7 (menu key 1) or 8 (the amount typed).
    plans = [driver.floor_plan(f"+1202{3000000 + n:07d}", 7 + n % 2) for n in range(calls)]
    with (
        (workdir / "floor.log").open("w") as log,
        Gunicorn(
            "bench.floor_app:create_app()",
            workers=args.workers,
            log=log,
            extra_args=gunicorn_args,
            env=clean_env({}),
            ready_path="/",
            ready_status=None,
        ) as floor,
    ):
        _log(f"floor app under gunicorn at {floor.base_url}: {calls} calls, {args.concurrency} at once")
        phase = _load_phase(
            args,
            driver.Target(floor.base_url, BENCH_TWILIO_TOKEN),
            plans,
            time.time() + args.call_seconds,
            floor.pid,
        )
    figures = _phase_figures(phase, len(plans))
    summary = figures["all_requests"]
    return {
        "calls": len(plans),
        "completed": figures["calls_completed"],
        "errors": figures["errors"],
        "wall_seconds": figures["wall_seconds"],
        "workers_cpu_seconds_per_call": phase.workers_cpu_seconds / max(1, len(phase.results)),
        "machine_busy_fraction": round(phase.machine_busy_fraction, 3),
        "median_ms": summary.get("p50_ms"),
        "p99_ms": summary.get("p99_ms"),
        "latency": summary,
    }


def _ratios(load: dict[str, Any], floor: dict[str, Any]) -> None:
    """Our median per webhook over the floor's, overall and per kind (into ``floor``)."""
    base = floor.get("median_ms")
    if not base:
        return
    floor["median_ratio"] = round(load["all_requests"]["p50_ms"] / base, 2)
    floor["ratio_by_kind"] = {
        kind: round(row["p50_ms"] / base, 2)
        for kind, row in load["latency_by_kind"].items()
        if row.get("count")
    }


def _lookups(args: argparse.Namespace, pepper: bytes, *, keep_large: bool = False) -> dict[str, Any]:
    """The Call Capture lookup at N accounts and at ``--lookup-accounts``. With
    ``keep_large``, that database is loaded with PINs, copied to ``--history-database-url``
    before any call, and kept for the scale passes (which drop both)."""
    found: dict[str, Any] = {}
    small = lookup.time_lookups(args.database_url, args.accounts)
    found["at_100k"] = {"accounts": small.accounts, **small.timing.__dict__, "plan": small.plan}
    _log(f"Call Capture lookup at {args.accounts:,} accounts: mean {small.timing.mean_ms:.3f} ms")
    if args.lookup_accounts > 0:
        url = args.lookup_database_url
        loader.recreate_database(url)
        try:
            migrate.upgrade(url)
            loaded = loader.load_accounts(url, args.lookup_accounts, pepper, with_pins=keep_large)
            found["load_1m_seconds"] = round(loaded.seconds, 1)
            if keep_large:
                found["vacuum_1m_seconds"] = round(loader.vacuum(url), 1)
                copied = time.perf_counter()
                loader.copy_database(url, args.history_database_url)
                found["copy_1m_seconds"] = round(time.perf_counter() - copied, 1)
            big = lookup.time_lookups(url, args.lookup_accounts)
            found["at_1m"] = {"accounts": big.accounts, **big.timing.__dict__, "plan": big.plan}
            _log(
                f"Call Capture lookup at {args.lookup_accounts:,} accounts: mean {big.timing.mean_ms:.3f} ms"
            )
        finally:
            if not keep_large:
                loader.drop_database(url)
    return found


def _scale(
    args: argparse.Namespace, pepper: bytes, workdir: Path, gunicorn_args: tuple[str, ...]
) -> dict[str, Any]:
    """The scale passes (``bench.sizes``): small, large, large with history, small again."""
    started = time.monotonic()
    large, seeded = args.lookup_accounts, None
    small_taken: set[int] = set()
    large_taken: set[int] = set()
    passes: list[dict[str, Any]] = []
    for role in sizes.ROLES:
        if role in (sizes.SMALL, sizes.SMALL_AGAIN):
            url, accounts, taken = args.small_database_url, sizes.SMALL_ACCOUNTS, small_taken
            loader.recreate_database(url)
            migrate.upgrade(url)
            loader.load_accounts(url, accounts, pepper)
            loader.vacuum(url)
        elif role == sizes.LARGE:
            url, accounts, taken = args.lookup_database_url, large, large_taken
        else:
            url, accounts, taken = args.history_database_url, large, large_taken
            seeded = history.seed(
                url, large, audit_events=args.history_events, attempts=args.history_attempts
            )
            vacuumed = loader.vacuum(url)
            _log(
                f"history: {seeded.audit_events:,} audit events and {seeded.payment_attempts:,} payment "
                f"attempts seeded in {seeded.seconds:.1f} s, vacuumed in {vacuumed:.1f} s"
            )
        warm = sizes.members(accounts, args.scale_warmup, taken, seed=len(passes) * 2 + 1)
        measured = sizes.members(accounts, args.scale_calls, taken, seed=len(passes) * 2 + 2)
        history_rows = (
            {"audit_events": seeded.audit_events, "payment_attempts": seeded.payment_attempts}
            if role == sizes.HISTORY and seeded is not None
            else None
        )
        passes.append(
            _size_pass(args, role, url, accounts, history_rows, warm, measured, workdir, gunicorn_args)
        )
    return {
        "calls": args.scale_calls,
        "warmup_calls": args.scale_warmup,
        "concurrency": args.concurrency,
        "think_seconds": args.think,
        "tolerances": {"cpu": sizes.CPU_TOLERANCE, "median": sizes.MEDIAN_TOLERANCE},
        "history_seed_seconds": round(seeded.seconds, 1) if seeded else None,
        "seconds": round(time.monotonic() - started, 1),
        "sizes": passes,
    }


def _size_pass(
    args: argparse.Namespace,
    role: str,
    url: str,
    accounts: int,
    history_rows: dict[str, int] | None,
    warm: list[loader.Member],
    measured: list[loader.Member],
    workdir: Path,
    gunicorn_args: tuple[str, ...],
) -> dict[str, Any]:
    """One scale pass: its own localstripe (so charges = ledger rows is the pass's own),
    its own gunicorn on ``url``, the warm-up calls, then the measured ones."""
    name = role.replace(" ", "_").replace("+", "_")
    with (
        (workdir / f"scale-{name}-bench.log").open("w") as bench_log,
        StripeEmulator(bench_log) as stripe,
        (workdir / f"scale-{name}-service.log").open("w") as log,
    ):
        loader.attach_stored_cards(url, stripe.base_url, [*warm, *measured])
        port = free_port()
        with Gunicorn(
            "ivr:create_app()",
            workers=args.workers,
            log=log,
            port=port,
            extra_args=gunicorn_args,
            env=_service_env(url, port, stripe.base_url),
        ) as gunicorn:
            target = driver.Target(gunicorn.base_url, BENCH_TWILIO_TOKEN)
            plans = [driver.securepay_plan(m, other_amount=n % 2 == 1) for n, m in enumerate(measured)]
            _log(f"scale pass {role} ({accounts:,} accounts): {len(warm)} warm-up calls, then {len(plans)}")
            warm_results, _ = driver.run_calls(
                target,
                [driver.securepay_plan(m, other_amount=n % 2 == 1) for n, m in enumerate(warm)],
                concurrency=args.concurrency,
                think=args.think,
                deadline=time.time() + args.call_seconds,
                procs=args.procs,
            )
            phase = _load_phase(
                args,
                target,
                plans,
                time.time() + args.call_seconds,
                gunicorn.pid,
                database=loader.database_name(url),
            )
        money = money_check(url, stripe.base_url, [*warm_results, *phase.results])
    load = _phase_figures(phase, len(plans))
    found = sizes.pass_figures(
        role,
        accounts=accounts,
        history=history_rows,
        load=load,
        workers_cpu_seconds=phase.workers_cpu_seconds,
        postgres_cpu_seconds=phase.postgres_cpu_seconds,
        calls=len(plans),
        machine_busy_fraction=phase.machine_busy_fraction,
        money=money,
    )
    found["warmup_errors"] = sum(1 for r in warm_results if r.error is not None)
    _log(
        f"  {found['calls_completed']} ok, {found['errors']} errors; "
        f"CPU {found['workers_cpu_ms_per_call']:.1f} ms/call, median {found['median_ms']} ms, "
        f"p99 {found['p99_ms']} ms"
    )
    return found


def _overtime(_signum: int, _frame: FrameType | None) -> None:
    raise Overtime("the benchmark ran past --max-seconds")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGALRM, _overtime)
    signal.alarm(int(args.max_seconds))
    try:
        return run(args)
    except Overtime as exc:
        print(f"bench: {exc}; every process it started was stopped", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
