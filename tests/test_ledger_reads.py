"""The ledger and the stored-method store as the payment steps use them, on both
backends: what each read answers, and that it takes one statement where one suffices
(issue 12: the decline counts, the attempt and payment inserts, the wallet)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from db.engine import session_factory
from db.ledger import SqlLedger
from db.repositories import AccountNotFound
from db.stored_methods import SqlStoredMethods
from ivr.flows.ports import MethodRef
from payments.gateway import MethodInfo
from tests.ledger_factory import add_account

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=24)
CALLER = "+12025550143"
OTHER_CALLER = "+12025550199"
VISA = MethodRef("pm_visa", "visa", "4242")


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs (BEGIN and COMMIT are not sent as such)."""
    seen: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


_calls = iter(range(1_000_000))


def attempt(
    sessions: sessionmaker[Session], account_id: int, status: str, *, caller: str | None, at: datetime
) -> str:
    with sessions() as session, session.begin():
        ledger = SqlLedger(session)
        opened = ledger.open_attempt(
            call_sid=f"CA{next(_calls):032d}", attempt_no=1, account_id=account_id, amount_cents=500,
            method=VISA, caller=caller, now=at,
        )
        if status != "pending":
            ledger.settle(opened.id, status=status, now=at)  # type: ignore[arg-type]
    return opened.id


