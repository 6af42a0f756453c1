"""``make bench-count``: a per-call cost that a busy machine cannot move.

Wall times on a shared 2-core machine move by tens of percent from one run to the next;
instruction counts do not. This runs N whole calls of ``make bench``'s plans
(``bench.driver.securepay_plan``: Call Capture, PIN, balance, full balance with the
stored card or typed at "another amount", confirm, goodbye, status) in one process,
the Flask app called through WSGI (``bench.inprocess``), with PostgreSQL and
localstripe in their own processes, under valgrind's callgrind, and prints the
instructions per webhook kind, per call (with and without the Argon2 verify) and per
request of the floor app (``bench/floor_app.py``) driven the same way. A second pass of
the same plans without valgrind counts statements and round trips per kind
(``bench.wire``).

How the regions are marked, and why that is robust: see ``bench.callgrind``.

Results go to ``bench-count-results.json`` (``--results``); ``--compare FILE`` prints how
far every count moved against an earlier run's file; the targets compare with
``bench/count_baseline.json``, the counts before issue 12's changes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import count_figures, history, loader
from bench.callgrind import CallgrindUnavailable, build_marks, read_dumps, valgrind_command
from bench.run import BENCH_PEPPER, _service_env
from bench.services import REPO, StripeEmulator
from db import migrate

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_count"
BASELINE = Path(__file__).resolve().parent / "count_baseline.json"
PUBLIC_URL = "http://127.0.0.1:8080"  # only signed for: no server listens in this benchmark
CALLGRIND_PREFIX = "callgrind.out"
# Every call pays a fresh account in full: each pass has its own block of members
# (callgrind; statements; statements without the decline-count index).
_BLOCKS = 3


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.count",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--calls", type=int, default=10, help="measured calls (default 10; ~10 s each under callgrind)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="calls before measuring (default 2)")
    parser.add_argument("--floor-calls", type=int, default=None, help="floor app calls (default: --calls)")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts loaded (default 1,000)")
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help=f"dropped and recreated (default {DEFAULT_URL})"
    )
    parser.add_argument("--results", type=Path, default=Path("bench-count-results.json"), help="JSON results")
    parser.add_argument("--compare", type=Path, default=None, help="an earlier results file: print the drift")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=BASELINE,
        help=f"the counts before issue 12 (default {BASELINE.name})",
    )
    parser.add_argument("--skip-callgrind", action="store_true", help="only the statements pass (seconds)")
    parser.add_argument(
        "--history",
        action="store_true",
        help=f"seed {history.AUDIT_EVENTS:,} audit events and {history.PAYMENT_ATTEMPTS:,} payment attempts "
        "first, and run the statements pass without and with the decline-count index",
    )
    parser.add_argument("--history-events", type=int, default=history.AUDIT_EVENTS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--history-attempts", type=int, default=history.PAYMENT_ATTEMPTS, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--keep-dumps", action="store_true", help="keep callgrind's files (callgrind_annotate)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.warmup < 2:
        parser.error("need --calls >= 1 and --warmup >= 2 (both plans warmed up)")
    needed = _BLOCKS * (args.calls + args.warmup)
    if args.accounts < needed:
        parser.error(f"need --accounts >= {needed}: every call pays one fresh account in full")
    return args


def _log(message: str) -> None:
    print(f"[bench-count {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _members(first: int, count: int) -> list[tuple[int, bool]]:
    """``count`` member indexes from ``first``, every other one typing the amount."""
    return [(first + n, n % 2 == 1) for n in range(count)]


def _spec(
    args: argparse.Namespace, block: int, mode: str, workdir: Path, marks: Path | None
) -> dict[str, Any]:
    first = 1 + block * (args.warmup + args.calls)
    return {
        "mode": mode,
        "name": f"{mode}-{block}",
        "warmup": _members(first, args.warmup),
        "measured": _members(first + args.warmup, args.calls),
        "floor_warmup": args.warmup,
        "floor_calls": args.floor_calls if args.floor_calls is not None else args.calls,
        "marks": str(marks) if marks else None,
        "output": str(workdir / f"{mode}-{block}-output.json"),
    }


def _run_worker(
    spec: dict[str, Any], env: dict[str, str], workdir: Path, *, under_valgrind: bool
) -> dict[str, Any]:
    spec_path = workdir / f"{spec['name']}-spec.json"
    spec_path.write_text(json.dumps(spec))
    argv = [sys.executable, "-m", "bench.count_worker", str(spec_path)]
    if under_valgrind:
        argv = valgrind_command(workdir / CALLGRIND_PREFIX, argv)
    log_path = workdir / f"{spec['name']}.log"
    with log_path.open("w") as log:
        finished = subprocess.run(  # noqa: S603 - our own interpreter (and valgrind)
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    output = Path(spec["output"])
    if not output.exists():
        raise RuntimeError(
            f"the {spec['mode']} pass exited {finished.returncode} with no result: see {log_path}"
        )
    result: dict[str, Any] = json.loads(output.read_text())
    if finished.returncode != 0 or result["problems"]:
        problems = result["problems"][:3]
        raise RuntimeError(
            f"the {spec['mode']} pass failed ({finished.returncode}): {problems}; see {log_path}"
        )
    return result


def _decline_index(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """The menu step and the decline count with the index (as migrated) and without it."""
    url = args.database_url
    caller = loader.member(1).phone
    callers = [loader.member(i).phone for i in range(1, 51)]
    found: dict[str, Any] = {
        "with": {
            "explain": history.explain_decline_count(url, caller),
            "statement_median_ms": history.time_decline_count(url, callers),
        }
    }
    history.set_decline_index(url, present=False)
    try:
        found["without"] = {
            "explain": history.explain_decline_count(url, caller),
            "statement_median_ms": history.time_decline_count(url, callers),
        }
        _log("statements pass without the decline-count index")
        wire = _run_worker(_spec(args, 2, "wire", workdir, None), env, workdir, under_valgrind=False)
        found["without"]["wire"] = count_figures.wire_figures(wire["regions"])
    finally:
        history.set_decline_index(url, present=True)
    return found


def _load(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="securepay-bench-count-"))
    _log(f"work folder (logs): {workdir}")
    figures: dict[str, Any] = {
        "config": {
            "calls": args.calls,
            "warmup_calls": args.warmup,
            "accounts": args.accounts,
            "database_url": args.database_url,
            "load_average_at_start": os.getloadavg(),
        }
    }
    marks = None if args.skip_callgrind else build_marks(workdir)
    members = [loader.member(i) for i in range(1, _BLOCKS * (args.warmup + args.calls) + 1)]
    url = args.database_url
    with (workdir / "bench.log").open("w") as bench_log, StripeEmulator(bench_log) as stripe:
        loader.recreate_database(url)
        migrate.upgrade(url)
        loaded = loader.load_accounts(url, args.accounts, BENCH_PEPPER.encode())
        loader.attach_stored_cards(url, stripe.base_url, members)
        _log(f"{loaded.accounts:,} accounts loaded, {len(members)} with a stored card")
        if args.history:
            seeded = history.seed(
                url, args.accounts, audit_events=args.history_events, attempts=args.history_attempts
            )
            figures["config"]["history"] = seeded.__dict__
            _log(
                f"history: {seeded.audit_events:,} audit events, "
                f"{seeded.payment_attempts:,} payment attempts in {seeded.seconds:.1f} s"
            )
        env = _service_env(url, 8080, stripe.base_url)
        env["SECUREPAY_PUBLIC_URL"] = PUBLIC_URL
        env["PYTHONHASHSEED"] = "0"
        if marks is not None:
            _log(f"callgrind pass: {args.warmup} warm-up calls, then {args.calls} measured (slow)")
            pass_started = time.monotonic()
            _run_worker(_spec(args, 0, "callgrind", workdir, marks), env, workdir, under_valgrind=True)
            requests, overhead = count_figures.requests_of(
                read_dumps(workdir, CALLGRIND_PREFIX, remove=not args.keep_dumps)
            )
            figures["marks_overhead"] = overhead
            figures["instructions"] = count_figures.instruction_figures(requests)
            figures["callgrind_seconds"] = round(time.monotonic() - pass_started, 1)
        _log("statements pass (no valgrind)")
        wire = _run_worker(_spec(args, 1, "wire", workdir, None), env, workdir, under_valgrind=False)
        figures["wire"] = count_figures.wire_figures(wire["regions"])
        if args.history:
            figures["decline_index"] = _decline_index(args, env, workdir)
            figures["decline_index"]["with"]["wire"] = figures["wire"]
    baseline = _load(args.baseline)
    previous = _load(args.compare)
    if previous is not None and "instructions" in figures and "instructions" in previous:
        figures["repeat"] = {
            "file": str(args.compare),
            "difference_percent": count_figures.difference(figures["instructions"], previous["instructions"]),
        }
    checks = count_figures.targets(figures, baseline)
    figures["targets"] = [{"target": c.target, "measured": c.measured, "pass": c.passed} for c in checks]
    figures["total_seconds"] = round(time.monotonic() - started, 1)
    print(count_figures.render(figures, checks, baseline), flush=True)
    args.results.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    _log(f"results written to {args.results}")
    return 1 if args.strict and not all(c.passed for c in checks) else 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        return run(args)
    except CallgrindUnavailable as exc:
        print(f"bench-count: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
