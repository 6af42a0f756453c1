"""Writes ledger rows the way the call flow does, for tests of what reads the ledger.

The flow's order (SECURITY 15, 16): a ``PaymentAttempt`` is committed with status
``pending`` *before* the processor is called, its id being the idempotency key; then
the processor's answer is recorded: ``succeeded`` together with a ``Payment`` carrying
a confirmation number, in one transaction, or another status without a payment. The
rows are written by the flow's own adapter (``db.ledger.SqlLedger``), so the tests read
exactly what the flow writes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from db.ledger import SqlLedger
from db.models import Account, Call, Payment, PaymentAttempt
from ivr.flows.ports import AttemptStatus, MethodRef
from payments.gateway import ChargeResult

# Test card PaymentMethods have no stored row here: brand and last four are enough.
VISA_4242 = ("pm_card_visa", "visa", "4242")


def add_account(
    sessions: sessionmaker[Session],
    number: str,
    *,
    email: str | None = None,
    language: str | None = None,
    customer_id: str | None = None,
    at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> int:
    """An imported account (no PIN, no SSN: the ledger does not need them)."""
    with sessions() as session, session.begin():
        account = Account(
            account_number=number,
            account_type="residential",
            name="Rivera",
            language=language,
            email=email,
            balance_cents=12345,
            past_due_cents=0,
            due_date=date(2026, 11, 30),
            balance_as_of=at,
            processor_customer_id=customer_id,
            created_at=at,
            updated_at=at,
        )
        session.add(account)
        session.flush()
        return account.id


def add_call(sessions: sessionmaker[Session], call_sid: str, *, language: str, at: datetime) -> None:
    """The call a payment was taken in (its language is the receipt's)."""
    with sessions() as session, session.begin():
        session.add(
            Call(
                call_sid=call_sid,
                from_number="+12025550143",
                to_number="+12025550100",
                language=language,
                state="goodbye",
                started_at=at,
                updated_at=at,
                status="ended",
            )
        )


@dataclass(frozen=True)
class Recorded:
    attempt_id: str
    payment_id: int | None = None
    confirmation: str | None = None


class Ledger:
    """Drives the flow's own ledger adapter (``db.ledger.SqlLedger``), one committed
    transaction per step, in the order the flow commits them."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def begin_attempt(
        self,
        account_id: int,
        amount_cents: int,
        *,
        at: datetime,
        method: tuple[str, str, str] = VISA_4242,
        call_sid: str | None = None,
        attempt_no: int = 1,
    ) -> str:
        """The row written before the processor is called; returns its id (the key)."""
        with self._sessions() as session, session.begin():
            attempt = SqlLedger(session).open_attempt(
                call_sid=call_sid or f"CA{secrets.token_hex(16)}",
                attempt_no=attempt_no,
                account_id=account_id,
                amount_cents=amount_cents,
                method=MethodRef(*method),
                caller="+12025550143",
                now=at,
            )
        return attempt.id

    def succeed(
        self, attempt_id: str, processor_id: str, *, at: datetime, status: AttemptStatus = "succeeded"
    ) -> Recorded:
        """The processor took the money (``succeeded``, or ``processing`` for a bank debit
        that settles later): the attempt and its ``Payment`` in one transaction."""
        with self._sessions() as session, session.begin():
            ledger = SqlLedger(session)
            ledger.settle(attempt_id, status=status, now=at, processor_id=processor_id)
            row = session.get(PaymentAttempt, attempt_id)
            assert row is not None
            attempt = ledger.attempt(row.call_sid, row.attempt_no)
            assert attempt is not None
            payment = ledger.record_payment(attempt, processor_id=processor_id, status=status, now=at)
        return Recorded(attempt_id, payment.id, payment.confirmation)

    def settle(
        self,
        attempt_id: str,
        status: AttemptStatus,
        *,
        at: datetime,
        processor_id: str | None = None,
        decline_code: str | None = None,
    ) -> Recorded:
        """An answer without money taken (``declined``, ``failed``), or none (``unknown``)."""
        if status in ("succeeded", "processing"):
            raise ValueError("use succeed(): money taken means a Payment")
        with self._sessions() as session, session.begin():
            SqlLedger(session).settle(
                attempt_id, status=status, now=at, processor_id=processor_id, decline_code=decline_code
            )
        return Recorded(attempt_id)

    def pay(
        self,
        account_id: int,
        amount_cents: int,
        *,
        at: datetime,
        processor_id: str | None = None,
        method: tuple[str, str, str] = VISA_4242,
        call_sid: str | None = None,
    ) -> Recorded:
        """A whole succeeded payment; ``processor_id`` made up when not given."""
        attempt_id = self.begin_attempt(account_id, amount_cents, at=at, method=method, call_sid=call_sid)
        return self.succeed(attempt_id, processor_id or f"pi_{secrets.token_hex(12)}", at=at)

    def record_charge(self, attempt_id: str, result: ChargeResult, *, at: datetime) -> Recorded:
        """Record a real charge made under ``attempt_id`` as the flow would."""
        return self.succeed(attempt_id, result.processor_id, at=at, status=result.status)


def tamper_payment(sessions: sessionmaker[Session], payment_id: int, **values: object) -> None:
    """Change a payment behind the flow's back (what reconcile must catch)."""
    with sessions() as session, session.begin():
        session.execute(update(Payment).where(Payment.id == payment_id).values(**values))


def tamper_attempt(sessions: sessionmaker[Session], attempt_id: str, **values: object) -> None:
    """Change an attempt behind the flow's back."""
    with sessions() as session, session.begin():
        session.execute(update(PaymentAttempt).where(PaymentAttempt.id == attempt_id).values(**values))