def test_one_read_counts_the_declines_of_the_account_and_of_the_caller(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    mine = add_account(sessions, "48210")
    other = add_account(sessions, "51377")
    attempt(sessions, mine, "declined", caller=CALLER, at=NOW - timedelta(hours=1))  # both
    attempt(sessions, mine, "declined", caller=OTHER_CALLER, at=NOW - timedelta(hours=23))  # account
    attempt(sessions, mine, "declined", caller=None, at=NOW - timedelta(hours=2))  # account
    attempt(sessions, other, "declined", caller=CALLER, at=NOW - timedelta(minutes=5))  # caller
    attempt(sessions, mine, "declined", caller=CALLER, at=NOW - timedelta(hours=25))  # too old
    attempt(sessions, mine, "succeeded", caller=CALLER, at=NOW - timedelta(hours=1))  # not declined
    attempt(sessions, mine, "failed", caller=CALLER, at=NOW - timedelta(hours=1))
    attempt(sessions, other, "declined", caller=OTHER_CALLER, at=NOW - timedelta(hours=1))  # neither

    with sessions() as session, statements(engine) as sent:
        counts = SqlLedger(session).declines(SINCE, account_id=mine, caller=CALLER)
    assert (counts.account, counts.caller) == (3, 2)
    assert len(sent) == 1

    with sessions() as session:
        ledger = SqlLedger(session)
        withheld = ledger.declines(SINCE, account_id=mine, caller=None)
        stranger = ledger.declines(SINCE, account_id=other, caller="+12025550000")
        nobody = ledger.declines(SINCE, account_id=None, caller=OTHER_CALLER)
    assert (withheld.account, withheld.caller) == (3, 0)  # a withheld number counts nothing
    assert (stranger.account, stranger.caller) == (2, 0)
    assert (nobody.account, nobody.caller) == (0, 2)


def test_a_replayed_attempt_writes_nothing_and_leaves_the_first_as_it_is(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    account = add_account(sessions, "48210")
    opening = {
        "call_sid": "CA" + "1" * 32, "attempt_no": 1, "account_id": account, "amount_cents": 2550,
        "method": VISA, "caller": CALLER, "now": NOW,
    }
    with sessions() as session, session.begin(), statements(engine) as sent:
        first = SqlLedger(session).open_attempt(**opening)
    assert len(sent) == 1 and not [s for s in sent if "SAVEPOINT" in s]  # no read, no savepoint
    assert (first.status, first.amount_cents, first.opened_at, first.method) == ("pending", 2550, NOW, VISA)
    with sessions() as session, session.begin():
        SqlLedger(session).settle(first.id, status="declined", decline_code="card_declined", now=NOW)

    later = {**opening, "amount_cents": 9999, "now": NOW + timedelta(minutes=1)}
    with sessions() as session, session.begin(), statements(engine) as sent:
        ledger = SqlLedger(session)
        assert ledger.try_open_attempt(**later) is None
        again = ledger.open_attempt(**later)
        found = ledger.attempt(opening["call_sid"], 1)  # type: ignore[arg-type]
    assert not [s for s in sent if "SAVEPOINT" in s]
    assert again == found
    assert found is not None
    assert (found.id, found.status, found.amount_cents, found.opened_at) == (first.id, "declined", 2550, NOW)


def test_settling_keeps_the_processor_id_on_file_and_refuses_an_unknown_attempt(
    sessions: sessionmaker[Session],
) -> None:
    account = add_account(sessions, "48210")
    attempt_id = attempt(sessions, account, "pending", caller=CALLER, at=NOW)
    with sessions() as session, session.begin():
        ledger = SqlLedger(session)
        ledger.settle(attempt_id, status="unknown", processor_id="pi_first", now=NOW)
        ledger.settle(attempt_id, status="succeeded", now=NOW + timedelta(seconds=1))
        settled = ledger.attempt_by_id(attempt_id)
        with pytest.raises(LookupError):
            ledger.settle("pa_missing", status="failed", now=NOW)
    assert settled is not None and (settled.status, settled.processor_id) == ("succeeded", "pi_first")


def test_a_payment_is_recorded_once_per_attempt_in_one_statement(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    account = add_account(sessions, "48210")
    attempt_id = attempt(sessions, account, "succeeded", caller=CALLER, at=NOW)
    with sessions() as session, session.begin(), statements(engine) as sent:
        ledger = SqlLedger(session)
        opened = ledger.attempt_by_id(attempt_id)
        assert opened is not None
        first = ledger.record_payment(opened, processor_id="pi_once", status="succeeded", now=NOW)
    assert len(sent) == 2  # the attempt read, then the insert: no read before it, no savepoint
    with sessions() as session, session.begin():
        ledger = SqlLedger(session)
        again = ledger.record_payment(opened, processor_id="pi_once", status="succeeded", now=NOW)
        last = ledger.last_payment(account)
    assert again == first == last
    assert first.confirmation.isdigit() and len(first.confirmation) == 10
    assert (first.amount_cents, first.taken_at, first.status) == (500, NOW, "succeeded")


BANK_WITH_MANDATE = MethodInfo("pm_bank1", "bank", "STRIPE TEST BANK", "6789", None, None, "mandate_1")
BANK_WITHOUT = MethodInfo("pm_bank2", "bank", "STRIPE TEST BANK", "1116", None, None)
CARD = MethodInfo("pm_card1", "card", "visa", "4242", 11, 2031)


def test_the_wallet_is_one_read_of_methods_customer_and_last_paid_method(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    account = add_account(sessions, "48210", customer_id="cus_48210")
    empty = add_account(sessions, "51377", customer_id="cus_51377")
    with sessions() as session, session.begin():
        methods = SqlStoredMethods(session)
        bank = methods.add(account, BANK_WITH_MANDATE, created_via="portal", now=NOW)
        methods.add(account, BANK_WITHOUT, created_via="portal", now=NOW + timedelta(seconds=1))
        card = methods.add(account, CARD, created_via="ivr", now=NOW + timedelta(seconds=2))
        ledger = SqlLedger(session)
        for at, pm in ((NOW, "pm_bank1"), (NOW + timedelta(hours=1), "pm_card1")):
            paid = ledger.open_attempt(
                call_sid=f"CA{next(_calls):032d}", attempt_no=1, account_id=account, amount_cents=700,
                method=MethodRef(pm, "x", "0000"), caller=None, now=at,
            )
            ledger.settle(paid.id, status="succeeded", processor_id=f"pi_{pm}", now=at)
            ledger.record_payment(paid, processor_id=f"pi_{pm}", status="succeeded", now=at)

    with sessions() as session, statements(engine) as sent:
        phone = SqlStoredMethods(session, by_phone=True).wallet(account)
        everything = SqlStoredMethods(session).wallet(account)
        nothing_stored = SqlStoredMethods(session, by_phone=True).wallet(empty)
    assert len(sent) == 3
    assert (phone.account_id, phone.customer_id, phone.last_paid) == (account, "cus_48210", "pm_card1")
    assert list(phone.methods) == [bank, card]  # oldest first; a bank account without mandate is not offered
    assert [m.processor_id for m in everything.methods] == ["pm_bank1", "pm_bank2", "pm_card1"]
    assert (nothing_stored.customer_id, list(nothing_stored.methods), nothing_stored.last_paid) == (
        "cus_51377", [], None,
    )
    with sessions() as session, pytest.raises(AccountNotFound):
        SqlStoredMethods(session).wallet(account + empty + 1000)


def test_the_first_customer_recorded_stays_in_one_statement(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    account = add_account(sessions, "48210")
    with sessions() as session, session.begin(), statements(engine) as sent:
        methods = SqlStoredMethods(session)
        assert methods.set_customer_id(account, "cus_first") == "cus_first"
        assert methods.set_customer_id(account, "cus_second") == "cus_first"
    assert len(sent) == 2
