"""``make bench-scale``: two app servers against one PostgreSQL, driven together.

This module places and starts them and runs the phases; ``bench.scale_phases`` drives
and measures a phase, ``bench.scale_report`` checks money and the chain and prints.

Issue 12, item 5. N app servers (default 2), each a gunicorn with the repository's
``gunicorn.conf.py`` (the production settings) and the same number of workers, on an
address of its own in a network namespace the bench makes (``bench.netns``; as root with
``ip``), else on N ports of 127.0.0.1; one PostgreSQL database, one localstripe. The
generator is the load balancer: each request of a call goes to the next server
(``bench.spread``), so a call's steps are answered by different servers, every request
signed for the one public URL all servers are configured with.

In one run, with the same calls, concurrency and workers per server: a warm-up through
every server, the first server alone, then all of them. Printed and checked: no call
failed; the processor's succeeded PaymentIntents equal the ledger's payments, in count
and cents; ``securepay audit verify`` accepts the chain (after ``securepay audit seal``
where that command exists). The calls per second of the pair over one server alone is
reported, not targeted: on a 2-core machine both servers share the same cores.
Results in ``bench-scale-results.json``. Exit status 0 when the three checks pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench import driver, loader, netns, procstat
from bench.money import money
from bench.scale_phases import ALONE, TOGETHER, WARMUP, Phase, merge, run_phase, schedule, split
from bench.scale_report import audit_chain, checks, log_errors, render, speedup
from bench.services import REPO, Gunicorn, StripeEmulator, clean_env, free_port
from db import migrate

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_scale"
PEPPER = "securepay-bench-pepper-not-a-secret"
TWILIO_TOKEN = "securepay-bench-twilio-token"  # noqa: S105 - a benchmark value, printed
PORTAL_TOKEN = "securepay-bench-portal-token"  # noqa: S105 - a benchmark value, printed
# The load balancer's URL: what Twilio signs for and every server is told it is
# (SECUREPAY_PUBLIC_URL). Never contacted (.invalid never resolves).
PUBLIC_URL = "http://pay.securepay-bench.invalid"
SERVER_PORT = 8000  # the same on every namespace, as on N machines
GUNICORN_CONFIG = REPO / "gunicorn.conf.py"


class Overtime(Exception):
    """The benchmark ran past ``--max-seconds``."""


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--servers", type=int, default=2, help="app servers (default 2)")
    parser.add_argument(
        "--calls",
        type=int,
        default=300,
        help="calls in each measured phase, one server and all (default 300)",
    )
    parser.add_argument("--concurrency", type=int, default=50, help="calls in progress at once (default 50)")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds a caller listens before each key, +-50 %% (default 0: saturate: capacity)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * cores + 1,
        help=f"gunicorn workers per server (default 2 x cores + 1 = {2 * cores + 1}, gunicorn.conf.py's)",
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="warm-up calls through every server (default 20)"
    )
    parser.add_argument(
        "--accounts", type=int, default=None, help="accounts loaded (default: 1,000 more than the calls)"
    )
    parser.add_argument(
        "--network",
        choices=("auto", "netns", "loopback"),
        default="auto",
        help="netns: a network namespace per server (root); loopback: ports of 127.0.0.1; "
        "auto (default): netns when it can be made, else loopback",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="the calls of each phase in this many slices, alternating A B B A... (default 2)",
    )
    parser.add_argument("--procs", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help=f"dropped and recreated (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--call-seconds", type=float, default=100, help="time limit of each load phase (default 100)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=330, help="time limit of the whole run (default 330)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a quick look: 60 calls a phase, 20 at once, 3 workers a server"
    )
    parser.add_argument(
        "--results", type=Path, default=Path("bench-scale-results.json"), help="JSON results file"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.concurrency, args.workers, args.warmup = 60, 20, 3, 6
    if (
        args.servers < 2
        or args.calls < args.rounds
        or args.concurrency < 1
        or args.workers < 1
        or args.warmup < 0
        or args.rounds < 1
    ):
        parser.error("need servers >= 2, calls >= rounds >= 1, concurrency >= 1, workers >= 1, warmup >= 0")
    needed = 2 * args.calls + args.warmup
    if args.accounts is None:
        args.accounts = needed + 1_000
    if args.accounts < needed:
        parser.error(f"need accounts >= {needed} (each call pays one account in full)")
    return args


def _log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- where the servers run ---------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where each server listens, how it is started, how it reaches PostgreSQL and localstripe."""

    network: str  # "netns" or "loopback"
    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    prefixes: tuple[tuple[str, ...], ...]
    stripe_host: str
    database_url: str  # as the servers see it
    why: str = ""


