"""How long backends wait on locks, the audit chain's advisory lock first, sampled from
``pg_stat_activity``.

Nothing in the app is changed to measure it: a thread asks PostgreSQL every 20 ms
how many backends of the database are active, how many of them wait on an advisory
lock (``wait_event_type = 'Lock'``, ``wait_event = 'advisory'``: the audit sealer's
``pg_try_advisory_lock`` never waits, so since the sealer this should be none; before
it, every commit waited on ``pg_advisory_xact_lock``), and how many wait on any
heavyweight lock (a row, a transaction: what remains of a webhook's lock waits). The
sum over samples of a waiting count times the time between samples estimates the
total seconds spent waiting, without bias: a wait is caught in proportion to its length.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

import psycopg

from bench.loader import database_name, libpq_conninfo

_SAMPLE = """
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'),
       count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE wait_event_type = 'Lock')
FROM pg_stat_activity
WHERE datname = %s AND pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class LockWaits:
    samples: int
    seconds: float
    waiting_seconds: float  # backend-seconds spent waiting on the advisory lock
    active_seconds: float  # backend-seconds active (running a statement or waiting)
    max_waiting: int
    any_lock_seconds: float = 0.0  # backend-seconds waiting on any heavyweight lock


class LockSampler:
    """Samples while the ``with`` block runs; ``result`` after it."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        self._conninfo = libpq_conninfo(url)
        self._database = database_name(url)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-sampler", daemon=True)
        self._waiting = 0.0
        self._active = 0.0
        self._any_lock = 0.0
        self._samples = 0
        self._max = 0
        self._seconds = 0.0

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            started = last = time.perf_counter()
            while not self._stop.is_set():
                row = conn.execute(_SAMPLE, (self._database,)).fetchone()
                now = time.perf_counter()
                waiting, active, any_lock = row if row is not None else (0, 0, 0)
                self._waiting += waiting * (now - last)
                self._active += active * (now - last)
                self._any_lock += any_lock * (now - last)
                self._max = max(self._max, waiting)
                self._samples += 1
                last = now
                time.sleep(self._interval)
            self._seconds = time.perf_counter() - started

    @property
    def result(self) -> LockWaits:
        return LockWaits(
            self._samples, self._seconds, self._waiting, self._active, self._max, self._any_lock
        )
