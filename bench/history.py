"""A deployment's history, seeded by ``COPY``: audit events and payment attempts.

Some statements cost more as history grows (a count that scans, a head read that
sorts), so the benchmarks can run with a year of it in the database: by default
2,000,000 audit events and 200,000 payment attempts (``--history``).

- The audit events are a real chain (``db.audit_chain``: ``seq`` 1..N, each hashed over
  its content and linked to the one before), so ``securepay audit verify`` accepts the
  seeded database and the app appends after its head as it would in production.
- The payment attempts are a year of other calls' attempts on the loaded accounts, by
  their own phone numbers (so the per-caller and per-account decline counts have rows to
  skip): 85 % succeeded, 10 % declined, 5 % failed, all older than two days, so no
  24-hour cap of the calls the benchmark places is reached by them.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.loader import copy_rows, libpq_conninfo, member, reset_sequence
from db.audit_chain import GENESIS, event_hash
from db.engine import build_engine, session_factory
from db.ledger import SqlLedger

AUDIT_EVENTS = 2_000_000
PAYMENT_ATTEMPTS = 200_000
DECLINE_INDEX = "ix_payment_attempts_caller_declines"
_EVENTS = ("call_started", "language_chosen", "call_capture", "state_entered", "pin_verified", "call_ended")
_AUDIT_COLUMNS = (
    "id",
    "seq",
    "prev_hash",
    "hash",
    "occurred_at",
    "event",
    "call_sid",
    "account_id",
    "actor",
    "os_user",
    "host",
    "process",
    "success",
    "detail",
)
_ATTEMPT_COLUMNS = (
    "id",
    "call_sid",
    "attempt_no",
    "account_id",
    "amount_cents",
    "currency",
    "method_processor_id",
    "method_brand",
    "method_last4",
    "caller",
    "status",
    "processor_id",
    "decline_code",
    "created_at",
    "completed_at",
)


@dataclass(frozen=True)
class Seeded:
    audit_events: int
    payment_attempts: int
    seconds: float


# ``db.audit_chain.canonical`` of a seeded event, written out: sorted keys, no spaces.
# ``_audit_rows`` checks it against ``event_hash`` on the first events, so the seeded
# chain is the one ``audit verify`` recomputes.
_CANONICAL = (
    '{{"account_id":{account_id},"actor":null,"call_sid":"{call_sid}","detail":{{"state":"history"}},'
    '"event":"{event}","host":null,"occurred_at":"{occurred_at}","os_user":null,"prev_hash":"{prev_hash}",'
    '"process":"bench-history","seq":{seq},"success":true}}'
)
_CHECKED = 100


def _audit_rows(count: int, accounts: int, end: datetime, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    prev = GENESIS
    start = end - timedelta(days=365)
    step = (end - start) / max(1, count)
    detail = json.dumps({"state": "history"})
    for seq in range(1, count + 1):
        occurred = start + step * seq
        event, call_sid, account_id = (
            _EVENTS[seq % len(_EVENTS)],
            f"CA{seq // 6:032x}",
            rng.randint(1, accounts),
        )
        text = _CANONICAL.format(
            account_id=account_id,
            call_sid=call_sid,
            event=event,
            occurred_at=occurred.isoformat(timespec="microseconds"),
            prev_hash=prev,
            seq=seq,
        )
        digest = hashlib.sha256(text.encode()).hexdigest()
        if seq <= _CHECKED:
            content = {
                "seq": seq,
                "prev_hash": prev,
                "occurred_at": occurred,
                "event": event,
                "call_sid": call_sid,
                "account_id": account_id,
                "actor": None,
                "os_user": None,
                "host": None,
                "process": "bench-history",
                "success": True,
                "detail": {"state": "history"},
            }
            if event_hash(content) != digest:
                raise AssertionError("the seeded chain's hashing no longer matches db.audit_chain")
        yield (seq, seq, prev, digest, occurred, event, call_sid, account_id,
               None, None, None, "bench-history", True, detail)  # fmt: skip
        prev = digest


def _attempt_rows(count: int, accounts: int, end: datetime, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for n in range(1, count + 1):
        account = rng.randint(1, accounts)
        created = end - timedelta(seconds=rng.randint(0, 363 * 86_400))
        roll = rng.random()
        status = "succeeded" if roll < 0.85 else "declined" if roll < 0.95 else "failed"
        yield (
            f"pa_hist{n:033x}",
            f"CAh{n:031x}",
            1,
            account,
            2_000 + rng.randint(0, 400_000),
            "usd",
            f"pm_hist{n:016x}",
            "visa",
            "4242",
            member(account).phone,
            status,
            f"pi_hist{n:016x}" if status != "failed" else None,
            "card_declined" if status == "declined" else None,
            created,
            created + timedelta(seconds=2),
        )


def seed(
    url: str, accounts: int, *, audit_events: int = AUDIT_EVENTS, attempts: int = PAYMENT_ATTEMPTS
) -> Seeded:
    """COPY the history into the (loaded, not yet called) database at ``url``."""
    started = time.perf_counter()
    rng = random.Random(20261201)  # noqa: S311 - synthetic history, not a secret
    # Everything before the first call the benchmark places: two days ago and older.
    end = datetime.now(UTC) - timedelta(days=2)
    with psycopg.connect(libpq_conninfo(url)) as conn:
        if conn.execute("SELECT count(*) FROM audit_events").fetchone() != (0,):
            raise ValueError("seed the history into a database whose trail is empty")
        copy_rows(conn, "audit_events", _AUDIT_COLUMNS, _audit_rows(audit_events, accounts, end, rng))
        copy_rows(conn, "payment_attempts", _ATTEMPT_COLUMNS, _attempt_rows(attempts, accounts, end, rng))
        reset_sequence(conn, "audit_events")
        conn.commit()
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("ANALYZE audit_events")
        conn.execute("ANALYZE payment_attempts")
    return Seeded(audit_events, attempts, time.perf_counter() - started)


def set_decline_index(url: str, *, present: bool) -> None:
    """Create or drop migration 0007's index, to measure the decline count with and without."""
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        if present:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {DECLINE_INDEX} ON payment_attempts (caller, status, created_at)"
            )
        else:
            conn.execute(f"DROP INDEX IF EXISTS {DECLINE_INDEX}")
        conn.execute("ANALYZE payment_attempts")


def explain_decline_count(url: str, caller: str) -> dict[str, Any]:
    """``EXPLAIN ANALYZE`` of the per-caller decline count (one side of ``SqlLedger.declines``)."""
    since = datetime.now(UTC) - timedelta(hours=24)
    with psycopg.connect(libpq_conninfo(url)) as conn:
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM payment_attempts "
            "WHERE status = %s AND created_at >= %s AND caller = %s",
            ("declined", since, caller),
        ).fetchall()
    plan = [str(row[0]) for row in rows]
    execution = next((line for line in plan if line.startswith("Execution Time")), "")
    return {"plan": plan, "execution_ms": float(execution.split()[2]) if execution else None}


def time_decline_count(url: str, callers: Sequence[str]) -> float:
    """Median milliseconds of the app's own per-caller decline count (``SqlLedger``), one per
    caller, each in the session the way a step runs it."""
    engine = build_engine(url)
    try:
        with session_factory(engine)() as session:
            ledger = SqlLedger(session)
            since = datetime.now(UTC) - timedelta(hours=24)
            timings = []
            for caller in callers:
                started = time.perf_counter()
                ledger.declines(since, account_id=None, caller=caller)
                timings.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    return round(statistics.median(timings) * 1000, 3)
