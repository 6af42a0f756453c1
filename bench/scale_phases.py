"""``make bench-scale``'s load phases: one configuration of servers driven with a set of calls.

A phase records the calls' results and what the machine spent on them: the serving
workers' CPU, the CPU of every process of the bench (the workers of every server, the
bench database's PostgreSQL backends, localstripe, the generator), and the whole
machine's busy time, so that the share of other work on a shared machine is known.
The measured calls of each configuration run in slices alternating A B B A
(``schedule``), merged afterwards (``merge``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import driver, loader, procstat, spread
from bench.report import all_latencies, by_key, latency
from bench.services import Gunicorn

WARMUP = "warm-up, every server"
ALONE = "one server alone"
TOGETHER = " servers together"


def _log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


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
    signed_for: driver.Target,
) -> Phase:
    """Drive ``plans`` through the servers ``chosen``, signed as ``signed_for`` says."""
    target = driver.Target(
        signed_for.base_url, signed_for.auth_token, servers=tuple(servers[n].base_url for n in chosen)
    )
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