def socket_directory(url: str) -> str:
    """Where the PostgreSQL at ``url`` keeps its Unix socket (``unix_socket_directories``)."""
    with psycopg.connect(loader.libpq_conninfo(url, "postgres")) as conn:
        row = conn.execute("SHOW unix_socket_directories").fetchone()
    directories = [d.strip() for d in str(row[0] if row else "").split(",") if d.strip()]
    port = make_url(url).port or 5432
    for directory in directories:
        if directory.startswith("/") and Path(directory, f".s.PGSQL.{port}").exists():
            return directory
    raise netns.NetnsUnavailable(f"PostgreSQL has no Unix socket this host can see ({directories})")


def via_socket(url: str, directory: str) -> str:
    """``url`` with the host replaced by the Unix socket directory (libpq's ``host=/dir``)."""
    parsed = make_url(url)
    port = parsed.port
    rewritten = parsed._replace(host=None, port=None).update_query_dict({"host": directory})
    if port is not None:
        rewritten = rewritten.update_query_dict({"port": str(port)})
    return rewritten.render_as_string(hide_password=False)


def loopback_placement(args: argparse.Namespace, why: str) -> Placement:
    ports = tuple(free_port() for _ in range(args.servers))
    return Placement(
        "loopback",
        ("127.0.0.1",) * args.servers,
        ports,
        ((),) * args.servers,
        "127.0.0.1",
        args.database_url,
        why,
    )


def netns_placement(namespaces: Sequence[netns.Namespace], database_url: str, socket_dir: str) -> Placement:
    return Placement(
        "netns",
        tuple(ns.address for ns in namespaces),
        (SERVER_PORT,) * len(namespaces),
        tuple(ns.exec_prefix() for ns in namespaces),
        namespaces[0].host_address,
        via_socket(database_url, socket_dir),
    )


def _server_env(database_url: str, stripe_base: str) -> dict[str, str]:
    """The same settings on every server: one database, one pepper and set of tokens, one
    processor account, and the load balancer's URL as the public URL."""
    return clean_env(
        {
            "SECUREPAY_DATABASE_URL": database_url,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "SECUREPAY_PUBLIC_URL": PUBLIC_URL,
            "SECUREPAY_PEPPER": PEPPER,
            "SECUREPAY_PORTAL_TOKEN": PORTAL_TOKEN,
            "STRIPE_API_KEY": loader.BENCH_STRIPE_KEY,
            "STRIPE_API_BASE": stripe_base,
            "SECUREPAY_LOG_FORMAT": "json",
        }
    )


def in_own_network_namespace(pid: int) -> bool:
    """Whether ``pid`` runs in a network namespace other than this process's."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def connections_by_route(url: str) -> dict[str, int]:
    """The bench database's connections: over the Unix socket or TCP (``pg_stat_activity``)."""
    with psycopg.connect(loader.libpq_conninfo(url, "postgres")) as conn:
        rows = conn.execute(
            "SELECT CASE WHEN client_addr IS NULL THEN 'unix socket' ELSE host(client_addr) END, count(*) "
            "FROM pg_stat_activity WHERE datname = %s GROUP BY 1",
            (loader.database_name(url),),
        ).fetchall()
    return {str(route): int(count) for route, count in rows}


# --- the run -----------------------------------------------------------------------------


