"""The SQL adapters of the flow's ports, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from db.engine import session_factory
from db.models import Account, AuditEvent, Call, CallerThrottle, Phone, PinCredential
from db.repositories import (
    AccountNotFound,
    CallNotFound,
    SqlAccounts,
    SqlCalls,
    SqlCredentials,
    SqlEvents,
)
from db.unit_of_work import SqlUnitOfWork
from ivr.flows.ports import CallRecord

NOW = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)
DAY = timedelta(hours=24)
LIMIT = 5


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as session:
        yield session


def add_account(
    session: Session,
    number: str,
    *,
    phones: tuple[str, ...] = (),
    ssn_hash: str | None = None,
    balance_cents: int = 12345,
    credential: bool = True,
) -> int:
    account = Account(
        account_number=number,
        account_type="residential",
        name="Rivera",
        ssn_hash=ssn_hash,
        language="es",
        email="rivera@example.test",
        balance_cents=balance_cents,
        past_due_cents=0,
        due_date=date(2025, 3, 31),
        balance_as_of=NOW,
        created_at=NOW,
        updated_at=NOW,
    )
    session.add(account)
    session.flush()
    for e164 in phones:
        session.add(Phone(account_id=account.id, e164=e164, created_via="import", created_at=NOW))
    if credential:
        session.add(PinCredential(account_id=account.id, origin="none", failure_count=0))
    session.flush()
    return account.id


def failures(session: Session, account_id: int) -> int:
    return SqlCredentials(session).get(account_id).failure_count


# --- accounts -------------------------------------------------------------------------


def test_by_phone_lists_accounts_in_numeric_account_order_up_to_the_limit(
    session: Session,
) -> None:
    caller = "+12025550123"
    for number in ("123456", "10000", "9999", "00042"):
        add_account(session, number, phones=(caller,))
    add_account(session, "5555", phones=("+12025550199",))
    accounts = SqlAccounts(session)

    assert [a.number for a in accounts.by_phone(caller, 8)] == ["9999", "00042", "10000", "123456"]
    assert [a.number for a in accounts.by_phone(caller, 2)] == ["9999", "00042"]
    assert accounts.by_phone("+12025550100", 8) == []


def test_summary_carries_the_imported_balance_and_whether_an_ssn_is_on_file(
    session: Session,
) -> None:
    with_ssn = add_account(session, "1001", ssn_hash="$argon2id$stub", balance_cents=-2500)
    add_account(session, "1002")
    accounts = SqlAccounts(session)

    summary = accounts.get(with_ssn)
    assert (summary.number, summary.has_ssn, summary.balance_cents) == ("1001", True, -2500)
    assert (summary.language, summary.due_date) == ("es", date(2025, 3, 31))
    other = accounts.by_number("1002")
    assert other is not None and other.has_ssn is False
    assert accounts.by_number("100") is None
    with pytest.raises(AccountNotFound):
        accounts.get(with_ssn + 100)


# --- PIN credentials ------------------------------------------------------------------


def test_account_without_a_credential_row_has_no_pin_and_gets_one_when_counted(
    session: Session,
) -> None:
    account_id = add_account(session, "2001", ssn_hash="$argon2id$ssn", credential=False)
    credentials = SqlCredentials(session)

    credential = credentials.get(account_id)
    assert (credential.origin, credential.pin_hash, credential.failure_count) == ("none", None, 0)
    assert credential.ssn_hash == "$argon2id$ssn" and credential.locked is False

    reserved = credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)
    assert reserved is not None
    assert (reserved.origin, reserved.ssn_hash, reserved.failure_count) == ("none", "$argon2id$ssn", 1)
    assert failures(session, account_id) == 1


def test_unknown_account_cannot_be_counted_or_given_a_pin(session: Session) -> None:
    credentials = SqlCredentials(session)

    assert credentials.reserve_attempt(999, NOW, LIMIT, DAY) is None
    with pytest.raises(AccountNotFound):
        credentials.get(999)
    with pytest.raises(AccountNotFound):
        credentials.set_pin(999, "$argon2id$pin", "member", NOW)
    with pytest.raises(AccountNotFound):
        credentials.reset(999, NOW)
    assert session.scalar(select(func.count()).select_from(PinCredential)) == 0


def test_reservations_stop_at_the_limit_within_the_window(session: Session) -> None:
    account_id = add_account(session, "2002")
    credentials = SqlCredentials(session)

    granted = [
        credentials.reserve_attempt(account_id, NOW + timedelta(minutes=i), LIMIT, DAY) is not None
        for i in range(LIMIT + 2)
    ]

    assert granted == [True] * LIMIT + [False, False]
    assert failures(session, account_id) == LIMIT


def test_an_expired_window_starts_again_at_one(session: Session) -> None:
    account_id = add_account(session, "2003")
    credentials = SqlCredentials(session)
    for _ in range(LIMIT):
        assert credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)
    assert not credentials.reserve_attempt(account_id, NOW + DAY - timedelta(seconds=1), LIMIT, DAY)

    assert credentials.reserve_attempt(account_id, NOW + DAY + timedelta(seconds=1), LIMIT, DAY)

    assert failures(session, account_id) == 1
    window = session.scalar(
        select(PinCredential.window_started_at).where(PinCredential.account_id == account_id)
    )
    assert window == NOW + DAY + timedelta(seconds=1)


def test_a_reservation_returns_the_credential_it_counted_against(session: Session) -> None:
    account_id = add_account(session, "2008", ssn_hash="$argon2id$ssn")
    credentials = SqlCredentials(session)
    credentials.set_pin(account_id, "$argon2id$pin", "legacy", NOW)

    reserved = credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)

    assert reserved == credentials.get(account_id)
    assert (reserved.pin_hash, reserved.origin) == ("$argon2id$pin", "legacy")
    assert reserved.ssn_hash == "$argon2id$ssn"
    assert (reserved.failure_count, reserved.locked, reserved.changed_at) == (1, False, NOW)


def test_lock_if_exhausted_says_whether_the_pin_is_locked_now(session: Session) -> None:
    account_id = add_account(session, "2009")
    credentials = SqlCredentials(session)
    assert credentials.lock_if_exhausted(account_id, NOW, 1) is False  # no failure yet
    credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)

    assert credentials.lock_if_exhausted(account_id, NOW, 1) is True
    assert credentials.lock_if_exhausted(account_id, NOW + DAY, 1) is True  # still, and as of then
    assert credentials.lock_if_exhausted(999, NOW, 1) is False
    locked_at = session.scalar(select(PinCredential.locked_at).where(PinCredential.account_id == account_id))
    assert locked_at == NOW


def test_release_undoes_one_reservation_and_never_goes_below_zero(session: Session) -> None:
    account_id = add_account(session, "2004")
    credentials = SqlCredentials(session)
    credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)
    credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)

    credentials.release_attempt(account_id)
    assert failures(session, account_id) == 1
    credentials.release_attempt(account_id)
    credentials.release_attempt(account_id)
    assert failures(session, account_id) == 0


def test_exhausted_account_is_locked_and_refuses_even_after_the_window(session: Session) -> None:
    account_id = add_account(session, "2005")
    credentials = SqlCredentials(session)
    for _ in range(LIMIT - 1):
        credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)
    assert credentials.lock_if_exhausted(account_id, NOW, LIMIT) is False

    credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)
    assert credentials.lock_if_exhausted(account_id, NOW, LIMIT) is True

    assert credentials.get(account_id).locked is True
    assert credentials.reserve_attempt(account_id, NOW + 3 * DAY, LIMIT, DAY) is None
    credentials.unlock(account_id, NOW + 3 * DAY)
    credential = credentials.get(account_id)
    assert (credential.locked, credential.failure_count) == (False, 0)
    assert credentials.reserve_attempt(account_id, NOW + 3 * DAY, LIMIT, DAY) is not None


def test_set_pin_keeps_counters_and_replace_hash_keeps_origin_and_date(session: Session) -> None:
    account_id = add_account(session, "2006")
    credentials = SqlCredentials(session)
    credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)

    credentials.set_pin(account_id, "$argon2id$first", "legacy", NOW)
    credentials.replace_hash(account_id, "$argon2id$stronger")

    credential = credentials.get(account_id)
    assert credential.pin_hash == "$argon2id$stronger"
    assert (credential.origin, credential.changed_at) == ("legacy", NOW)
    assert credential.failure_count == 1
    with pytest.raises(ValueError, match="origin"):
        credentials.set_pin(account_id, "$argon2id$x", "none", NOW)


def test_replace_hash_refuses_an_account_without_a_pin(session: Session) -> None:
    account_id = add_account(session, "2010")

    with pytest.raises(ValueError, match="no PIN"):
        SqlCredentials(session).replace_hash(account_id, "$argon2id$x")


def test_reset_clears_the_pin_the_counters_and_the_lock(session: Session) -> None:
    account_id = add_account(session, "2007")
    credentials = SqlCredentials(session)
    credentials.set_pin(account_id, "$argon2id$pin", "member", NOW)
    for _ in range(LIMIT):
        credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)
    credentials.lock_if_exhausted(account_id, NOW, LIMIT)

    later = NOW + timedelta(hours=2)
    credentials.reset(account_id, later)

    credential = credentials.get(account_id)
    assert (credential.origin, credential.pin_hash, credential.changed_at) == ("none", None, later)
    assert (credential.failure_count, credential.locked) == (0, False)


def test_caller_throttle_counts_per_number_in_a_window(session: Session) -> None:
    credentials = SqlCredentials(session)
    caller, other = "+12025550123", "+12025550124"
    hour = timedelta(hours=1)

    assert [credentials.reserve_caller_attempt(caller, NOW, 3, hour) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert credentials.reserve_caller_attempt(other, NOW, 3, hour) is True
    credentials.release_caller_attempt(caller)
    assert credentials.reserve_caller_attempt(caller, NOW, 3, hour) is True
    assert credentials.reserve_caller_attempt(caller, NOW + 2 * hour, 3, hour) is True

    rows = session.execute(select(CallerThrottle.caller, CallerThrottle.failure_count))
    counts = {number: count for number, count in rows}
    assert counts == {caller: 1, other: 1}
    for _ in range(3):
        credentials.release_caller_attempt(other)
    assert session.get(CallerThrottle, other, populate_existing=True).failure_count == 0  # type: ignore[union-attr]



def test_a_line_wide_failure_count_never_stops_counting_and_restarts_after_its_window(
    session: Session,
) -> None:
    credentials = SqlCredentials(session)
    hour = timedelta(hours=1)

    counts = [credentials.count_failure("line", NOW + timedelta(minutes=n), hour) for n in range(5)]
    assert counts == [1, 2, 3, 4, 5]
    assert credentials.count_failure("line", NOW + 2 * hour, hour) == 1  # a new window
    assert credentials.reserve_caller_attempt("+12025550123", NOW, 3, hour) is True  # keys apart

def _race(sessions: sessionmaker[Session], work: object, hold: float) -> list[tuple[bool, float]]:
    """Run ``work(session)`` in two threads at the same moment, each in its own transaction;
    a thread that gets True holds its transaction open ``hold`` seconds before committing.
    Returns (result, seconds the call took) per thread."""
    barrier = threading.Barrier(2)

    def one() -> tuple[bool, float]:
        with sessions() as session:
            barrier.wait(timeout=10)
            started = time.monotonic()
            result = bool(work(session))  # type: ignore[operator]
            took = time.monotonic() - started
            if result:
                time.sleep(hold)
            session.commit()
            return result, took

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(one) for _ in range(2)]
        return [future.result(timeout=60) for future in futures]


def test_two_simultaneous_calls_cannot_both_get_the_last_try(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        account_id = add_account(session, "3001")
        credentials = SqlCredentials(session)
        for _ in range(LIMIT - 1):
            credentials.reserve_attempt(account_id, NOW, LIMIT, DAY)
        session.commit()
    hold = 0.5

    outcomes = _race(
        sessions,
        lambda s: SqlCredentials(s).reserve_attempt(account_id, NOW, LIMIT, DAY),
        hold,
    )

    assert sorted(result for result, _ in outcomes) == [False, True]
    loser_took = next(took for result, took in outcomes if not result)
    assert loser_took >= hold / 2, "the two transactions did not overlap"
    with sessions() as session:
        assert failures(session, account_id) == LIMIT


def test_two_simultaneous_calls_cannot_both_get_a_callers_last_try(
    sessions: sessionmaker[Session],
) -> None:
    caller, hour = "+12025550123", timedelta(hours=1)
    with sessions() as session:
        SqlCredentials(session).reserve_caller_attempt(caller, NOW, 2, hour)
        session.commit()

    outcomes = _race(
        sessions,
        lambda s: SqlCredentials(s).reserve_caller_attempt(caller, NOW, 2, hour),
        0.5,
    )

    assert sorted(result for result, _ in outcomes) == [False, True]


# --- calls ----------------------------------------------------------------------------


def call_record(**changes: object) -> CallRecord:
    record = CallRecord(
        call_sid="CA" + "0" * 32,
        from_number="+12025550123",
        to_number="+12025550100",
        state="language",
        started_at=NOW,
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def test_created_call_loads_back_with_aware_times(session: Session) -> None:
    calls = SqlCalls(session, clock=lambda: NOW)

    assert calls.create(call_record(data={"candidates": [1, 2]})) is True
    session.commit()

    loaded = calls.load_for_update(call_record().call_sid)
    assert loaded == call_record(data={"candidates": [1, 2]})
    assert loaded is not None and loaded.started_at.tzinfo is not None
    assert calls.load_for_update("CA-unknown") is None


def test_replayed_first_webhook_writes_nothing_and_keeps_the_transaction(
    session: Session,
) -> None:
    calls = SqlCalls(session, clock=lambda: NOW)
    account_id = add_account(session, "4001")
    calls.create(call_record(state="pin", account_id=account_id))
    session.commit()

    SqlEvents(session, "test").record("call_replayed", call_sid="CA" + "0" * 32)
    assert calls.create(call_record(state="language")) is False
    replay = calls.load_for_update(call_record().call_sid)
    session.commit()

    assert replay is not None and (replay.state, replay.account_id) == ("pin", account_id)
    assert session.scalar(select(func.count()).select_from(Call)) == 1
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_save_writes_back_every_field(session: Session) -> None:
    later = NOW + timedelta(minutes=3)
    clock = [NOW]
    calls = SqlCalls(session, clock=lambda: clock[0])
    account_id = add_account(session, "4002")
    record = call_record()
    calls.create(record)
    clock[0] = later

    record.state, record.step, record.language = "goodbye", 7, "es"
    record.account_id, record.verified = account_id, True
    record.data = {"attempts": 2, "notice": "pin_changed"}
    record.status, record.outcome, record.ended_at = "ended", "paid", later
    calls.save(record)
    session.commit()

    assert calls.load_for_update(record.call_sid) == record
    updated_at = session.scalar(select(Call.updated_at).where(Call.call_sid == record.call_sid))
    assert updated_at == later
    with pytest.raises(CallNotFound):
        calls.save(call_record(call_sid="CA-unknown"))


@pytest.fixture
def seen(engine: Engine) -> Iterator[list[str]]:
    """The verbs of the statements run from now on (reads and writes; not BEGIN/COMMIT)."""
    verbs: list[str] = []

    def saw(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        verb = statement.split()[0].upper()
        if verb in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            verbs.append(verb)

    sa_event.listen(engine, "before_cursor_execute", saw)
    yield verbs
    sa_event.remove(engine, "before_cursor_execute", saw)


def test_save_writes_only_a_call_that_changed(session: Session, seen: list[str]) -> None:
    clock = [NOW]
    calls = SqlCalls(session, clock=lambda: clock[0])
    record = call_record()
    calls.create(record)
    session.commit()
    seen.clear()

    loaded = calls.load_for_update(record.call_sid)
    assert loaded is not None
    calls.save(loaded)  # as loaded: nothing to write
    assert seen == ["SELECT"]

    loaded.data["misses"] = 1  # a change in place, inside ``data``
    clock[0] = NOW + timedelta(minutes=1)
    calls.save(loaded)
    calls.save(loaded)  # written already in this transaction
    assert seen == ["SELECT", "UPDATE"]
    session.rollback()

    again = calls.load_for_update(record.call_sid)
    assert again is not None and again.data == {}  # the rollback undid the change
    again.data["misses"] = 1
    calls.save(again)
    session.commit()
    stored = session.scalar(select(Call.data).where(Call.call_sid == record.call_sid))
    assert stored == {"misses": 1}


def test_a_save_after_a_rollback_is_written(session: Session) -> None:
    calls = SqlCalls(session, clock=lambda: NOW)
    record = call_record()
    calls.create(record)
    session.commit()
    loaded = calls.load_for_update(record.call_sid)
    assert loaded is not None
    loaded.state = "pin_entry"
    calls.save(loaded)
    session.rollback()

    calls.save(loaded)  # the row no longer holds what was written before the rollback
    session.commit()

    assert session.scalar(select(Call.state).where(Call.call_sid == record.call_sid)) == "pin_entry"


# --- events and the unit of work -------------------------------------------------------


def test_events_are_appended_with_who_what_when_where(session: Session) -> None:
    events = SqlEvents(session, "cli", os_user="ops", host="billing-1", clock=lambda: NOW)

    events.record("pin_reset", account_id=7, actor="J. Staff", success=True, reason="forgot")
    events.record("pin_rejected", call_sid="CA1", success=False, attempt=2)
    session.commit()

    rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(r.event, r.account_id, r.call_sid, r.success) for r in rows] == [
        ("pin_reset", 7, None, True),
        ("pin_rejected", None, "CA1", False),
    ]
    assert (rows[0].actor, rows[0].os_user, rows[0].host, rows[0].process) == (
        "J. Staff",
        "ops",
        "billing-1",
        "cli",
    )
    assert rows[0].detail == {"reason": "forgot"} and rows[1].detail == {"attempt": 2}
    assert rows[0].occurred_at == NOW


def test_event_detail_must_be_json(session: Session) -> None:
    with pytest.raises(TypeError, match="JSON"):
        SqlEvents(session, "web").record("odd", when=NOW)


def test_unit_of_work_writes_only_on_commit_and_rolls_back_on_error(
    sessions: sessionmaker[Session],
) -> None:
    with SqlUnitOfWork(sessions, process="web") as uow:
        uow.calls.create(call_record(call_sid="CA-committed"))
        uow.events.record("call_started", call_sid="CA-committed")
        uow.commit()
    with SqlUnitOfWork(sessions) as uow:
        uow.calls.create(call_record(call_sid="CA-forgotten"))
    with pytest.raises(RuntimeError), SqlUnitOfWork(sessions) as uow:
        uow.calls.create(call_record(call_sid="CA-failed"))
        uow.session.flush()
        raise RuntimeError("boom")

    with sessions() as session:
        assert session.scalars(select(Call.call_sid)).all() == ["CA-committed"]
        assert session.scalars(select(AuditEvent.process)).all() == ["web"]
