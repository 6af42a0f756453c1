"""CPU time and memory of a gunicorn master's workers, read from ``/proc`` (Linux).

CPU: each live worker's user+system time, plus the master's ``cutime``/``cstime``
(the time of workers that exited and were reaped, should any be replaced during a run).
Memory: a poller keeps each worker's peak resident set (``VmHWM``), and the last
proportional set (``Pss`` from ``smaps_rollup``: shared pages split between sharers).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onward)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == str(pid):  # field 4: ppid
            found.append(int(entry.name))
    return sorted(found)


def cpu_seconds(pid: int, *, reaped_children: bool = False, system_only: bool = False) -> float:
    """User+system CPU seconds of ``pid`` (with ``reaped_children``: only its dead children's;
    with ``system_only``: the kernel's part alone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # Counting from field 3: utime is field 14 (index 11), stime 15, cutime 16, cstime 17.
    first = 13 if reaped_children else 11
    system = int(fields[first + 1])
    return (system if system_only else int(fields[first]) + system) / CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def pss_kib(pid: int) -> int | None:
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def workers_cpu_seconds(master: int, *, system_only: bool = False) -> float:
    """CPU seconds of all the master's workers so far, the reaped ones included (with
    ``system_only``: the kernel's part, system calls such as sockets and the log)."""
    return sum(cpu_seconds(pid, system_only=system_only) for pid in children(master)) + cpu_seconds(
        master, reaped_children=True, system_only=system_only
    )


@dataclass
class WorkerMemory:
    peak_rss_kib: int = 0
    last_rss_kib: int = 0
    last_pss_kib: int = 0


@dataclass
class MemoryPoller:
    """Polls the workers of ``master`` every ``interval`` seconds in a daemon thread."""

    master: int
    interval: float = 0.25
    workers: dict[int, WorkerMemory] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll(self) -> None:
        for pid in children(self.master):
            memory = self.workers.setdefault(pid, WorkerMemory())
            hwm = _status_kib(pid, "VmHWM")
            rss = _status_kib(pid, "VmRSS")
            pss = pss_kib(pid)
            if hwm is not None:
                memory.peak_rss_kib = max(memory.peak_rss_kib, hwm)
            if rss is not None:
                memory.last_rss_kib = rss
            if pss is not None:
                memory.last_pss_kib = pss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def start(self) -> MemoryPoller:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="memory-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from ``/proc/stat``."""
    fields = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def backend_cpu_seconds(database: str) -> dict[int, float]:
    """CPU seconds of each live PostgreSQL backend connected to ``database`` (by pid).

    A backend's process title is ``postgres: <cluster>: <user> <database> <client> ...``;
    other databases' backends (other people's tests on a shared machine) are left out.
    """
    found: dict[int, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if len(title) >= 4 and title[0] == "postgres:" and database in title[3:5]:
            found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def backend_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two ``backend_cpu_seconds`` readings (backends that ended are lost)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
