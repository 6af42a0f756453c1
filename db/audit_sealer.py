"""The audit trail's sealer: numbers and hashes committed events after the head, in order.

Writers insert events unsealed (``seq``, ``prev_hash``, ``hash`` NULL) and commit; no
writer waits on another. Sealing is one code path, ``seal_batch``: read the head, take
the next unsealed events by ``id``, number them after the head, hash them (the same
canonical content as ever, ``db.audit_chain.event_hash``), update them.

On PostgreSQL one sealer at a time holds the session-level advisory lock
``db.audit_chain.LOCK_KEY``, taken with ``pg_try_advisory_lock``: a second sealer does
not wait, it leaves the work to the one holding it. ``seal_pending`` is the loop that
loses no wake-up: try the lock; seal batches (one short transaction each) until none is
left; unlock; if an event is unsealed now, try again. A writer whose try fails committed
before it tried, so the holder's check after its unlock sees that writer's events.

An event committed late with a lower id than events already sealed is simply the next
one sealed: the chain's order is ``seq``'s, the order events were sealed in.

On SQLite a transaction holds the database's write lock from ``BEGIN IMMEDIATE``, so a
writer seals its own events inside its transaction (``seal_batch`` on its connection).

``AuditSealer`` is what a process runs: a daemon thread woken after each commit that
wrote events, and on a timer; or, without a thread (commands), the same loop run on
the committing thread right after the commit. docs/decisions/0008-audit-sealer.md.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, cast

import structlog
from sqlalchemy import Connection, CursorResult, Engine, Table, bindparam, func, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.audit_chain import HASHED_FIELDS, LOCK_KEY, Head, event_hash, read_head, stored_event, stored_query
from db.models import AuditEvent

__all__ = [
    "SEALER_KEY",
    "AuditSealer",
    "SealConflict",
    "attach",
    "seal_batch",
    "seal_in_transaction",
    "seal_pending",
    "seal_quietly",
    "committed",
    "unsealed_count",
]

log = structlog.get_logger()

# Events per sealing transaction: short enough that a batch commits in milliseconds.
SEAL_BATCH = 500
# A running sealer thread also looks for unsealed events this often, waking or not
# (events another process committed and left, e.g. it was killed before its sealer ran).
TIMER_SECONDS = 5.0
# A sealer thread's shortest pause between passes (what it adds to the seal lag at most).
COALESCE_SECONDS = 0.1
# How long a commit without a sealer thread seals after itself at most (the rest is left
# to the next sealer: a thread's timer, ``securepay audit seal``).
COMMAND_SECONDS = 2.0
# Where a session factory carries its process's sealer (``Session.info``).
SEALER_KEY = "securepay.audit_sealer"

_TABLE = cast(Table, AuditEvent.__table__)
_ID = _TABLE.c.id
_UNSEALED = _TABLE.c.seq.is_(None)
_ANY_UNSEALED = select(_ID).where(_UNSEALED).limit(1)
_COUNT_UNSEALED = select(func.count()).select_from(_TABLE).where(_UNSEALED)
_SEAL = (
    update(_TABLE)
    .where(_ID == bindparam("row_id"), _UNSEALED)
    .values(seq=bindparam("new_seq"), prev_hash=bindparam("new_prev"), hash=bindparam("new_hash"))
)
# PostgreSQL: a batch's seals as one statement over arrays (one plan, one round trip),
# where an executemany of single-row UPDATEs cost the sealer twice its hashing.
_SEAL_ARRAYS = text(
    "UPDATE audit_events AS e SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash"
    " FROM unnest(CAST(:row_ids AS bigint[]), CAST(:new_seqs AS bigint[]),"
    " CAST(:new_prevs AS varchar[]), CAST(:new_hashes AS varchar[])) AS v(id, seq, prev_hash, hash)"
    " WHERE e.id = v.id AND e.seq IS NULL"
)
_TRY_LOCK = select(func.pg_try_advisory_lock(LOCK_KEY))
_UNLOCK = select(func.pg_advisory_unlock(LOCK_KEY))
_NEXT = {
    dialect: stored_query(dialect).where(_UNSEALED).order_by(_ID).limit(bindparam("batch"))
    for dialect in ("postgresql", "sqlite")
}


def seal_batch(
    connection: Connection, limit: int = SEAL_BATCH, head: Head | None = None
) -> tuple[int, Head]:
    """Seal up to ``limit`` unsealed events after ``head`` (read when not given), in id
    order; how many, and the new head.

    The caller holds the right to seal (the advisory lock, or SQLite's write lock) and
    commits; while it holds it, the head it got back is still the head. The content is
    read raw, as ``verify`` reads it, so both hash the same values; an event whose
    content cannot be read is sealed over its raw text (verify then names it as changed,
    which it was).
    """
    head = read_head(connection) if head is None else head
    rows = connection.execute(_NEXT[connection.dialect.name], {"batch": limit}).mappings().all()
    seals = []
    prev_seq, prev_hash = head.seq, head.hash
    for row in rows:
        event = stored_event(row)
        content: dict[str, Any] = dict(event.content or {name: event.raw[name] for name in HASHED_FIELDS})
        prev_seq += 1
        content.update(seq=prev_seq, prev_hash=prev_hash)
        digest = event_hash(content)
        seals.append({"row_id": event.id, "new_seq": prev_seq, "new_prev": prev_hash, "new_hash": digest})
        prev_hash = digest
    if not seals:
        return 0, head
    if connection.dialect.name == "postgresql":
        result = connection.execute(_SEAL_ARRAYS, {
            "row_ids": [seal["row_id"] for seal in seals],
            "new_seqs": [seal["new_seq"] for seal in seals],
            "new_prevs": [seal["new_prev"] for seal in seals],
            "new_hashes": [seal["new_hash"] for seal in seals],
        })
        if cast(CursorResult[Any], result).rowcount != len(seals):
            # Another sealer sealed some of these meanwhile: it did not hold the lock.
            # Rolled back by the caller; the unique seq would refuse a fork anyway.
            raise SealConflict(f"{len(seals)} events numbered, fewer still unsealed")
    else:
        connection.execute(_SEAL, seals)
    return len(seals), Head(prev_seq, prev_hash)


def seal_in_transaction(connection: Connection) -> int:
    """Seal every unsealed event inside the caller's transaction (SQLite's writers, who
    hold the database's write lock from ``BEGIN IMMEDIATE``); how many."""
    sealed, head = seal_batch(connection)
    done = sealed
    while done == SEAL_BATCH:
        done, head = seal_batch(connection, head=head)
        sealed += done
    return sealed


class SealConflict(RuntimeError):
    """Events being sealed were sealed by someone else (a sealer without the lock)."""


def _seal_until_none(connection: Connection, limit: int, deadline: float | None) -> int:
    """Batches, one transaction each, until one finds nothing: while events keep coming
    the sealer keeps the lock and the head it holds (no head read per batch)."""
    sealed = 0
    head = None
    while True:
        with connection.begin():
            done, head = seal_batch(connection, limit, head)
        sealed += done
        if done == 0 or (deadline is not None and time.monotonic() >= deadline):
            return sealed


def seal_pending(engine: Engine, limit: int = SEAL_BATCH, seconds: float | None = None) -> int:
    """Seal what is committed and unsealed, unless another sealer holds the lock; how many.

    Try the lock; seal until none is left; unlock; if an event is unsealed now (committed
    by a writer whose own try failed while this one held the lock), try again. With
    ``seconds``, stop starting batches after that long (what is left is the next
    sealer's; a running sealer thread or ``securepay audit seal`` takes it).
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    if engine.dialect.name != "postgresql":
        with engine.connect() as connection:  # BEGIN IMMEDIATE: SQLite's one writer
            return _seal_until_none(connection, limit, deadline)
    sealed = 0
    with engine.connect() as connection:
        while True:
            turn = _locked_turn(connection, limit, deadline)
            if turn is None:
                return sealed  # the holder seals ours: it looks again after unlocking
            done, more = turn
            sealed += done
            if not more or (deadline is not None and time.monotonic() >= deadline):
                return sealed


def _locked_turn(connection: Connection, limit: int, deadline: float | None) -> tuple[int, bool] | None:
    """One turn with the lock, in as few round trips as it allows: the lock taken in the
    first batch's transaction; more batches only while they come back full (the sealer
    keeps the lock and the head it holds); then the lock released and the table looked
    at once more in one transaction. None when another sealer holds the lock; else how
    many were sealed and whether an event is unsealed after the release."""
    locked = more = False
    sealed = 0
    try:
        with connection.begin():
            locked = bool(connection.scalar(_TRY_LOCK))
            if not locked:
                return None
            done, head = seal_batch(connection, limit)
        sealed = done
        while done == limit and (deadline is None or time.monotonic() < deadline):
            with connection.begin():
                done, head = seal_batch(connection, limit, head)
            sealed += done
    finally:
        # A session-level lock outlives a rolled-back transaction: always released.
        if locked:
            more = _release(connection)
    return sealed, more


def _release(connection: Connection) -> bool:
    """Release the session-level lock, then look for an unsealed event (one transaction;
    the look sees every commit before the release). A connection that cannot release is
    discarded (its server session ends, and the lock with it), never returned to the
    pool holding it."""
    try:
        with connection.begin():
            connection.execute(_UNLOCK)
            return connection.scalar(_ANY_UNSEALED) is not None
    except SQLAlchemyError:
        connection.invalidate()
        raise


def unsealed_count(session: Session | Connection) -> int:
    return int(session.scalar(_COUNT_UNSEALED) or 0)


class AuditSealer:
    """A process's sealer: ``committed()`` after each commit that wrote events.

    With ``background`` (the web app), a daemon thread, started in the process that
    first commits (so never in a gunicorn master before it forks), runs ``seal_pending``
    when woken and every ``interval`` seconds; a webhook only sets an event. Without it
    (commands), ``committed()`` runs the loop itself, bounded to ``seconds``.
    Sealing errors are logged, never raised into the commit that already happened:
    what stays unsealed is sealed by the next pass, and named by ``audit verify``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        background: bool,
        interval: float = TIMER_SECONDS,
        limit: int = SEAL_BATCH,
        seconds: float = COMMAND_SECONDS,
    ) -> None:
        self.engine = engine
        self.background = background
        self._interval = interval
        self._limit = limit
        self._seconds = seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        # engine.dispose() (a worker's exit, an app's teardown) stops the thread after its
        # pass: no connection of a disposed pool is left open by it.
        sa_event.listen(engine, "engine_disposed", self._disposed)

    def committed(self) -> None:
        """Events were just committed: have them sealed (now, or by the thread)."""
        if not self.background:
            self._pass(self._seconds)
            return
        self._start()
        self._wake.set()

    def wait_sealed(self, timeout: float = 10.0) -> None:
        """Until no committed event is unsealed (tests, and anything that reads the chain
        right after writing it); seals itself whenever the lock is free."""
        deadline = time.monotonic() + timeout
        while True:
            seal_pending(self.engine, self._limit)
            with self.engine.connect() as connection:
                if unsealed_count(connection) == 0:
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"audit events still unsealed after {timeout} s")
            time.sleep(0.01)

    def close(self) -> None:
        """Stop the thread (after the pass it is in, if any)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    def _disposed(self, _engine: Engine) -> None:
        self.close()

    def _pass(self, seconds: float | None) -> None:
        seal_quietly(self.engine, self._limit, seconds)

    def _start(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._guard:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._stop.clear()
            thread = threading.Thread(
                target=_run, args=(weakref.ref(self), self._wake, self._stop, self._interval),
                name="audit-sealer", daemon=True,
            )
            thread.start()
            self._thread, self._pid = thread, os.getpid()


def _run(
    ref: weakref.ReferenceType[AuditSealer], wake: threading.Event, stop: threading.Event, interval: float
) -> None:
    """The thread: wait for a wake-up or the timer, clear it, seal. It holds only a weak
    reference, so a sealer dropped without ``close()`` (an app gone) ends its thread."""
    while not stop.is_set():
        wake.wait(interval)
        wake.clear()
        sealer = ref()
        if sealer is None or stop.is_set():
            return
        sealer._pass(None)
        del sealer
        # The commits of the next moment, one pass: a busy worker tries the lock about
        # COALESCE_SECONDS apart, not once per commit (a wake-up meanwhile stays set).
        stop.wait(COALESCE_SECONDS)


def seal_quietly(engine: Engine, limit: int = SEAL_BATCH, seconds: float | None = None) -> None:
    """``seal_pending``, its failure logged, not raised: what a commit that already
    happened runs after itself (what is left unsealed, a later pass seals)."""
    pool = engine.pool
    try:
        seal_pending(engine, limit, seconds)
    except (SQLAlchemyError, SealConflict) as exc:
        log.warning("audit_seal_failed", error=type(exc).__name__)
    finally:
        if engine.pool is not pool:  # disposed during the pass: close what it returned
            pool.dispose()


def attach(sessions: sessionmaker[Session], sealer: AuditSealer) -> None:
    """Sessions from ``sessions`` hand their committed events to ``sealer``."""
    sessions.configure(info={SEALER_KEY: sealer})


def committed(session: Session) -> None:
    """``session`` just committed events: its factory's sealer is told; without one (a
    session factory of its own: a script, a test), they are sealed here and now."""
    found = session.info.get(SEALER_KEY)
    if isinstance(found, AuditSealer):
        found.committed()
        return
    bind = session.get_bind()
    seal_quietly(bind if isinstance(bind, Engine) else bind.engine, seconds=COMMAND_SECONDS)
