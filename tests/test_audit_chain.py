"""SECURITY 18: the trail is a hash chain; tampering is found, concurrent writers keep it whole.

Tampering is done the way a database administrator could: plain SQL on the table,
with or without recomputing the hashes (the algorithm is public).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from db import migrate
from db.audit_chain import (
    GENESIS,
    HASHED_FIELDS,
    Anchor,
    AnchorFileError,
    ProblemKind,
    Verification,
    content_of,
    event_hash,
    make_anchor,
    read_anchors,
    verify,
)
from db.engine import session_factory
from db.models import AuditEvent
from db.unit_of_work import SqlUnitOfWork

NOW = datetime(2026, 11, 24, 16, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def record_events(sessions: sessionmaker[Session], count: int, *, per_commit: int = 1) -> None:
    clock = iter(NOW + timedelta(seconds=n) for n in range(count))
    written = 0
    while written < count:
        with SqlUnitOfWork(sessions, process="test", clock=lambda: next(clock)) as uow:
            for _ in range(min(per_commit, count - written)):
                written += 1
                uow.events.record(
                    "pin_rejected", call_sid=f"CA{written:032x}", account_id=written,
                    actor="+12025550143", success=False, state="pin_entry", entry_length=4,
                )
            uow.commit()


def chain(sessions: sessionmaker[Session]) -> list[AuditEvent]:
    with sessions() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        session.expunge_all()
        return rows


def check(sessions: sessionmaker[Session], anchors: list[Anchor] | None = None) -> Verification:
    with sessions() as session:
        return verify(session, anchors or [])


def shift_seqs(session: Session, from_seq: int, by: int) -> None:
    """Renumber seq >= from_seq by ``by`` (in two steps: seq is unique at every row)."""
    session.execute(update(AuditEvent).where(AuditEvent.seq >= from_seq).values(seq=AuditEvent.seq + 100_000))
    session.execute(
        update(AuditEvent).where(AuditEvent.seq >= 100_000).values(seq=AuditEvent.seq - 100_000 + by)
    )


# --- appending -----------------------------------------------------------------------


def test_events_are_numbered_and_each_links_to_the_one_before(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 3, per_commit=2)

    rows = chain(sessions)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert [r.prev_hash for r in rows] == [GENESIS, rows[0].hash, rows[1].hash]
    assert all(r.hash == event_hash(content_of(r)) for r in rows)
    report = check(sessions)
    assert (report.intact, report.count, report.head.seq, report.head.hash) == (True, 3, 3, rows[2].hash)


def test_the_hash_covers_every_column_but_the_hash_and_the_surrogate_id() -> None:
    columns = {c.key for c in inspect(AuditEvent).columns}
    assert set(HASHED_FIELDS) == columns - {"id", "hash"}


def test_the_canonical_form_is_independent_of_key_order_and_time_zone() -> None:
    content = {"seq": 1, "prev_hash": GENESIS, "occurred_at": NOW, "detail": {"b": 1, "a": 2}}
    chicago = NOW.astimezone(ZoneInfo("America/Chicago"))
    same = {"detail": {"a": 2, "b": 1}, "occurred_at": chicago, "prev_hash": GENESIS, "seq": 1}
    assert event_hash(content) == event_hash(same)
    assert event_hash(content) != event_hash({**content, "seq": 2})


def test_events_are_chained_in_commit_order_not_record_order(sessions: sessionmaker[Session]) -> None:
    first = SqlUnitOfWork(sessions, process="a", clock=lambda: NOW)
    second = SqlUnitOfWork(sessions, process="b", clock=lambda: NOW + timedelta(seconds=1))
    try:
        first.events.record("recorded_first")
        second.events.record("recorded_second")
        second.commit()
        first.commit()
    finally:
        first.close()
        second.close()

    assert [(r.seq, r.event) for r in chain(sessions)] == [(1, "recorded_second"), (2, "recorded_first")]
    assert check(sessions).intact


def test_a_rollback_drops_the_events_recorded_in_it(sessions: sessionmaker[Session]) -> None:
    with SqlUnitOfWork(sessions, clock=lambda: NOW) as uow:
        uow.events.record("never_happened")
        uow.rollback()
        uow.events.record("happened")
        uow.commit()
    with pytest.raises(RuntimeError), SqlUnitOfWork(sessions, clock=lambda: NOW) as uow:
        uow.events.record("failed_step")
        raise RuntimeError("boom")

    assert [(r.seq, r.event) for r in chain(sessions)] == [(1, "happened")]


def test_a_checkpoint_commit_chains_what_was_recorded_so_far(sessions: sessionmaker[Session]) -> None:
    with SqlUnitOfWork(sessions, clock=lambda: NOW) as uow:
        uow.events.record("payment_attempt_opened")
        uow.commit()  # what Ctx.checkpoint does before calling the processor
        uow.events.record("payment_succeeded")
        uow.commit()

    assert [(r.seq, r.event) for r in chain(sessions)] == [
        (1, "payment_attempt_opened"), (2, "payment_succeeded"),
    ]
    assert check(sessions).intact


@pytest.mark.postgres
def test_concurrent_writers_on_postgresql_leave_one_intact_chain(
    backend: str, sessions: sessionmaker[Session]
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite serializes writers with BEGIN IMMEDIATE; the sealer's lock is PostgreSQL's")
    threads, units, per_unit = 8, 50, 2
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            barrier.wait()
            for unit in range(units):
                with SqlUnitOfWork(sessions, process=f"worker-{number}") as uow:
                    # Some other work first, as a webhook does, then the events.
                    uow.session.execute(text("SELECT pg_sleep(0.0005)"))
                    for event in range(per_unit):
                        uow.events.record("step", call_sid=f"CA{number:02d}{unit:03d}", n=event)
                    uow.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    total = threads * units * per_unit
    rows = chain(sessions)
    assert [r.seq for r in rows] == list(range(1, total + 1))  # no gap, no duplicate
    report = check(sessions)
    assert (report.intact, report.count) == (True, total), report.problem
    # A unit of work's events keep the order they were recorded in (sealed by id, the
    # events of concurrent commits may sit between them: seq is the order of sealing).
    for call in {r.call_sid for r in rows}:
        assert [r.detail["n"] for r in rows if r.call_sid == call] == [0, 1]


# --- tampering -----------------------------------------------------------------------


def test_a_changed_event_is_named(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 5)
    with sessions.begin() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(success=True))

    problem = check(sessions).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, ProblemKind.CHANGED)
    assert str(problem) == "chain broken at seq 3: changed: its hash no longer matches its content"


def test_a_changed_event_with_its_hash_recomputed_is_named(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 5)
    with sessions.begin() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.seq == 3)).one()
        event.detail = {"state": "pin_entry", "entry_length": 4, "note": "all fine"}
        session.flush()
        event.hash = event_hash(content_of(event))

    problem = check(sessions).problem
    assert problem is not None and (problem.seq, problem.kind) == (3, ProblemKind.CHANGED)


def test_a_deleted_event_is_named(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 5)
    with sessions.begin() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 3))

    problem = check(sessions).problem
    assert problem is not None and (problem.seq, problem.kind) == (3, ProblemKind.REMOVED)
    assert "seq 3 missing" in str(problem)


def test_a_deleted_event_with_the_rest_renumbered_is_named(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 5)
    with sessions.begin() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 3))
        shift_seqs(session, 4, -1)

    problem = check(sessions).problem
    assert problem is not None and (problem.seq, problem.kind) == (3, ProblemKind.REMOVED)


def test_an_inserted_event_is_named_even_with_a_correct_hash(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 5)
    rows = chain(sessions)
    forged = {
        "seq": 3, "prev_hash": rows[1].hash, "occurred_at": rows[1].occurred_at, "event": "pin_reset",
        "call_sid": None, "account_id": 2, "actor": "J. Staff", "os_user": "root", "host": "db-1",
        "process": "psql", "success": True, "detail": {"reason": "backdated"},
    }
    with sessions.begin() as session:
        shift_seqs(session, 3, +1)
        session.execute(insert(AuditEvent).values(**forged, hash=event_hash(forged)))

    problem = check(sessions).problem
    assert problem is not None and (problem.seq, problem.kind) == (3, ProblemKind.INSERTED)
    assert "seq 4 is chained to seq 2" in str(problem)


def test_a_second_event_at_a_taken_seq_is_refused_by_the_database(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 2)
    (first, _second) = chain(sessions)
    copy = {name: getattr(first, name) for name in HASHED_FIELDS}
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.execute(insert(AuditEvent).values(**copy, hash=first.hash))


# --- anchors -------------------------------------------------------------------------


def test_an_anchor_catches_a_truncated_tail(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 5)
    with sessions() as session:
        anchor = make_anchor(session, NOW)
    assert (anchor.count, anchor.head_seq) == (5, 5)
    with sessions.begin() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))

    assert check(sessions).intact  # what is left is a valid chain...
    problem = check(sessions, [anchor]).problem  # ...but not the one anchored
    assert problem is not None and (problem.seq, problem.kind) == (5, ProblemKind.TRUNCATED)
    assert "the chain ends at seq 3" in str(problem)


def test_an_anchor_catches_a_rewritten_tail(sessions: sessionmaker[Session]) -> None:
    record_events(sessions, 5)
    with sessions() as session:
        anchor = make_anchor(session, NOW)
    with sessions.begin() as session:  # seq 4 and 5 rewritten, every hash recomputed
        prev_hash = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 3))
        for event in session.scalars(select(AuditEvent).where(AuditEvent.seq >= 4).order_by(AuditEvent.seq)):
            event.actor = "someone else"
            event.prev_hash = prev_hash
            session.flush()
            event.hash = prev_hash = event_hash(content_of(event))

    assert check(sessions).intact
    problem = check(sessions, [anchor]).problem
    assert problem is not None and (problem.seq, problem.kind) == (5, ProblemKind.REWRITTEN)


def test_anchors_of_an_earlier_head_still_match_as_the_chain_grows(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        empty = make_anchor(session, NOW)
    record_events(sessions, 3)
    with sessions() as session:
        earlier = make_anchor(session, NOW)
    record_events(sessions, 2)

    report = check(sessions, [empty, earlier])
    assert (report.intact, report.anchors_checked) == (True, 2)


def test_anchor_lines_round_trip_and_bad_ones_are_refused() -> None:
    anchor = Anchor(count=5, head_seq=5, head_hash="ab" * 32, at=NOW)
    assert read_anchors(["", anchor.to_json()]) == [anchor]
    with pytest.raises(AnchorFileError, match="anchors.jsonl:1"):
        read_anchors(['{"count": 5}'], "anchors.jsonl")
    with pytest.raises(AnchorFileError):
        read_anchors(["not json"])


# --- the migration -------------------------------------------------------------------


def test_the_migration_chains_events_already_in_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0002_ledger")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for n, event in enumerate(["call_started", "pin_rejected", "call_ended"], start=1):
                conn.execute(text(
                    "INSERT INTO audit_events (occurred_at, event, call_sid, actor, process, success, detail)"
                    f" VALUES ('2026-11-2{n} 16:00:00.000000', :event, 'CA1', '+12025550143', 'web', 1,"
                    " '{\"state\": \"language\", \"n\": " + str(n) + "}')"
                ), {"event": event})
        migrate.upgrade(url)
        with Session(engine) as session:
            report = verify(session)
            assert (report.intact, report.count, report.head.seq) == (True, 3, 3), report.problem
            assert session.scalars(select(AuditEvent.event).order_by(AuditEvent.seq)).all() == [
                "call_started", "pin_rejected", "call_ended",
            ]
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == 3
    finally:
        engine.dispose()
