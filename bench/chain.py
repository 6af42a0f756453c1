"""``python -m bench.chain`` (``make bench-chain``): the audit chain at line scale (issue 12, item 4).

Two measures, both on PostgreSQL, against the issue's targets:

1. **Events per second the chain sustains** with 16, 64 and 256 concurrent writers
   (``--writers``). A writer is what a webhook's commit does to the trail, nothing
   more: a session whose ``SqlEvents`` records ``--events-per-commit`` trail events and
   commits (one INSERT of unsealed events, then the process's sealer is woken), again
   and again for ``--seconds``. Writers are threads over ``--procs`` processes (so one
   GIL does not serialize them; by default one process per 16 writers), one connection
   each; each process runs its sealer
   thread as a web worker does (``db.audit_sealer.AuditSealer``), one of them sealing
   at a time. Counted: events inserted per second, events SEALED per second (the
   head's advance over the window), and the seal lag (from the event's record, just
   before its commit, to the first 20 ms sample that sees it sealed: an upper bound).
   Sealed per second is counted from the window's start until every event of the
   window is sealed (a sealer behind the writers lowers it). Target: >= 5,000 events
   sealed per second.
2. **The lock's share of a webhook's latency** at 50 and 200 concurrent calls
   (``--calls-at``): SecurePay under gunicorn driven by ``bench.driver`` as in
   ``make bench``, while ``bench.lock_sampler`` samples ``pg_stat_activity``; the
   backend-seconds spent waiting on the advisory lock over the sum of the webhooks'
   client-side latencies (the sealer's try-lock never waits, so this measures whether
   anything still does; waits on any heavyweight lock are printed beside it). Targets:
   <= 5 %, webhook p99 < 50 ms; after the calls the trail must end sealed and intact.

256 writers need more connections than a shared server's default 100, so by default
this starts a PostgreSQL of its own (``bench.private_postgres``, same durability
settings as a default server); ``--database-url`` uses an existing server instead, and
any writer count that would not fit in its ``max_connections`` is reported as not run.
Prints the figures against the targets with PASS/FAIL; JSON to ``bench-chain-results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench import driver, loader, lookup
from bench.lock_sampler import LockSampler
from bench.private_postgres import PrivatePostgres
from bench.run import BENCH_PEPPER, BENCH_TWILIO_TOKEN, DEFAULT_GUNICORN_CONFIG, _service_env
from bench.services import Gunicorn, StripeEmulator, free_port
from db import migrate
from db.audit_chain import verify
from db.audit_sealer import AuditSealer, attach, seal_pending
from db.engine import build_engine, session_factory
from db.repositories import SqlEvents

EVENTS_TARGET = 5_000
LOCK_SHARE_TARGET = 0.05
WEBHOOK_P99_TARGET_MS = 50.0
LAG_SAMPLE_SECONDS = 0.02


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--writers", default="16,64,256", help="concurrent chain writers (default 16,64,256)")
    parser.add_argument("--events-per-commit", type=int, default=2, help="trail events per transaction (2)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per writer count (8)")
    parser.add_argument(
        "--procs", type=int, default=None,
        help="writer processes (default: one per 16 writers, at least 4: web workers hold few threads)",
    )
    parser.add_argument("--calls-at", default="50,200", help="concurrent calls for the lock share (50,200)")
    parser.add_argument(
        "--calls-per-level", type=int, default=None, help="calls per level (default: 2 x level)"
    )
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn workers")
    parser.add_argument(
        "--database-url", default=None, help="an existing server's database (dropped, recreated)"
    )
    parser.add_argument("--results", type=Path, default=Path("bench-chain-results.json"))
    args = parser.parse_args(argv)
    args.writer_counts = [int(n) for n in args.writers.split(",") if n]
    args.call_levels = [int(n) for n in args.calls_at.split(",") if n]
    return args


def _log(message: str) -> None:
    print(f"[bench-chain {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- writers ------------------------------------------------------------------------------


_PLAIN = "CREATE TABLE IF NOT EXISTS bench_plain (id bigserial PRIMARY KEY, writer int, payload text)"


def _writer_process(
    url: str, threads: int, go: Any, seconds: float, per_commit: int, chained: bool = True
) -> list[float]:
    """``threads`` writers in this process; each commit's latency in seconds, in the window.

    ``go`` is a barrier shared with the other processes and the parent: the window opens
    when every writer everywhere has its connection. ``chained=False`` is the control:
    the same number of rows and commits into a table of its own, without the chain.
    """
    engine = build_engine(
        url, pool_size=threads + 1, max_overflow=0, pool_timeout=60,
        connect_args={"connect_timeout": 60},  # 256 connections opened at once on a busy machine
    )
    sessions = session_factory(engine)
    sealer = AuditSealer(engine, background=True)  # as each web worker runs it
    attach(sessions, sealer)
    latencies: list[float] = []
    lock = threading.Lock()
    connected = threading.Barrier(threads + 1)
    start = threading.Barrier(threads + 1)

    def write(number: int) -> None:
        mine: list[float] = []
        with engine.connect():
            pass  # open this thread's connection before the window
        connected.wait()
        start.wait()
        end = time.time() + seconds
        while True:
            began = time.perf_counter()
            if time.time() >= end:
                break
            with sessions() as session:
                if chained:  # what a webhook's commit does to the trail
                    trail = SqlEvents(session, process=f"bench-chain:{os.getpid()}")
                    for n in range(per_commit):
                        trail.record(
                            "bench_chain", call_sid=f"CA{os.getpid():08x}{number:08x}{n:016x}", writer=number
                        )
                else:
                    session.execute(
                        text("INSERT INTO bench_plain (writer, payload) VALUES (:w, :p)"),
                        [{"w": number, "p": f"CA{number:08x}{n:016x}"} for n in range(per_commit)],
                    )
                session.commit()
            if time.time() <= end:
                mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    connected.wait()
    go.wait()  # every writer of every process is connected: the window opens
    start.wait()
    for worker in workers:
        worker.join()
    sealer.close()
    engine.dispose()
    return latencies


class SealWatch:
    """Samples the sealed head every 20 ms: events sealed, and each one's lag (the time
    from its record to the first sample that sees it sealed)."""

    _SEALED = (
        "SELECT seq, extract(epoch FROM clock_timestamp() - occurred_at)::float8 FROM audit_events"
        " WHERE seq > %s ORDER BY seq"
    )

    def __init__(self, url: str) -> None:
        self._conninfo = loader.libpq_conninfo(url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seal-watch", daemon=True)
        self.lags: list[float] = []
        self.first_seq = self.last_seq = 0

    def __enter__(self) -> SealWatch:
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_events").fetchone()
        self.first_seq = self.last_seq = int(row[0]) if row else 0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            while not self._stop.is_set():
                for seq, lag in conn.execute(self._SEALED, (self.last_seq,)).fetchall():
                    self.lags.append(lag)
                    self.last_seq = seq
                time.sleep(LAG_SAMPLE_SECONDS)

    @property
    def sealed(self) -> int:
        return self.last_seq - self.first_seq


def _unsealed(url: str) -> int:
    with psycopg.connect(loader.libpq_conninfo(url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM audit_events WHERE seq IS NULL").fetchone()
    return int(row[0]) if row else 0


def _free_connections(url: str) -> int:
    with psycopg.connect(loader.libpq_conninfo(url)) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int - "
            "current_setting('superuser_reserved_connections')::int - count(*) FROM pg_stat_activity"
        ).fetchone()
    return int(row[0]) if row else 0


def _writers(args: argparse.Namespace, url: str, writers: int, *, chained: bool = True) -> dict[str, Any]:
    free = _free_connections(url)
    if writers + 4 > free:
        return {"writers": writers, "not_run": f"needs {writers} connections, {free} free on the server"}
    procs = max(1, min(args.procs or max(4, writers // 16), writers))
    shares = [writers // procs + (1 if p < writers % procs else 0) for p in range(procs)]
    context = get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(procs, mp_context=context) as pool:
        go = manager.Barrier(procs + 1)
        futures = [
            pool.submit(_writer_process, url, share, go, args.seconds, args.events_per_commit, chained)
            for share in shares
        ]
        go.wait(timeout=120)
        with LockSampler(url) as sampler, SealWatch(url) as watch:
            opened = time.monotonic()
            time.sleep(args.seconds)  # the window: every writer writes, the sealers seal
            sealed_in_window = watch.sealed
            latencies = sorted(s for f in futures for s in f.result())
            left = _unsealed(url) if chained else 0
            # Until the window's last event is sealed: the rate the chain sustains end to
            # end (a sealer behind the writers shows here, not only as lag).
            while chained and _unsealed(url) and time.monotonic() - opened < 120:
                time.sleep(LAG_SAMPLE_SECONDS)
            all_sealed = time.monotonic() - opened
            time.sleep(2 * LAG_SAMPLE_SECONDS)  # the watch's last sample
            sealed_total = watch.sealed
    if chained and _unsealed(url):  # what is left is sealed now, before the next row's window
        engine = build_engine(url, pool_size=1, max_overflow=0)
        seal_pending(engine)
        engine.dispose()
    waits = sampler.result
    commits = len(latencies)
    events = commits * args.events_per_commit
    lags = sorted(watch.lags)
    return {
        "writers": writers,
        "chained": chained,
        "processes": procs,
        "seconds": args.seconds,
        "commits": commits,
        "events": events,
        "events_per_second": round(events / args.seconds, 1),  # inserted (committed)
        # Events sealed from the window's start until all its events were sealed, per second.
        "sealed_per_second": round(sealed_total / all_sealed, 1) if chained else None,
        "sealed_in_window_per_second": round(sealed_in_window / args.seconds, 1) if chained else None,
        "seconds_until_all_sealed": round(all_sealed, 2),
        "unsealed_when_writers_stopped": left,
        "seal_lag_p50_s": round(lookup.percentile(lags, 50), 3) if lags else None,
        "seal_lag_p99_s": round(lookup.percentile(lags, 99), 3) if lags else None,
        "commit_p50_ms": round(lookup.percentile(latencies, 50) * 1000, 2) if latencies else None,
        "commit_p99_ms": round(lookup.percentile(latencies, 99) * 1000, 2) if latencies else None,
        # Mean number of writers waiting on the lock at a moment (sampled): how much of
        # the time writers spend queued behind the chain.
        "mean_waiting_on_lock": round(waits.waiting_seconds / waits.seconds, 1) if waits.seconds else None,
        "lock_wait_share_of_writer_time": round(waits.waiting_seconds / (writers * waits.seconds), 3)
        if waits.seconds
        else None,
    }


# -- webhooks -----------------------------------------------------------------------------


def _webhooks(
    args: argparse.Namespace, url: str, level: int, stripe_base: str, workdir: Path
) -> dict[str, Any]:
    calls = args.calls_per_level or 2 * level
    loader.recreate_database(url)
    migrate.upgrade(url)
    rng = random.Random(level)  # noqa: S311 - which accounts call
    accounts = max(2_000, calls)
    members = [loader.member(i) for i in sorted(rng.sample(range(1, accounts + 1), calls))]
    loader.load_accounts(url, accounts, BENCH_PEPPER.encode())
    loader.attach_stored_cards(url, stripe_base, members)
    plans = [driver.securepay_plan(m, other_amount=n % 2 == 1) for n, m in enumerate(members)]
    config = (f"--config={DEFAULT_GUNICORN_CONFIG}",) if DEFAULT_GUNICORN_CONFIG.exists() else ()
    port = free_port()
    with (
        (workdir / f"service-{level}.log").open("w") as log,
        Gunicorn(
            "ivr:create_app()",
            workers=args.workers,
            log=log,
            port=port,
            extra_args=config,
            env=_service_env(url, port, stripe_base),
        ) as gunicorn,
        LockSampler(url) as sampler,
    ):
        results, wall = driver.run_calls(
            driver.Target(gunicorn.base_url, BENCH_TWILIO_TOKEN),
            plans,
            concurrency=level,
            think=1.0,
            deadline=time.time() + 240,
            procs=2,
        )
    waits = sampler.result
    latencies = sorted(t.seconds for r in results for t in r.requests)
    errors = sum(1 for r in results if r.error is not None)
    total = sum(latencies)
    # The workers are gone: their sealers sealed what they committed, or not (then a
    # later sealer must, and verify would name what none did). Seen from here:
    unsealed_after = _unsealed(url)
    engine = build_engine(url, pool_size=1, max_overflow=0)
    try:
        with Session(engine) as session:
            report = verify(session)
    finally:
        engine.dispose()
    return {
        "concurrent_calls": level,
        "calls": len(results),
        "errors": errors,
        "webhooks": len(latencies),
        "wall_seconds": round(wall, 1),
        "webhook_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "webhook_p99_ms": round(lookup.percentile(latencies, 99) * 1000, 1) if latencies else None,
        "lock_wait_seconds": round(waits.waiting_seconds, 3),
        "webhook_seconds": round(total, 2),
        "lock_share": round(waits.waiting_seconds / total, 4) if total else None,
        "any_lock_wait_seconds": round(waits.any_lock_seconds, 3),
        "any_lock_share": round(waits.any_lock_seconds / total, 4) if total else None,
        "max_waiting_on_lock": waits.max_waiting,
        "unsealed_after_calls": unsealed_after,
        "chain_events": report.count,
        "chain_intact": report.intact,
        "samples": waits.samples,
    }


# -- report -------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _render(figures: dict[str, Any]) -> str:
    lines = ["", "== the audit chain at line scale (issue 12, item 4) ==", ""]
    lines.append(
        f"{'writers':>8}{'sealed/s':>10}{'inserted/s':>12}{'commit p50':>12}{'p99 ms':>8}"
        f"{'lag p50 s':>11}{'p99 s':>7}{'sealed by':>11}{'waiting':>9}  target >= 5,000 sealed/s"
    )
    for row in figures["writers"]:
        if "not_run" in row:
            lines.append(f"{row['writers']:>8}  not run: {row['not_run']}")
            continue
        sealed = row["sealed_per_second"] or 0.0
        lines.append(
            f"{row['writers']:>8}{sealed:>10,.0f}{row['events_per_second']:>12,.0f}"
            f"{row['commit_p50_ms']:>12.2f}{row['commit_p99_ms']:>8.2f}"
            f"{row['seal_lag_p50_s'] or 0:>11.3f}{row['seal_lag_p99_s'] or 0:>7.3f}"
            f"{row['seconds_until_all_sealed']:>10.1f}s{row['mean_waiting_on_lock']:>9.1f}"
            f"  {_verdict(sealed >= EVENTS_TARGET)}"
        )
    lines.append(
        "(seal lag: from an event's record, just before its commit, to the first 20 ms sample "
        "that sees it sealed; sealed by: seconds from the window's start until all its events were "
        "sealed, over which sealed/s is counted; waiting: writers waiting on the advisory lock, mean)"
    )
    control = figures.get("control_without_chain")
    if control and "events_per_second" in control:
        lines.append(
            f"control: {control['writers']} writers, the same rows and commits without the trail: "
            f"{control['events_per_second']:,.0f} rows/s (commit p50 {control['commit_p50_ms']} ms)"
        )
    lines += [
        "",
        f"{'calls':>8}{'webhooks':>10}{'p50 ms':>9}{'p99 ms':>9}{'lock share':>12}{'any lock':>10}"
        f"{'errors':>8}{'sealed':>8}  targets: lock <= 5 %, p99 < 50 ms",
    ]
    for row in figures["webhooks"]:
        share = row["lock_share"] or 0.0
        p99 = row["webhook_p99_ms"] or 0.0
        sealed = "yes" if row["unsealed_after_calls"] == 0 and row["chain_intact"] else "NO"
        lines.append(
            f"{row['concurrent_calls']:>8}{row['webhooks']:>10}{row['webhook_p50_ms']:>9}{p99:>9}"
            f"{share:>12.2%}{row['any_lock_share'] or 0.0:>10.2%}{row['errors']:>8}{sealed:>8}"
            f"  lock {_verdict(share <= LOCK_SHARE_TARGET)}, p99 {_verdict(p99 < WEBHOOK_P99_TARGET_MS)}"
        )
    lines.append("(any lock: waits on any heavyweight lock, rows and transactions too, per webhook time)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"securepay-bench-chain-{os.getpid()}"  # noqa: S108
    workdir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "config": {"load_average_at_start": os.getloadavg(), **vars(args)},
        "writers": [],
    }
    with ExitStack() as stack:
        if args.database_url is None:
            server = stack.enter_context(
                PrivatePostgres(max_connections=max(args.writer_counts, default=0) + 60)
            )
            url = server.url("bench_chain")
            _log(f"a PostgreSQL of its own on 127.0.0.1:{server.port}")
        else:
            url = args.database_url
        loader.recreate_database(url)
        migrate.upgrade(url)
        for writers in args.writer_counts:
            row = _writers(args, url, writers)
            figures["writers"].append(row)
            _log(
                f"{writers} writers: {row.get('sealed_per_second', row.get('not_run'))} sealed/s, "
                f"{row.get('events_per_second')} inserted/s"
            )
        control = min(args.writer_counts, default=0)
        if control:
            # The control: as many writers, rows and commits, without the chain. PostgreSQL
            # flushes many commits with one WAL write (group commit); the chain's lock, held
            # through each COMMIT, allows one commit per flush.
            with psycopg.connect(loader.libpq_conninfo(url), autocommit=True) as conn:
                conn.execute(_PLAIN)
            row = _writers(args, url, control, chained=False)
            figures["control_without_chain"] = row
            _log(f"control, {control} writers without the chain: {row.get('events_per_second')} rows/s")
        figures["webhooks"] = []
        if args.call_levels:
            bench_log = stack.enter_context((workdir / "bench.log").open("w"))
            stripe = stack.enter_context(StripeEmulator(bench_log))
            for level in args.call_levels:
                row = _webhooks(args, url, level, stripe.base_url, workdir)
                figures["webhooks"].append(row)
                _log(f"{level} concurrent calls: lock share {row['lock_share']}")
    print(_render(figures), flush=True)
    args.results.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    _log(f"results written to {args.results}; logs in {workdir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_arguments(argv))


if __name__ == "__main__":
    sys.exit(main())
