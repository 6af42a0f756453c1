"""Call Capture lookup time (``SqlAccounts.by_phone``) and PIN hash time, measured directly."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.loader import member
from db.engine import build_engine, session_factory
from db.repositories import SqlAccounts
from ivr.pinhash import Argon2PinHasher

CAPTURE_LIMIT = 9  # the flow asks for max_captured_accounts + 1


@dataclass(frozen=True)
class Timing:
    count: int
    mean_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        ms = sorted(s * 1000 for s in seconds)
        return cls(len(ms), statistics.fmean(ms), percentile(ms, 50), percentile(ms, 99), ms[-1])


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class LookupReport:
    accounts: int
    timing: Timing
    plan: str  # the top of EXPLAIN ANALYZE for one lookup's phone match


def time_lookups(
    url: str, accounts: int, *, lookups: int = 2000, warmup: int = 200, seed: int = 7
) -> LookupReport:
    """Time ``by_phone`` for random members' numbers, each in its own short transaction
    (as a webhook does), after ``warmup`` untimed ones."""
    rng = random.Random(seed)  # noqa: S311 - picking test numbers
    engine = build_engine(url)
    sessions = session_factory(engine)
    seconds: list[float] = []
    try:
        for n in range(warmup + lookups):
            phone = member(rng.randint(1, accounts)).phone
            with sessions() as session:
                session.execute(text("SELECT 1"))  # the transaction is open, as in a webhook
                started = time.perf_counter()
                found = SqlAccounts(session).by_phone(phone, CAPTURE_LIMIT)
                elapsed = time.perf_counter() - started
                if len(found) != 1:
                    raise RuntimeError(f"{phone}: {len(found)} accounts found, expected 1")
            if n >= warmup:
                seconds.append(elapsed)
        with sessions() as session:
            plan = _plan(session, member(accounts // 2 or 1).phone)
    finally:
        engine.dispose()
    return LookupReport(accounts, Timing.of(seconds), plan)


def _plan(session: Session, phone: str) -> str:
    rows = session.execute(
        text(
            "EXPLAIN ANALYZE SELECT accounts.* FROM accounts JOIN phones ON phones.account_id = accounts.id "
            "WHERE phones.e164 = :phone ORDER BY length(accounts.account_number), accounts.account_number "
            "LIMIT 9"
        ),
        {"phone": phone},
    )
    return " | ".join(line.strip() for (line,) in rows)


@dataclass(frozen=True)
class PinHashReport:
    hash: Timing
    verify: Timing
    verify_cpu: Timing  # CPU time (this process, all threads: the verify runs on the Argon2 thread)


def time_pin_hash(pepper: bytes, rounds: int = 20) -> PinHashReport:
    """Wall and CPU time of ``Argon2PinHasher.hash`` and ``.verify`` as the app calls them.

    The CPU time is ``time.process_time`` around each verify: the process's user+system
    time over all its threads, since the hasher runs Argon2 on a thread of its own.
    Nothing else runs in this process meanwhile, so it is the verify's own CPU, which a
    busy machine moves far less than its wall time.
    """
    hasher = Argon2PinHasher(pepper)
    hashes: list[float] = []
    verifies: list[float] = []
    verify_cpu: list[float] = []
    stored = hasher.hash("0473")
    for _ in range(rounds):
        started = time.perf_counter()
        stored = hasher.hash("0473")
        hashes.append(time.perf_counter() - started)
        started, cpu_started = time.perf_counter(), time.process_time()
        if not hasher.verify(stored, "0473"):
            raise RuntimeError("a PIN hash did not verify")
        verify_cpu.append(time.process_time() - cpu_started)
        verifies.append(time.perf_counter() - started)
    return PinHashReport(Timing.of(hashes), Timing.of(verifies), Timing.of(verify_cpu))
