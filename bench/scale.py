"""``make bench-scale``: two app servers against one PostgreSQL, driven together.

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
import subprocess
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

from bench import driver, loader, netns, procstat, spread
from bench.report import all_latencies, by_key, latency
from bench.services import REPO, Gunicorn, StripeEmulator, clean_env, free_port
from db import migrate
from payments.stripe_gateway import build_stripe_client

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_scale"
PEPPER = "securepay-bench-pepper-not-a-secret"
TWILIO_TOKEN = "securepay-bench-twilio-token"  # noqa: S105 - a benchmark value, printed
PORTAL_TOKEN = "securepay-bench-portal-token"  # noqa: S105 - a benchmark value, printed
# The load balancer's URL: what Twilio signs for and every server is told it is
# (SECUREPAY_PUBLIC_URL). Never contacted (.invalid never resolves).
PUBLIC_URL = "http://pay.securepay-bench.invalid"
SERVER_PORT = 8000  # the same on every namespace, as on N machines
GUNICORN_CONFIG = REPO / "gunicorn.conf.py"
WARMUP = "warm-up, every server"
ALONE = "one server alone"
TOGETHER = " servers together"


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


# --- a load phase ------------------------------------------------------------------------


@dataclass
class Phase:
    """One load phase (or several slices of one configuration, merged)."""

    name: str
    servers: tuple[int, ...]  # indexes of the servers that took calls
    results: list[driver.CallResult]
    planned: int
    wall_seconds: float
    workers_cpu_seconds: list[float]  # per server of ``servers``
    own_cpu_seconds: float  # workers, PostgreSQL backends of the bench database, localstripe, generator
    machine_busy_seconds: float
    machine_total_seconds: float

    def figures(self) -> dict[str, Any]:
        ok = [r for r in self.results if r.error is None and not r.cut_by_deadline]
        errors = [r for r in self.results if r.error is not None and not r.cut_by_deadline]
        requests = sum(len(r.requests) for r in self.results)
        wall = self.wall_seconds
        per_server = spread.requests_per_server(
            [(r.account_index, len(r.requests)) for r in self.results], len(self.servers)
        )
        cpu = sum(self.workers_cpu_seconds)
        total = self.machine_total_seconds or 1e-9
        return {
            "servers": [n + 1 for n in self.servers],
            "calls_planned": self.planned,
            "calls_completed": len(ok),
            "errors": len(errors),
            "cut_by_deadline": sum(1 for r in self.results if r.cut_by_deadline),
            "not_started": self.planned - len(self.results),
            "first_errors": [r.error for r in errors[:5]],
            "wall_seconds": round(wall, 2),
            "calls_per_second": round(len(ok) / wall, 3) if wall else 0.0,
            "requests_per_second": round(requests / wall, 1) if wall else 0.0,
            "requests_per_server": per_server,
            "workers_cpu_seconds_per_server": [round(s, 2) for s in self.workers_cpu_seconds],
            "workers_cpu_ms_per_call": round(cpu / max(1, len(self.results)) * 1000, 1),
            "bench_cpu_ms_per_call": round(self.own_cpu_seconds / max(1, len(self.results)) * 1000, 1),
            "calls_per_bench_cpu_second": round(len(ok) / self.own_cpu_seconds, 3)
            if self.own_cpu_seconds
            else 0.0,
            "bench_share_of_machine": round(self.own_cpu_seconds / total, 3),
            "machine_busy_fraction": round(self.machine_busy_seconds / total, 3),
            # What the bench's own processes did not spend: the other work on the machine.
            "others_busy_fraction": round(
                max(0.0, self.machine_busy_seconds - self.own_cpu_seconds) / total, 3
            ),
            "all_requests": latency(all_latencies(self.results)),
            "latency_by_kind": by_key(self.results, "kind"),
        }


def merge(name: str, slices: Sequence[Phase]) -> Phase:
    """The slices of one configuration as one phase: results together, times added."""
    return Phase(
        name,
        slices[0].servers,
        [r for s in slices for r in s.results],
        sum(s.planned for s in slices),
        sum(s.wall_seconds for s in slices),
        [sum(cpu) for cpu in zip(*(s.workers_cpu_seconds for s in slices), strict=True)],
        sum(s.own_cpu_seconds for s in slices),
        sum(s.machine_busy_seconds for s in slices),
        sum(s.machine_total_seconds for s in slices),
    )


def schedule(rounds: int) -> list[str]:
    """The order of the measured slices: one server alone and all together, alternating
    as A B B A ..., so a drift in the machine's load during the run weighs on both alike."""
    if rounds < 1:
        raise ValueError("need at least one round")
    order: list[str] = []
    for r in range(rounds):
        order += [ALONE, TOGETHER] if r % 2 == 0 else [TOGETHER, ALONE]
    return order


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` consecutive slices whose sizes differ by one at most."""
    size, extra = divmod(len(items), parts)
    slices, start = [], 0
    for n in range(parts):
        end = start + size + (1 if n < extra else 0)
        slices.append(list(items[start:end]))
        start = end
    return slices


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def run_phase(
    name: str,
    args: argparse.Namespace,
    servers: Sequence[Gunicorn],
    chosen: tuple[int, ...],
    plans: list[driver.CallPlan],
    stripe_pid: int,
) -> Phase:
    target = driver.Target(PUBLIC_URL, TWILIO_TOKEN, servers=tuple(servers[n].base_url for n in chosen))
    masters = [servers[n].pid for n in chosen]
    database = loader.database_name(args.database_url)
    idle = [servers[n].pid for n in range(len(servers)) if n not in chosen]

    def own() -> tuple[list[float], dict[int, float], float]:
        others = sum(procstat.workers_cpu_seconds(pid) for pid in idle)
        return (
            [procstat.workers_cpu_seconds(pid) for pid in masters],
            procstat.backend_cpu_seconds(database),
            others + procstat.cpu_seconds(stripe_pid) + _children_cpu(),
        )

    cpu_before, backends_before, rest_before = own()
    machine_before = procstat.machine_cpu()
    results, wall = driver.run_calls(
        target,
        plans,
        concurrency=args.concurrency,
        think=args.think,
        deadline=time.time() + args.call_seconds,
        procs=args.procs,
    )
    busy, total = (
        after - before for after, before in zip(procstat.machine_cpu(), machine_before, strict=True)
    )
    cpu_after, backends_after, rest_after = own()
    cpu = [after - before for after, before in zip(cpu_after, cpu_before, strict=True)]
    own_cpu = (
        sum(cpu) + procstat.backend_cpu_delta(backends_before, backends_after) + rest_after - rest_before
    )
    phase = Phase(name, chosen, results, len(plans), wall, cpu, own_cpu, busy, total)
    done = phase.figures()
    _log(
        f"{name}: {done['calls_completed']}/{len(plans)} calls, {done['errors']} errors, "
        f"{done['calls_per_second']} calls/s in {done['wall_seconds']} s "
        f"(requests per server {done['requests_per_server']}; machine {done['machine_busy_fraction']:.0%} "
        f"busy, {done['others_busy_fraction']:.0%} of it other work)"
    )
    return phase


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


# --- the checks after the load -----------------------------------------------------------


def money(url: str, stripe_base: str, results: Sequence[driver.CallResult]) -> dict[str, Any]:
    """Succeeded PaymentIntents at the processor against the ledger, count and cents."""
    client = build_stripe_client(loader.BENCH_STRIPE_KEY, stripe_base, timeout=60)
    intents = [
        intent
        for intent in client.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
        if intent.status == "succeeded"
    ]
    with psycopg.connect(loader.libpq_conninfo(url)) as conn:
        payments, cents = conn.execute(
            "SELECT count(*), coalesce(sum(amount_cents), 0) FROM payments"
        ).fetchone() or (0, 0)
        attempts: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM payment_attempts GROUP BY status").fetchall()
        )
    paid = [r for r in results if r.error is None and not r.cut_by_deadline]
    expected = sum(r.amount_cents for r in paid)
    processor_cents = sum(int(intent.amount) for intent in intents)
    return {
        "processor_succeeded": len(intents),
        "processor_cents": processor_cents,
        "ledger_payments": payments,
        "ledger_cents": int(cents),
        "expected_payments": len(paid),
        "expected_cents": expected,
        "attempts_by_status": attempts,
        "match": len(intents) == payments == len(paid) and processor_cents == int(cents) == expected,
    }


def _securepay(args: Sequence[str], database_url: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("securepay")
    env = clean_env({"SECUREPAY_DATABASE_URL": database_url, "SECUREPAY_PEPPER": PEPPER})
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
            if warm:
                phases.append(run_phase(WARMUP, args, servers, everywhere, _plans(warm), stripe.pid))
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
                in_order.append(run_phase(label, args, servers, chosen, next(slices[kind]), stripe.pid))
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
