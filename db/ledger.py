"""The payment ledger: attempts written before the processor is called, payments taken.

An attempt's id is the processor's idempotency key and ``(call_sid, attempt_no)`` is
unique, so a replayed confirm can only ever find the attempt it already made. Charges
for one account are serialized by ``lock_account`` (a row lock held until commit).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Account, Payment, PaymentAttempt
from ivr.flows.ports import AttemptStatus, AttemptView, MethodRef, PaymentView

# Payments that reduce the balance: taken, or accepted and settling (bank debits).
COUNTED_PAYMENT_STATUSES = ("succeeded", "processing")
CONFIRMATION_DIGITS = 10


def new_attempt_id() -> str:
    return "pa_" + secrets.token_hex(12)


def _attempt(row: PaymentAttempt) -> AttemptView:
    return AttemptView(
        id=row.id,
        call_sid=row.call_sid,
        attempt_no=row.attempt_no,
        account_id=row.account_id,
        amount_cents=row.amount_cents,
        status=cast(AttemptStatus, row.status),
        processor_id=row.processor_id,
        method=MethodRef(row.method_processor_id, row.method_brand, row.method_last4),
        opened_at=row.created_at,
    )


class SqlLedger:
    """Implements ``ivr.flows.ports.Ledger``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def lock_account(self, account_id: int) -> None:
        """Serialize charges for one account until the transaction ends (PostgreSQL row
        lock, ``FOR NO KEY UPDATE`` so rows that reference the account can still be
        inserted; SQLite's writers are serialized by ``BEGIN IMMEDIATE``)."""
        self._session.scalar(
            select(Account.id).where(Account.id == account_id).with_for_update(key_share=True)
        )

    def attempt(self, call_sid: str, attempt_no: int) -> AttemptView | None:
        row = self._session.scalar(
            select(PaymentAttempt).where(
                PaymentAttempt.call_sid == call_sid, PaymentAttempt.attempt_no == attempt_no
            )
        )
        return None if row is None else _attempt(row)

    def attempt_by_id(self, attempt_id: str) -> AttemptView | None:
        row = self._session.get(PaymentAttempt, attempt_id)
        return None if row is None else _attempt(row)

    def open_attempt(
        self,
        *,
        call_sid: str,
        attempt_no: int,
        account_id: int,
        amount_cents: int,
        method: MethodRef,
        caller: str | None,
        now: datetime,
    ) -> AttemptView:
        """Write a pending attempt; the one already there for ``(call_sid, attempt_no)``
        is returned instead (a replay), never a second one."""
        row = PaymentAttempt(
            id=new_attempt_id(),
            call_sid=call_sid,
            attempt_no=attempt_no,
            account_id=account_id,
            amount_cents=amount_cents,
            method_processor_id=method.processor_id,
            method_brand=method.brand,
            method_last4=method.last4,
            caller=caller,
            status="pending",
            created_at=now,
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError:
            existing = self.attempt(call_sid, attempt_no)
            if existing is None:
                raise
            return existing
        return _attempt(row)

    def settle(
        self,
        attempt_id: str,
        *,
        status: AttemptStatus,
        now: datetime,
        processor_id: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        row = self._session.get(PaymentAttempt, attempt_id)
        if row is None:
            raise LookupError(f"no payment attempt {attempt_id}")
        row.status = status
        row.processor_id = processor_id or row.processor_id
        row.decline_code = decline_code
        row.completed_at = now
        self._session.flush()

    def record_payment(
        self, attempt: AttemptView, *, processor_id: str, status: str, now: datetime
    ) -> PaymentView:
        """The payment for a succeeded (or settling) attempt, with a random confirmation
        number of digits only: unique, and not guessable from the one before."""
        existing = self._session.scalar(select(Payment).where(Payment.attempt_id == attempt.id))
        if existing is not None:
            return _payment(existing)
        for _ in range(5):
            row = Payment(
                attempt_id=attempt.id,
                account_id=attempt.account_id,
                amount_cents=attempt.amount_cents,
                confirmation=_confirmation_number(),
                processor_id=processor_id,
                status=status,
                taken_at=now,
            )
            try:
                with self._session.begin_nested():
                    self._session.add(row)
            except IntegrityError:
                if self._session.scalar(select(Payment.id).where(Payment.attempt_id == attempt.id)):
                    raise
                continue  # a confirmation number already issued: draw again
            return _payment(row)
        raise RuntimeError("could not draw an unused confirmation number")

    def last_payment(self, account_id: int) -> PaymentView | None:
        row = self._session.scalar(
            select(Payment)
            .where(Payment.account_id == account_id)
            .order_by(Payment.taken_at.desc(), Payment.id.desc())
            .limit(1)
        )
        return None if row is None else _payment(row)

    def last_paid_method(self, account_id: int) -> str | None:
        """The processor id of the method the account's latest payment was taken with."""
        return self._session.scalar(
            select(PaymentAttempt.method_processor_id)
            .join(Payment, Payment.attempt_id == PaymentAttempt.id)
            .where(Payment.account_id == account_id)
            .order_by(Payment.taken_at.desc(), Payment.id.desc())
            .limit(1)
        )

    def declines_since(
        self, since: datetime, *, account_id: int | None = None, caller: str | None = None
    ) -> int:
        query = select(func.count()).select_from(PaymentAttempt).where(
            PaymentAttempt.status == "declined", PaymentAttempt.created_at >= since
        )
        if account_id is not None:
            query = query.where(PaymentAttempt.account_id == account_id)
        if caller is not None:
            query = query.where(PaymentAttempt.caller == caller)
        return int(self._session.scalar(query) or 0)


def _payment(row: Payment) -> PaymentView:
    return PaymentView(
        id=row.id,
        amount_cents=row.amount_cents,
        confirmation=row.confirmation,
        taken_at=row.taken_at,
        status=row.status,
    )


def _confirmation_number() -> str:
    # First digit 1-9 so the number never loses a leading zero in a spreadsheet.
    return str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(CONFIRMATION_DIGITS - 1)
    )
