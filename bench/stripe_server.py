"""localstripe in a process of its own, for the benchmark.

``LocalStripe`` serves from a thread of the process that starts it; in the benchmark that
thread would share a GIL with the load generator and skew its timings. This module runs
it alone: it prints ``PORT <n>`` on stdout once listening on 127.0.0.1 (or on the
address given as its one argument: ``make bench-scale`` gives the host's end of a veth
pair, for app servers in network namespaces), and stops when its standard input closes
or it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from payments.emulator import LOOPBACK, LocalStripe


def main() -> None:
    done = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes the pipe (or dies)
        done.set()

    host = sys.argv[1] if len(sys.argv) > 1 else LOOPBACK
    with LocalStripe(host=host) as emulator:
        print(f"PORT {emulator.port}", flush=True)
        threading.Thread(target=watch_stdin, daemon=True).start()
        done.wait()


if __name__ == "__main__":
    main()
