"""The load generator: C concurrent simulated calls over HTTP, timed request by request.

Each call is one ``ivr.softphone.walk`` (the walker the tests and ``securepay call`` use:
signed like Twilio, TwiML played verb by verb) through an ``HttpTransport`` wrapped in a
stopwatch. Latency is taken client-side around each HTTP request, so it includes the
connection, gunicorn's queue and the loopback, as Twilio would see it.

The caller "thinks" between prompts (``think`` seconds, jittered +-50 %, before each
answer to a ``<Gather>``): real callers listen to prompts for seconds, so 50 concurrent
calls are 50 calls in progress, not 50 requests always in flight. ``think=0`` turns the
run into a closed-loop saturation test.

Every request of a call is known in advance (the script is fixed), so each is classified
by its position in the script: the kind of webhook (greeting, identify, PIN, ...) and the
flow state it answers. Each reply is checked for the prompt that must come next; a
wrong prompt, a non-200, a non-TwiML reply or a walk error is an error.

Calls run in ``procs`` processes of ``concurrency / procs`` threads each, so the
generator's own Python does not serialize the callers on one GIL.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from bench.floor_app import LAST_KEY
from bench.loader import Member
from bench.spread import RoundRobinTransport
from ivr.softphone import HANG_UP, GatherPrompt, HttpReply, HttpTransport, KeyPress, ScriptedKeys, walk

GREETING = "greeting"
IDENTIFY = "identify"
PIN = "PIN"
MENU = "menu"
AMOUNT = "amount"
METHOD = "method"
CONFIRM = "confirm-and-charge"
GOODBYE = "goodbye"
STATUS = "status"
FLOOR = "floor"
KINDS = (GREETING, IDENTIFY, PIN, MENU, AMOUNT, METHOD, CONFIRM, GOODBYE, STATUS)


@dataclass(frozen=True)
class Expect:
    """One request of a scripted call: its kind, the state it answers, what the reply must say."""

    kind: str
    state: str
    marker: str


@dataclass(frozen=True)
class CallPlan:
    from_number: str
    keys: tuple[str, ...]
    expects: tuple[Expect, ...]
    account_index: int = 0
    amount_cents: int = 0


def securepay_plan(m: Member, *, other_amount: bool) -> CallPlan:
    """Call Capture, PIN, balance, the full balance with the stored card, goodbye.

    The fast lane (contract 2.4): `1` at the menu's offer charges at once. With
    ``other_amount``, the full balance is typed at "another amount" (menu key 2), then
    the stored Visa and the confirm step, so the amount, method and confirm steps are
    measured too.
    """
    start = (
        Expect(GREETING, "voice", "Para español, oprima 2."),
        Expect(IDENTIFY, "language", "Enter your 4-digit PIN."),
    )
    if other_amount:
        amount = f"{m.balance_cents // 100}*{m.balance_cents % 100:02d}#"
        middle: tuple[Expect, ...] = (
            Expect(PIN, "pin_entry", "Or press 2 for another amount or method"),
            Expect(MENU, "account_menu", "Enter the amount"),
            Expect(AMOUNT, "enter_amount", "To pay with the Visa ending in 4 2 4 2, press 1."),
            Expect(METHOD, "choose_method", "You are about to pay"),
            Expect(CONFIRM, "confirm", "Your confirmation number is"),
        )
        keys: tuple[str, ...] = ("1", m.pin, "2", amount, "1", "1", "")
    else:
        middle = (
            Expect(PIN, "pin_entry", "with Visa ending 4 2 4 2."),
            Expect(CONFIRM, "account_menu", "Your confirmation number is"),
        )
        keys = ("1", m.pin, "1", "")
    end = (
        Expect(GOODBYE, "payment_done", "Thank you for calling. Goodbye."),
        Expect(STATUS, "status", "<Response"),
    )
    return CallPlan(m.phone, keys, start + middle + end, m.index, m.balance_cents)


def floor_plan(from_number: str, answers: int) -> CallPlan:
    """A floor call with as many requests as a SecurePay call answering ``answers`` gathers."""
    keys = ("1",) * (answers - 1) + (LAST_KEY,)
    expects = (
        (Expect(FLOOR, "voice", "<Gather"),)
        + (Expect(FLOOR, "step", "<Gather"),) * (answers - 1)
        + (Expect(FLOOR, "step", "<Hangup"), Expect(STATUS, "status", "<Response"))
    )
    return CallPlan(from_number, keys, expects)


@dataclass(frozen=True)
class Timed:
    kind: str
    state: str
    seconds: float
    status: int


@dataclass
class CallResult:
    account_index: int
    amount_cents: int
    started: float  # time.time()
    ended: float
    requests: list[Timed] = field(default_factory=list)
    error: str | None = None
    cut_by_deadline: bool = False


class _Stopwatch:
    """An ``HttpTransport`` that times each request and keeps its reply."""

    def __init__(self, inner: HttpTransport | RoundRobinTransport) -> None:
        self._inner = inner
        self.replies: list[tuple[float, HttpReply]] = []

    def post(self, path_and_query: str, params: dict[str, str], headers: dict[str, str]) -> HttpReply:
        started = time.perf_counter()
        reply = self._inner.post(path_and_query, params, headers)
        self.replies.append((time.perf_counter() - started, reply))
        return reply

    def get(self, path_and_query: str, headers: dict[str, str]) -> HttpReply:
        started = time.perf_counter()
        reply = self._inner.get(path_and_query, headers)
        self.replies.append((time.perf_counter() - started, reply))
        return reply


class _ThinkingKeys:
    """Scripted keys, each answered after the caller has listened for a while."""

    def __init__(self, keys: Sequence[str], think: float, rng: random.Random, deadline: float) -> None:
        self._keys = ScriptedKeys(keys)
        self._think = think
        self._rng = rng
        self._deadline = deadline
        self.cut = False

    def keys_for(self, gather: GatherPrompt) -> KeyPress:
        if self._think > 0:
            time.sleep(self._think * self._rng.uniform(0.5, 1.5))
        if time.time() > self._deadline:
            self.cut = True
            return HANG_UP
        return self._keys.keys_for(gather)


@dataclass(frozen=True)
class Target:
    base_url: str
    auth_token: str
    # Where the requests go when not to ``base_url`` (then only the URL signed for, the
    # load balancer's): each request of a call to the next of these (``bench.spread``).
    servers: tuple[str, ...] = ()


def _one_call(
    target: Target, plan: CallPlan, think: float, rng: random.Random, deadline: float
) -> CallResult:
    inner = (
        RoundRobinTransport(target.servers, plan.account_index)
        if target.servers
        else HttpTransport(target.base_url)
    )
    stopwatch = _Stopwatch(inner)
    keys = _ThinkingKeys(plan.keys, think, rng, deadline)
    started = time.time()
    try:
        transcript = walk(
            stopwatch,
            auth_token=target.auth_token,
            public_url=target.base_url,
            from_number=plan.from_number,
            keys=keys,
            max_requests=len(plan.expects) + 2,
        )
        walk_errors = [e.message for e in transcript.errors]
    except Exception as exc:  # noqa: BLE001 - recorded as the call's error, never hidden
        walk_errors = [f"{type(exc).__name__}: {exc}"]
    result = CallResult(plan.account_index, plan.amount_cents, started, time.time(), cut_by_deadline=keys.cut)
    for (seconds, reply), expect in zip(stopwatch.replies, plan.expects, strict=False):
        result.requests.append(Timed(expect.kind, expect.state, seconds, reply.status))
    problems = list(walk_errors)
    if not keys.cut:
        for position, ((_, reply), expect) in enumerate(zip(stopwatch.replies, plan.expects, strict=False)):
            if reply.status != 200:
                problems.append(f"request {position} ({expect.state}): HTTP {reply.status}")
            elif expect.marker not in reply.body:
                problems.append(
                    f"request {position} ({expect.state}): expected {expect.marker!r}, got "
                    f"{reply.body[:300]!r}"
                )
        if len(stopwatch.replies) != len(plan.expects):
            problems.append(f"{len(stopwatch.replies)} requests, expected {len(plan.expects)}")
    if problems:
        result.error = "; ".join(problems[:3])
    return result


def _process_calls(
    target: Target, plans: Sequence[CallPlan], threads: int, think: float, deadline: float, seed: int
) -> list[CallResult]:
    """One generator process: ``threads`` callers taking plans from a shared queue."""
    todo: queue.SimpleQueue[CallPlan] = queue.SimpleQueue()
    for plan in plans:
        todo.put(plan)
    results: list[CallResult] = []
    lock = threading.Lock()

    def caller(number: int) -> None:
        rng = random.Random(seed * 1000 + number)  # noqa: S311 - jitter, not a secret
        time.sleep(rng.uniform(0, max(think, 0.05)))  # ramp up: callers do not all dial at once
        while time.time() < deadline:
            try:
                plan = todo.get_nowait()
            except queue.Empty:
                return
            result = _one_call(target, plan, think, rng, deadline)
            with lock:
                results.append(result)

    workers = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def run_calls(
    target: Target,
    plans: Sequence[CallPlan],
    *,
    concurrency: int,
    think: float,
    deadline: float,
    procs: int = 2,
) -> tuple[list[CallResult], float]:
    """Run ``plans`` with ``concurrency`` callers in ``procs`` processes; the results and
    the wall-clock seconds from the first dial to the last hang-up."""
    procs = max(1, min(procs, concurrency))
    shares = [list(plans[p::procs]) for p in range(procs)]
    threads = [concurrency // procs + (1 if p < concurrency % procs else 0) for p in range(procs)]
    started = time.time()
    with ProcessPoolExecutor(procs, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(_process_calls, target, shares[p], threads[p], think, deadline, p + 1)
            for p in range(procs)
        ]
        results = [result for future in futures for result in future.result()]
    if results:
        wall = max(r.ended for r in results) - min(r.started for r in results)
    else:
        wall = time.time() - started
    return results, wall
