"""The measured process of ``make bench-count`` (``python -m bench.count_worker SPEC.json``).

It builds SecurePay with ``create_app()`` from its environment (set by ``bench.count``),
plays warm-up calls so every lazy import, compiled-statement cache and pool connection
exists, then the measured calls, then the same for the floor app
(``bench/floor_app.py``). Two modes, one per pass of ``bench.count``:

- ``callgrind``: run under valgrind by the parent; each request is a region marked with
  client requests (``bench.callgrind``), the Argon2 verify a region of its own.
- ``wire``: no valgrind; the app's database URL goes through ``bench.wire``'s
  round-trip counter and its engine gets the statement counter; each request's
  statements, commits, rollbacks, round trips, SQL time and wall time go to the
  ``output`` JSON file.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench import driver, floor_app, loader
from bench.callgrind import Marks
from bench.count_figures import SEALING
from bench.inprocess import RequestLabel, SplitHasher, run_plans
from bench.wire import RoundTripProxy, SqlCounter, SqlTally

FLOOR_BASE_URL = "http://127.0.0.1:8080"


class WireProbe:
    """Implements ``bench.callgrind.Probe``: a tally per region; splits are ignored."""

    def __init__(self, counter: SqlCounter, proxy: RoundTripProxy) -> None:
        self._counter = counter
        self._proxy = proxy
        self._at: tuple[SqlTally, int, float] | None = None
        self.regions: list[dict[str, Any]] = []

    def begin(self, label: str) -> None:
        self._at = (self._counter.snapshot(), self._proxy.turns, time.perf_counter())

    def split(self, label: str) -> None:
        return None

    def end(self, label: str) -> None:
        if self._at is None:
            return
        tally, turns, started = self._at
        now = self._counter.snapshot()
        self.regions.append(
            {
                "label": label,
                "statements": now.statements - tally.statements,
                "commits": now.commits - tally.commits,
                "rollbacks": now.rollbacks - tally.rollbacks,
                "round_trips": self._proxy.turns - turns,
                "sql_ms": (now.sql_seconds - tally.sql_seconds) * 1000,
                "wall_ms": (time.perf_counter() - started) * 1000,
            }
        )
        self._at = None


class NoProbe:
    """Warm-up: nothing is measured."""

    def begin(self, label: str) -> None:
        return None

    def split(self, label: str) -> None:
        return None

    def end(self, label: str) -> None:
        return None


def _plans(spec: dict[str, Any], key: str) -> list[driver.CallPlan]:
    return [driver.securepay_plan(loader.member(i), other_amount=other) for i, other in spec[key]]


def _floor_plans(count: int, first: int) -> list[driver.CallPlan]:
    # As many gathers answered as a SecurePay call: 7 (menu key 1) or 8 (the amount typed).
    return [driver.floor_plan(f"+1202{3000000 + first + n:07d}", 7 + n % 2) for n in range(count)]


def main(spec_path: str) -> int:
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    mode = spec["mode"]
    proxy: RoundTripProxy | None = None
    if mode == "wire":
        url = make_url(os.environ["SECUREPAY_DATABASE_URL"])
        proxy = RoundTripProxy(url.host or "127.0.0.1", url.port or 5432).__enter__()
        os.environ["SECUREPAY_DATABASE_URL"] = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )

    from db.audit_sealer import seal_pending
    from ivr import create_app
    from ivr.services import EXTENSION_KEY, Services

    app = create_app()
    floor = floor_app.create_app()
    services: Services = app.extensions[EXTENSION_KEY]
    label = RequestLabel()
    marks: Marks | None = None
    probe: Any
    if mode == "callgrind":
        marks = Marks(Path(spec["marks"]))
        probe = marks
    else:
        assert proxy is not None  # noqa: S101 - set above in wire mode
        probe = WireProbe(SqlCounter(services.engine), proxy)
    public_url = os.environ["SECUREPAY_PUBLIC_URL"]
    token = os.environ["TWILIO_AUTH_TOKEN"]
    problems: list[str] = []
    hasher = services.hasher
    services.hasher = SplitHasher(hasher, NoProbe(), label)

    # The trail's sealer (db.audit_sealer) runs on a thread of its own in a web worker,
    # off the request path. Here it is kept off the threads (its instructions would fall
    # into whichever request region is open, differently each run) and run between the
    # calls instead, in a region of its own: what sealing a call's events costs the
    # worker, counted apart from the requests and added to the call's total beside them.
    sealer = services.sealer
    if sealer is not None:
        sealer.committed = lambda: None  # type: ignore[method-assign]

    def seal(group: str, call: int) -> None:
        if sealer is None:
            return
        if group == "warmup":
            seal_pending(services.engine)
            return
        region = f"{SEALING}|{call}|0|sealing|sealer|"
        probe.begin(region)
        seal_pending(services.engine)
        probe.end(region)

    def play(target: Any, plans: list[driver.CallPlan], group: str, probe: Any, url: str) -> list[str]:
        # A full collection before each measured call, of what is not frozen: every call
        # starts with the same young generation, so the collections inside it fall at
        # the same places run after run. The call before it is sealed first (SecurePay).
        def before_call() -> None:
            if group != "floor" and label.call > 0:
                seal(group, label.call - 1)
            gc.collect()

        problems = run_plans(
            target,
            plans,
            group=group,
            public_url=url,
            auth_token=token,
            probe=probe,
            label=label,
            before_call=before_call,
        )
        if group != "floor" and plans:
            seal(group, len(plans) - 1)
        return problems

    floor_first = spec["floor_warmup"]
    problems += play(app, _plans(spec, "warmup"), "warmup", NoProbe(), public_url)
    problems += play(floor, _floor_plans(floor_first, 0), "warmup", NoProbe(), FLOOR_BASE_URL)
    # What warm-up built (modules, caches, pooled connections) lives as long as a worker:
    # frozen out of the collector, as gunicorn's preload users do, so a collection's cost
    # does not depend on how much of it happened to be tracked at that moment.
    gc.collect()
    gc.freeze()
    if marks is not None:
        marks.start()
        marks.calibrate()
    services.hasher = SplitHasher(hasher, probe, label)
    problems += play(app, _plans(spec, "measured"), "securepay", probe, public_url)
    problems += play(floor, _floor_plans(spec["floor_calls"], floor_first), "floor", probe, FLOOR_BASE_URL)
    result: dict[str, Any] = {"problems": problems}
    if isinstance(probe, WireProbe):
        result["regions"] = probe.regions
    Path(spec["output"]).write_text(json.dumps(result))
    if proxy is not None:
        proxy.__exit__(None, None, None)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
