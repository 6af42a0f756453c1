"""What the per-webhook path asks of the database (issue 12): no statement it can do without.

Each test records the statements one webhook runs (on the app's own engine) and checks
the cuts: the greeting stores the call in one insert, an unchanged call is not written
back, a PIN check reads its credential once (in the statement that reserves the try),
and the account with its balance is one statement, read at most once per step.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import event, select

from db.models import AuditEvent, Call
from ivr.services import current_services
from tests.members import PIN, Member, add_members
from tests.twilio_requests import RawCall

CALLER = "+12025550143"
# What the trail's sealer (db.audit_sealer) runs once a step has committed its events.
_SEALER = re.compile(
    r"pg_try_advisory_lock|pg_advisory_unlock|audit_events AS e SET|seq IS NULL|audit_events\.seq DESC"
)


class Statements:
    def __init__(self) -> None:
        self.all: list[str] = []

    def saw(self, _conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if not _SEALER.search(statement):  # the sealer's, after the commit: not the step's
            self.all.append(" ".join(statement.split()))

    def matching(self, pattern: str) -> list[str]:
        return [s for s in self.all if re.search(pattern, s, re.IGNORECASE)]


@pytest.fixture
def statements(app: Flask) -> Iterator[Statements]:
    seen = Statements()
    engine = app.extensions["securepay"].engine
    event.listen(engine, "before_cursor_execute", seen.saw)
    yield seen
    event.remove(engine, "before_cursor_execute", seen.saw)


def test_the_greeting_stores_the_call_in_one_insert(app: Flask, statements: Statements) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = RawCall(app)
    statements.all.clear()

    assert call.start().status_code == 200

    assert len(statements.matching(r"^INSERT INTO calls ")) == 1
    assert statements.matching(r"^UPDATE calls |FROM calls|SAVEPOINT") == []
    with app.app_context(), current_services().unit_of_work() as uow:
        stored = uow.calls.load_for_update(call.sid)
    assert stored is not None and (stored.state, stored.step) == ("language", 1)
    assert stored.data["captured_last4"] == ["4821"]


def test_a_repeated_first_webhook_keeps_the_call_where_it_is_and_one_start_in_the_trail(
    app: Flask,
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = RawCall(app)
    call.start()
    call.step(1, "1")  # English: on to the account's PIN

    again = call.start()

    assert again.status_code == 200 and b"<Gather" in again.data
    with app.app_context(), current_services().unit_of_work() as uow:
        row = uow.session.scalar(select(Call).where(Call.call_sid == call.sid))
        assert row is not None and (row.state, row.step) == ("pin_entry", 2)
        events = uow.session.scalars(select(AuditEvent.event).where(AuditEvent.call_sid == call.sid)).all()
    assert events.count("call_started") == 1 and events.count("call_capture") == 1


def test_two_simultaneous_first_webhooks_start_one_call(app: Flask) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = RawCall(app)
    barrier = threading.Barrier(2)
    answers: list[bytes] = []

    def greet() -> None:
        barrier.wait(timeout=10)
        answers.append(call.start().data)

    threads = [threading.Thread(target=greet) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(answers) == 2 and answers[0] == answers[1] and b"<Gather" in answers[0]
    with app.app_context(), current_services().unit_of_work() as uow:
        rows = uow.session.scalars(select(Call).where(Call.call_sid == call.sid)).all()
        events = uow.session.scalars(select(AuditEvent.event).where(AuditEvent.call_sid == call.sid)).all()
    assert len(rows) == 1 and (rows[0].state, rows[0].step) == ("language", 1)
    assert sorted(events) == ["call_capture", "call_started"]


def test_a_status_callback_for_an_ended_call_writes_nothing(app: Flask, statements: Statements) -> None:
    call = RawCall(app)
    call.start()
    call.status("completed")
    statements.all.clear()

    assert call.status("completed").status_code == 200

    assert statements.matching(r"^(UPDATE|INSERT)") == []


def test_a_right_pin_reads_its_credential_once_and_the_account_at_most_once(
    app: Flask, statements: Statements
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = RawCall(app)
    call.start()
    call.step(1, "1")
    statements.all.clear()

    call.step(2, PIN)

    with app.app_context(), current_services().unit_of_work() as uow:
        stored = uow.calls.load_for_update(call.sid)
    assert stored is not None and stored.verified and stored.state == "account_menu"
    touching_credentials = statements.matching(r"pin_credentials")
    assert [s.split()[0] for s in touching_credentials] == ["INSERT", "UPDATE"]  # reserve, release
    assert [s.split()[0] for s in statements.matching(r"caller_throttle")] == ["INSERT", "UPDATE"]
    assert len(statements.matching(r"^SELECT .* FROM accounts\b.*balance_as_of")) <= 1
    assert statements.matching(r"^SELECT coalesce\(sum\(payments") == []  # the balance: in the account read


def test_keyed_entry_reads_the_account_once(app: Flask, statements: Statements) -> None:
    add_members(app, Member("10004821"))
    call = RawCall(app, from_number="+12025550199")  # not on file: keyed entry
    call.start()
    call.step(1, "1")
    statements.all.clear()

    call.step(2, "10004821")

    assert len(statements.matching(r"^SELECT .* FROM accounts\b")) == 2  # the account, its credential
    assert len(statements.matching(r"balance_as_of")) == 1


def test_a_step_that_only_moves_the_call_is_a_read_and_one_write_on_postgresql(
    app: Flask, statements: Statements
) -> None:
    # Issue 12: <= 4 round trips for such a step. psycopg sends BEGIN and COMMIT; between
    # them, the locked read of the call and one statement saving it with its trail events.
    call = RawCall(app, from_number="+12025550199")
    call.start()
    statements.all.clear()

    assert b"<Gather" in call.step(1, "9").data  # a wrong key at the language menu: said again

    mine = statements.all
    if app.extensions["securepay"].engine.dialect.name == "postgresql":
        assert [s.split()[0] for s in mine] == ["SELECT", "WITH"]
        assert mine[1].startswith("WITH moved AS (UPDATE calls SET")
        assert "INSERT INTO audit_events" in mine[1]
    else:  # SQLite: no data-modifying WITH; two statements, no round trip
        assert len([s for s in mine if s.startswith("UPDATE calls SET")]) == 1
        assert len([s for s in mine if s.startswith("INSERT INTO audit_events")]) == 1
    with app.app_context(), current_services().unit_of_work() as uow:
        stored = uow.calls.load_for_update(call.sid)
        events = uow.session.scalars(
            select(AuditEvent.event).where(AuditEvent.call_sid == call.sid).order_by(AuditEvent.id)
        ).all()
    assert stored is not None and stored.step == 2 and stored.data["misses"] == 1
    assert events[-1] == "input_missed"


def test_a_step_of_a_call_gone_from_the_database_writes_no_event(app: Flask) -> None:
    from datetime import UTC, datetime

    from db.repositories import CallNotFound
    from ivr.flows.ports import CallRecord

    ghost = CallRecord("CA" + "0" * 32, "+12025550199", "+12025550100", "language",
                       datetime(2026, 11, 24, 16, 0, tzinfo=UTC), step=1)
    with app.app_context(), current_services().unit_of_work() as uow:
        uow.events.record("input_missed", call_sid=ghost.call_sid, success=False)
        with pytest.raises(CallNotFound):
            uow.commit_step(ghost)
    with app.app_context(), current_services().unit_of_work() as uow:
        found = uow.session.scalars(select(AuditEvent.id).where(AuditEvent.call_sid == ghost.call_sid)).all()
    assert found == []


def test_the_one_statement_writes_every_column_a_save_and_an_event_hold() -> None:
    # A column added to calls or audit_events must be added to the statement too, or
    # the step's write would silently drop it.
    from db.step_commit import CALL_FIELDS_SET, EVENT_COLUMNS

    calls = {column.name for column in Call.__table__.columns}
    assert set(CALL_FIELDS_SET) == calls - {"id", "call_sid"}
    events = {column.name for column in AuditEvent.__table__.columns}
    assert set(EVENT_COLUMNS) == events - {"id", "seq", "prev_hash", "hash"}