def _members(
    args: argparse.Namespace,
) -> tuple[list[loader.Member], list[loader.Member], list[loader.Member]]:
    """Distinct accounts for the warm-up, the one-server phase and the all-servers phase."""
    rng = random.Random(20261201)  # noqa: S311 - which accounts call, not a secret
    chosen = sorted(rng.sample(range(1, args.accounts + 1), args.warmup + 2 * args.calls))
    rng.shuffle(chosen)
    members = [loader.member(index) for index in chosen]
    return (
        members[: args.warmup],
        members[args.warmup : args.warmup + args.calls],
        members[args.warmup + args.calls :],
    )


def _plans(members: Sequence[loader.Member]) -> list[driver.CallPlan]:
    return [driver.securepay_plan(m, other_amount=n % 2 == 1) for n, m in enumerate(members)]


def _place(args: argparse.Namespace, stack: contextlib.ExitStack) -> Placement:
    if args.network == "loopback":
        return loopback_placement(args, "asked for (--network loopback)")
    try:
        socket_dir = socket_directory(args.database_url)
        removed = netns.remove_stale()
        if removed:
            _log(f"removed namespaces left by a killed run: {', '.join(removed)}")
        made = netns.Namespaces(netns.plan(args.servers, os.getpid(), netns.host_networks()))
        stack.callback(_report_leftovers, made)  # runs after the namespaces' own exit
        stack.enter_context(made)
    except netns.NetnsUnavailable as exc:
        if args.network == "netns":
            raise
        return loopback_placement(args, f"no network namespaces: {exc}")
    return netns_placement(made.plans, args.database_url, socket_dir)


def _report_leftovers(made: netns.Namespaces) -> None:
    if made.leftovers:
        _log(f"WARNING: namespaces not removed: {', '.join(made.leftovers)} (ip netns delete NAME)")


def _start_servers(
    args: argparse.Namespace,
    place: Placement,
    env: dict[str, str],
    workdir: Path,
    stack: contextlib.ExitStack,
) -> list[Gunicorn]:
    servers: list[Gunicorn] = []
    for n in range(args.servers):
        log = stack.enter_context((workdir / f"server{n + 1}.log").open("w"))
        server = Gunicorn(
            "ivr:create_app()",
            workers=args.workers,
            log=log,
            port=place.ports[n],
            host=place.hosts[n],
            prefix=place.prefixes[n],
            extra_args=(f"--config={GUNICORN_CONFIG}",),
            env=env,
            ready_path="/readyz",
        )
        servers.append(stack.enter_context(server))
        _log(
            f"server {n + 1} at {server.base_url} (gunicorn master pid {server.pid}, {args.workers} workers)"
        )
    return servers


