"""SECURITY 18 at line scale: events are written unsealed, without a lock, and sealed in order.

docs/decisions/0008-audit-sealer.md. A writer inserts its events with ``seq``,
``prev_hash`` and ``hash`` NULL; one sealer at a time numbers and hashes them after the
head, by id. These tests drive the real writers (``SqlUnitOfWork``) and the real sealer
(``db.audit_sealer``), on PostgreSQL where transactions really run side by side.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, insert, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from db import migrate
from db.audit_chain import GENESIS, LOCK_KEY, content_of, event_hash, verify
from db.audit_sealer import AuditSealer, attach, seal_pending, unsealed_count
from db.engine import session_factory
from db.models import AuditEvent
from db.unit_of_work import SqlUnitOfWork

NOW = datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=UTC)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def postgres_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time and seals inside its transaction")


def rows(sessions: sessionmaker[Session]) -> list[AuditEvent]:
    with sessions() as session:
        found = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        session.expunge_all()
        return found


def write(sessions: sessionmaker[Session], *events: str, at: datetime = NOW) -> None:
    with SqlUnitOfWork(sessions, process="test", clock=lambda: at) as uow:
        for name in events:
            uow.events.record(name, call_sid="CA" + "0" * 32, actor="+12025550143")
        uow.commit()


def insert_unsealed(engine: Engine, count: int, at: datetime = NOW) -> None:
    """Events as a writer leaves them before its sealer ran (e.g. it was killed)."""
    with engine.begin() as conn:
        conn.execute(insert(AuditEvent), [
            {"occurred_at": at, "event": "call_started", "process": "gone", "success": True,
             "detail": {"n": n}}
            for n in range(count)
        ])


def wait_until(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False


# --- writing, then sealing -------------------------------------------------------------


def test_events_are_written_unsealed_then_sealed_in_id_order(
    backend: str, sessions: sessionmaker[Session]
) -> None:
    with SqlUnitOfWork(sessions, process="test", clock=lambda: NOW) as uow:
        for name in ("call_started", "language_chosen", "call_ended"):
            uow.events.record(name, call_sid="CA1")
        uow.events.write_pending()
        inside = uow.session.execute(
            select(AuditEvent.seq, AuditEvent.prev_hash, AuditEvent.hash).order_by(AuditEvent.id)
        ).all()
        uow.commit()

    if backend == "postgresql":  # no lock, no head read: the chain fields are the sealer's
        assert inside == [(None, None, None)] * 3
    else:  # SQLite seals inside the writing transaction (one writer at a time)
        assert [seq for seq, _prev, _hash in inside] == [1, 2, 3]
    events = rows(sessions)
    assert [(e.seq, e.event) for e in events] == [
        (1, "call_started"), (2, "language_chosen"), (3, "call_ended"),
    ]
    assert [e.prev_hash for e in events] == [GENESIS, events[0].hash, events[1].hash]
    assert all(e.hash == event_hash(content_of(e)) for e in events)  # the hashing of before
    with sessions() as session:
        report = verify(session, now=NOW)
    assert (report.sound, report.count, report.unsealed) == (True, 3, 0)


def test_events_sealed_after_a_chain_of_before_continue_it(
    backend: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """A chain written by the code before the sealer (seq, hashes set at insert) goes on."""
    first = {"seq": 1, "prev_hash": GENESIS, "occurred_at": NOW, "event": "call_started", "call_sid": "CA1",
             "account_id": None, "actor": None, "os_user": None, "host": None, "process": "old",
             "success": True, "detail": {}}
    with engine.begin() as conn:
        conn.execute(insert(AuditEvent).values(**first, hash=event_hash(first)))
    write(sessions, "call_ended")

    events = rows(sessions)
    assert [(e.seq, e.prev_hash) for e in events] == [(1, GENESIS), (2, event_hash(first))]
    with sessions() as session:
        assert verify(session, now=NOW).sound


@pytest.mark.postgres
def test_a_writer_never_waits_on_the_chain_lock(
    backend: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    postgres_only(backend)
    done = threading.Event()
    with engine.connect() as holder:
        holder.execute(select(func.pg_advisory_lock(LOCK_KEY)))  # a sealer at work, for ever
        holder.commit()

        def commit() -> None:
            write(sessions, "call_started", "call_ended")
            done.set()

        writer = threading.Thread(target=commit)
        writer.start()
        writer.join(10)
        assert done.is_set(), "the writer waited on the sealer's lock"
        assert [e.seq for e in rows(sessions)] == [None, None]  # the holder's to seal
        assert seal_pending(engine) == 0  # a second sealer does not wait either
        holder.execute(select(func.pg_advisory_unlock(LOCK_KEY)))
        holder.commit()

    assert seal_pending(engine) == 2
    assert [e.seq for e in rows(sessions)] == [1, 2]


@pytest.mark.postgres
def test_an_event_committed_late_with_a_lower_id_is_sealed_after(
    backend: str, sessions: sessionmaker[Session]
) -> None:
    postgres_only(backend)
    slow = SqlUnitOfWork(sessions, process="slow", clock=lambda: NOW)
    try:
        slow.events.record("payment_attempt_opened", call_sid="CA-slow")
        slow.events.write_pending()  # inserted (the lower id), not committed yet
        write(sessions, "call_started")  # a later id, committed and sealed first
        assert [(e.event, e.seq) for e in rows(sessions)] == [("call_started", 1)]
        slow.commit()
    finally:
        slow.close()

    events = rows(sessions)  # by id
    assert [(e.event, e.seq) for e in events] == [("payment_attempt_opened", 2), ("call_started", 1)]
    assert events[0].prev_hash == events[1].hash  # seq order is the chain's, not id order
    with sessions() as session:
        assert verify(session, now=NOW).sound


@pytest.mark.postgres
def test_sealers_running_at_once_never_fork_the_chain(
    backend: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    postgres_only(backend)
    writers, units, sealers = 6, 30, 4
    start = threading.Barrier(writers + sealers)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            start.wait()
            for unit in range(units):
                with SqlUnitOfWork(sessions, process=f"w{number}") as uow:
                    uow.events.record("step", call_sid=f"CA{number}-{unit}", n=0)
                    uow.events.record("step", call_sid=f"CA{number}-{unit}", n=1)
                    uow.commit()  # each seals after its commit, or leaves it to the holder
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def sealer() -> None:
        try:
            start.wait()
            while not stop.is_set():
                seal_pending(engine, limit=7)  # small batches: many turns of the lock
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    threads += [threading.Thread(target=sealer) for _ in range(sealers)]
    for thread in threads:
        thread.start()
    for thread in threads[:writers]:
        thread.join()
    stop.set()
    for thread in threads[writers:]:
        thread.join()
    AuditSealer(engine, background=False).wait_sealed()

    assert errors == []
    total = writers * units * 2
    with sessions() as session:
        seqs = session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        report = verify(session, now=NOW)
    assert seqs == list(range(1, total + 1))  # no gap, no seq twice
    assert (report.sound, report.count) == (True, total), report.problem
    events = sorted(rows(sessions), key=lambda e: e.seq or 0)
    for call in {e.call_sid for e in events}:  # a commit's events keep their order
        assert [e.detail["n"] for e in events if e.call_sid == call] == [0, 1]


# --- where the sealer runs -----------------------------------------------------------


@pytest.mark.postgres
def test_a_quiet_system_ends_sealed_by_the_thread_woken_after_commit(
    backend: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    postgres_only(backend)
    sealer = AuditSealer(engine, background=True, interval=60)  # the timer plays no part here
    attach(sessions, sealer)
    try:
        write(sessions, "call_started", "call_ended")
        assert wait_until(lambda: unsealed_count_of(engine) == 0), "the committed events stayed unsealed"
    finally:
        sealer.close()
    assert [e.seq for e in rows(sessions)] == [1, 2]


@pytest.mark.postgres
def test_the_thread_s_timer_seals_what_another_process_left(backend: str, engine: Engine) -> None:
    postgres_only(backend)
    sealer = AuditSealer(engine, background=True, interval=0.2)
    try:
        sealer.committed()  # the thread runs (a first commit of this process)
        assert wait_until(lambda: sealer._thread is not None and sealer._thread.is_alive())
        insert_unsealed(engine, 3)  # committed by a worker killed before it sealed: no wake-up
        assert wait_until(lambda: unsealed_count_of(engine) == 0), "the timer did not seal them"
    finally:
        sealer.close()


def test_the_web_app_seals_its_calls_without_being_asked(app: object, backend: str) -> None:
    from flask import Flask

    from ivr.services import EXTENSION_KEY
    from ivr.softphone import FlaskTransport, Softphone
    from tests.conftest import TEST_ENV

    assert isinstance(app, Flask)
    services = app.extensions[EXTENSION_KEY]
    assert services.sealer is not None and services.sealer.background
    phone = Softphone(FlaskTransport(app), auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
                      public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"])
    assert phone.call("+12025550143", ["1"]).ok
    assert wait_until(lambda: unsealed_count_of(services.engine) == 0)
    with services.sessions() as session:
        report = verify(session, now=services.clock.now())
    assert report.sound and report.count > 0


def unsealed_count_of(engine: Engine) -> int:
    with engine.connect() as conn:
        return unsealed_count(conn)


# --- verify names what was never sealed -------------------------------------------------


def test_verify_names_events_left_unsealed_past_the_grace(backend: str, engine: Engine,
                                                          sessions: sessionmaker[Session]) -> None:
    write(sessions, "call_started")
    insert_unsealed(engine, 2, at=NOW - timedelta(minutes=5))  # no sealer has run since

    with sessions() as session:
        late = verify(session, now=NOW)
        lenient = verify(session, now=NOW, grace=timedelta(minutes=10))
    assert (late.intact, late.sound, late.unsealed, late.overdue_count) == (True, False, 2, 2)
    assert [e.id for e in late.overdue] == [2, 3]
    assert str(late.overdue[0]) == (
        "unsealed: row id 2 (occurred 2026-12-01T08:55:00.250000+00:00) not sealed after 300 s"
    )
    assert (lenient.sound, lenient.unsealed, lenient.overdue) == (True, 2, ())

    assert seal_pending(engine) == 2
    with sessions() as session:
        sealed = verify(session, now=NOW)
    assert (sealed.sound, sealed.count, sealed.unsealed) == (True, 3, 0)


# --- the migration -------------------------------------------------------------------


def test_the_migration_keeps_a_chain_and_its_downgrade_needs_it_sealed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0007_decline_count_index")
    engine = create_engine(url, poolclass=NullPool)
    try:
        content = {"seq": 1, "prev_hash": GENESIS, "occurred_at": NOW, "event": "call_started",
                   "call_sid": "CA1", "account_id": None, "actor": None, "os_user": None, "host": None,
                   "process": "old", "success": True, "detail": {}}
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO audit_events (seq, prev_hash, hash, occurred_at, event, call_sid, process,"
                " success, detail) VALUES (1, :prev, :hash, '2026-12-01 09:00:00.250000', 'call_started',"
                " 'CA1', 'old', 1, '{}')"
            ), {"prev": GENESIS, "hash": event_hash(content)})
        migrate.upgrade(url)
        chain_columns = ("seq", "prev_hash", "hash")
        assert all(c["nullable"] for c in inspect(engine).get_columns("audit_events")
                   if c["name"] in chain_columns)
        insert_unsealed(engine, 1)

        with pytest.raises(RuntimeError, match="1 audit event"):
            migrate.downgrade(url, "0007_decline_count_index")
        assert seal_pending(engine) == 1
        migrate.downgrade(url, "0007_decline_count_index")

        assert migrate.current(url) == "0007_decline_count_index"
        assert not any(c["nullable"] for c in inspect(engine).get_columns("audit_events")
                       if c["name"] in chain_columns)
        with Session(engine) as session:
            report = verify(session, now=NOW)
            assert (report.sound, report.count) == (True, 2), report.problem
            assert unsealed_count(session) == 0
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == 2
    finally:
        engine.dispose()
