"""Instruction counts from valgrind's callgrind, region by region, for ``make bench-count``.

How a region is counted: the measured process runs under
``valgrind --tool=callgrind --instr-atstart=no``, so start-up (imports, app factory,
warm-up calls) runs uninstrumented and fast. It then loads a four-line C library
(``MARKS_SOURCE``, compiled here with the system's ``cc`` against valgrind's own
``callgrind.h``) whose functions are callgrind *client requests*: magic instruction
sequences that callgrind intercepts synchronously, in the thread that executes them,
and that do nothing outside valgrind. ``start()`` turns instrumentation on once;
around each region ``zero()`` clears the counters and ``dump(label)`` writes them to
a file of their own (``<out>.<pid>.<n>``, ``desc: Trigger: Client Request: <label>``)
and clears them again. ``read_dumps`` reads the ``summary:`` line of each.

Why client requests and not ``callgrind_control -i on/off`` or ``--toggle-collect``:
``callgrind_control`` is asynchronous (it asks through a command file that callgrind
polls), so a region's edges would move with the machine's load; ``--toggle-collect``
needs a function entered exactly at a region's edges and nowhere else. A client request
is executed at the exact instruction where it is called, so the same code gives the
same count whatever else the machine is doing.

Each region includes the constant cost of the ctypes calls that mark it (a few thousand
instructions); ``MarksOverhead`` measures it with empty regions so it can be taken off.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MARKS_SOURCE = """\
#include <valgrind/callgrind.h>
void securepay_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void securepay_zero(void) { CALLGRIND_ZERO_STATS; }
void securepay_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""
EMPTY_LABEL = "marks|overhead"
_TRIGGER = "desc: Trigger: Client Request: "


class CallgrindUnavailable(RuntimeError):
    """valgrind, a C compiler or valgrind's headers are missing."""


class Probe(Protocol):
    """Told where each measured region starts and ends."""

    def begin(self, label: str) -> None: ...

    def split(self, label: str) -> None:
        """End the current region as ``label`` and start the next one at once."""
        ...

    def end(self, label: str) -> None: ...


class Marks:
    """The client requests, through the compiled marks library (see the module's doc)."""

    def __init__(self, library: Path) -> None:
        self._lib = ctypes.CDLL(str(library))
        self._lib.securepay_dump.argtypes = [ctypes.c_char_p]
        self._lib.securepay_dump.restype = None
        self._lib.securepay_zero.restype = None
        self._lib.securepay_start.restype = None

    def start(self) -> None:
        self._lib.securepay_start()

    def begin(self, label: str) -> None:
        self._lib.securepay_zero()

    def split(self, label: str) -> None:
        self._lib.securepay_dump(label.encode())

    def end(self, label: str) -> None:
        self._lib.securepay_dump(label.encode())

    def calibrate(self, times: int = 20) -> None:
        """Empty regions: what marking a region costs by itself."""
        for _ in range(times):
            self.begin(EMPTY_LABEL)
            self.end(EMPTY_LABEL)


def build_marks(workdir: Path) -> Path:
    """Compile ``MARKS_SOURCE`` into ``workdir``; the shared library's path."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if shutil.which("valgrind") is None:
        raise CallgrindUnavailable("valgrind is not installed (apt-get install valgrind)")
    if compiler is None:
        raise CallgrindUnavailable("no C compiler (cc) to build the callgrind marks (apt-get install gcc)")
    source = workdir / "callgrind_marks.c"
    library = workdir / "callgrind_marks.so"
    source.write_text(MARKS_SOURCE)
    built = subprocess.run(  # noqa: S603 - the system compiler on our own source
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise CallgrindUnavailable(
            f"could not build the callgrind marks (valgrind's headers, valgrind/callgrind.h?): "
            f"{built.stderr.strip()[:300]}"
        )
    return library


def valgrind_command(out_prefix: Path, argv: list[str]) -> list[str]:
    """``argv`` under callgrind, uninstrumented until the marks start it; one file per dump."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--dump-instr=no",
        "--dump-line=no",
        f"--callgrind-out-file={out_prefix}.%p",
        *argv,
    ]


@dataclass(frozen=True)
class Dump:
    number: int
    label: str
    instructions: int


_DUMP_NAME = re.compile(r"\.(\d+)\.(\d+)$")


def read_dumps(out_dir: Path, prefix: str, *, remove: bool = True) -> list[Dump]:
    """Every client-request dump under ``out_dir`` named ``prefix.<pid>.<n>``, in order."""
    dumps = []
    for path in out_dir.glob(f"{prefix}.*"):
        found = _DUMP_NAME.search(path.name)
        label = summary = None
        if found is not None:
            with path.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if line.startswith(_TRIGGER):
                        label = line[len(_TRIGGER) :].strip()
                    elif line.startswith("summary:"):
                        summary = int(line.split()[1])
                        break
            if label is not None and summary is not None:
                dumps.append(Dump(int(found.group(2)), label, summary))
        if remove:
            path.unlink()
    return sorted(dumps, key=lambda d: d.number)