def _background() -> float:
    busy_before, total_before = procstat.machine_cpu()
    time.sleep(1)
    busy_after, total_after = procstat.machine_cpu()
    return (busy_after - busy_before) / max(1e-9, total_after - total_before)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="securepay-bench-scale-"))
    background = _background()
    figures: dict[str, Any] = {
        "config": {
            "cores": os.cpu_count(),
            "servers": args.servers,
            "workers_per_server": args.workers,
            "gunicorn_config": str(GUNICORN_CONFIG),
            "calls_per_phase": args.calls,
            "warmup_calls": args.warmup,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "think_seconds": args.think,
            "accounts": args.accounts,
            "generator_processes": args.procs,
            "database_url": args.database_url,
            "public_url": PUBLIC_URL,
            "load_average_at_start": os.getloadavg(),
            "machine_busy_before_start": round(background, 3),
        }
    }
    _log(f"work folder (logs): {workdir}")
    _log(f"the machine was {background:.0%} busy before the start (load average {os.getloadavg()[0]:.1f})")
    warm, solo_members, pair_members = _members(args)
    everyone = [*warm, *solo_members, *pair_members]
    phases: list[Phase] = []
    with contextlib.ExitStack() as stack:
        place = _place(args, stack)
        figures["config"]["network"] = place.network
        figures["config"]["network_why"] = place.why
        figures["config"]["servers_at"] = [f"{h}:{p}" for h, p in zip(place.hosts, place.ports, strict=True)]
        figures["config"]["servers_database_url"] = place.database_url
        where = ", ".join(figures["config"]["servers_at"])
        _log(f"network: {place.network} ({place.why or 'a namespace and a veth pair per server'}): {where}")
        bench_log = stack.enter_context((workdir / "bench.log").open("w"))
        stripe = stack.enter_context(StripeEmulator(bench_log, host=place.stripe_host))
        _log(f"localstripe on {stripe.base_url} (pid {stripe.pid})")
        loader.recreate_database(args.database_url)
        migrate.upgrade(args.database_url)
        loaded = loader.load_accounts(args.database_url, args.accounts, PEPPER.encode())
        cards = loader.attach_stored_cards(args.database_url, stripe.base_url, everyone)
        _log(
            f"loaded {loaded.accounts:,} accounts in {loaded.seconds:.1f} s, "
            f"{len(everyone)} stored cards in {cards:.1f} s"
        )
        figures["setup"] = {"load_seconds": round(loaded.seconds, 2), "stored_cards_seconds": round(cards, 2)}
        with contextlib.ExitStack() as running:
            servers = _start_servers(
                args, place, _server_env(place.database_url, stripe.base_url), workdir, running
            )
            figures["config"]["servers_in_own_network_namespace"] = [
                in_own_network_namespace(server.pid) for server in servers
            ]
            everywhere = tuple(range(args.servers))
            signed_for = driver.Target(PUBLIC_URL, TWILIO_TOKEN)
            if warm:
                phases.append(
                    run_phase(WARMUP, args, servers, everywhere, _plans(warm), stripe.pid, signed_for)
                )
            order = schedule(args.rounds)
            slices = {
                ALONE: iter(split(_plans(solo_members), args.rounds)),
                TOGETHER: iter(split(_plans(pair_members), args.rounds)),
            }
            measured: dict[str, list[Phase]] = {ALONE: [], TOGETHER: []}
            in_order: list[Phase] = []
            for n, kind in enumerate(order, start=1):
                chosen = (0,) if kind == ALONE else everywhere
                label = f"{ALONE if kind == ALONE else str(args.servers) + TOGETHER} ({n}/{len(order)})"
                in_order.append(
                    run_phase(label, args, servers, chosen, next(slices[kind]), stripe.pid, signed_for)
                )
                measured[kind].append(in_order[-1])
            figures["database_connections"] = connections_by_route(args.database_url)
            phases.append(merge(ALONE, measured[ALONE]))
            phases.append(merge(f"{args.servers}{TOGETHER}", measured[TOGETHER]))
            figures["slices"] = [{"name": p.name, **p.figures()} for p in in_order]
        # Every server stopped (graceful: requests finished); localstripe still up.
        figures["money"] = money(args.database_url, stripe.base_url, [r for p in phases for r in p.results])
    _log("servers, localstripe and the namespaces stopped; verifying the audit chain")
    figures["audit"] = audit_chain(args.database_url)
    figures["server_log_errors"] = [log_errors(workdir / f"server{n + 1}.log") for n in range(args.servers)]
    return _finish(args, figures, phases, workdir, started)


def _finish(
    args: argparse.Namespace, figures: dict[str, Any], phases: list[Phase], workdir: Path, started: float
) -> int:
    figures["phases"] = [{"name": p.name, **p.figures()} for p in phases]
    figures["speedup"] = speedup(figures["phases"])
    figures["speedup_per_bench_cpu_second"] = speedup(figures["phases"], "calls_per_bench_cpu_second")
    figures["total_seconds"] = round(time.monotonic() - started, 1)
    figures["logs"] = str(workdir)
    found = checks(figures)
    figures["targets"] = [{"target": c.target, "measured": c.measured, "pass": c.passed} for c in found]
    print(render(figures, found), flush=True)
    args.results.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    _log(f"results written to {args.results}; logs in {workdir}; {figures['total_seconds']} s in all")
    return 0 if all(c.passed for c in found) else 1


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)

    def overtime(_signum: int, _frame: FrameType | None) -> None:
        raise Overtime("the benchmark ran past --max-seconds")

    signal.signal(signal.SIGALRM, overtime)
    signal.alarm(int(args.max_seconds))
    try:
        return run(args)
    except Overtime as exc:
        print(f"bench-scale: {exc}; every process it started was stopped", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
