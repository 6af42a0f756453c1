"""The payment ledger: attempts written before the processor is called, payments taken.

An attempt's id is the processor's idempotency key and ``(call_sid, attempt_no)`` is
unique, so a replayed confirm can only ever find the attempt it already made. Charges
for one account are serialized by ``lock_account`` (a row lock held until commit).

Every statement runs on every confirm (a webhook step), so each is built once here, as
a Core statement with bind parameters, and executed on the session's connection: no
ORM unit of work, no identity map, no savepoint. Where a unique constraint decides
(one attempt per confirm screen, one payment per attempt) the insert says so itself
(``ON CONFLICT DO NOTHING RETURNING``) instead of a read before it or a savepoint
around it; PostgreSQL and SQLite (3.35+) both speak it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Executable, Row, Table, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from db.models import Account, Payment, PaymentAttempt
from ivr.flows.ports import AttemptStatus, AttemptView, Declines, MethodRef, PaymentView

# Payments that reduce the balance: taken, or accepted and settling (bank debits).
COUNTED_PAYMENT_STATUSES = ("succeeded", "processing")
CONFIRMATION_DIGITS = 10
CONFIRMATION_DRAWS = 5

_ATTEMPTS = cast(Table, PaymentAttempt.__table__)
_PAYMENTS = cast(Table, Payment.__table__)
_ACCOUNTS = cast(Table, Account.__table__)

_ATTEMPT_COLUMNS = (
    _ATTEMPTS.c.id,
    _ATTEMPTS.c.call_sid,
    _ATTEMPTS.c.attempt_no,
    _ATTEMPTS.c.account_id,
    _ATTEMPTS.c.amount_cents,
    _ATTEMPTS.c.status,
    _ATTEMPTS.c.processor_id,
    _ATTEMPTS.c.method_processor_id,
    _ATTEMPTS.c.method_brand,
    _ATTEMPTS.c.method_last4,
    _ATTEMPTS.c.created_at,
)
_PAYMENT_COLUMNS = (
    _PAYMENTS.c.id,
    _PAYMENTS.c.amount_cents,
    _PAYMENTS.c.confirmation,
    _PAYMENTS.c.taken_at,
    _PAYMENTS.c.status,
)

# PostgreSQL: FOR NO KEY UPDATE, so rows that reference the account can still be inserted.
_LOCK_ACCOUNT = (
    select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.id == bindparam("account_id")).with_for_update(key_share=True)
)
_ATTEMPT_BY_CONFIRM = select(*_ATTEMPT_COLUMNS).where(
    _ATTEMPTS.c.call_sid == bindparam("call_sid"), _ATTEMPTS.c.attempt_no == bindparam("attempt_no")
)
_ATTEMPT_BY_ID = select(*_ATTEMPT_COLUMNS).where(_ATTEMPTS.c.id == bindparam("attempt_id"))
_SETTLE = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"))
    .values(
        status=bindparam("new_status"),
        processor_id=func.coalesce(bindparam("new_processor_id", type_=_ATTEMPTS.c.processor_id.type),
                                   _ATTEMPTS.c.processor_id),
        decline_code=bindparam("new_decline_code"),
        completed_at=bindparam("settled_at"),
    )
)
_PAYMENT_OF_ATTEMPT = select(*_PAYMENT_COLUMNS).where(_PAYMENTS.c.attempt_id == bindparam("attempt_id"))
_LAST_PAYMENT = (
    select(*_PAYMENT_COLUMNS)
    .where(_PAYMENTS.c.account_id == bindparam("account_id"))
    .order_by(_PAYMENTS.c.taken_at.desc(), _PAYMENTS.c.id.desc())
    .limit(1)
)
# Both caps of the card-testing guard (SECURITY 15a) in one read. Each side of the OR is
# served by its own index (the account's: account_id, created_at; the caller's:
# caller, status, created_at, migration 0007), so the count reads only what it counts.
_DECLINES = select(
    func.count().filter(_ATTEMPTS.c.account_id == bindparam("account_id")).label("account"),
    func.count().filter(_ATTEMPTS.c.caller == bindparam("caller")).label("caller"),
).where(
    _ATTEMPTS.c.status == "declined",
    _ATTEMPTS.c.created_at >= bindparam("since"),
    or_(_ATTEMPTS.c.account_id == bindparam("account_id"), _ATTEMPTS.c.caller == bindparam("caller")),
)

_Insert = Callable[[Table], Any]


def _per_dialect(build: Callable[[_Insert], Executable]) -> dict[str, Executable]:
    """``INSERT ... ON CONFLICT`` is dialect syntax: the statement built once for each."""
    return {"postgresql": build(postgresql.insert), "sqlite": build(sqlite.insert)}


# A replayed confirm meets the unique (call_sid, attempt_no) and inserts nothing.
_INSERT_ATTEMPT = _per_dialect(
    lambda insert: insert(_ATTEMPTS)
    .on_conflict_do_nothing(index_elements=["call_sid", "attempt_no"])
    .returning(_ATTEMPTS.c.id)
)
# The payment of an attempt already paid (unique attempt_id), or a confirmation number
# already issued (unique confirmation): nothing inserted, and the caller looks at which.
_INSERT_PAYMENT = _per_dialect(
    lambda insert: insert(_PAYMENTS).on_conflict_do_nothing().returning(_PAYMENTS.c.id)
)


def new_attempt_id() -> str:
    return "pa_" + secrets.token_hex(12)


def _attempt(row: Row[*tuple[Any, ...]]) -> AttemptView:
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


def _payment(row: Row[*tuple[Any, ...]]) -> PaymentView:
    return PaymentView(
        id=row.id,
        amount_cents=row.amount_cents,
        confirmation=row.confirmation,
        taken_at=row.taken_at,
        status=row.status,
    )


class SqlLedger:
    """Implements ``ivr.flows.ports.Ledger``, inside the session's transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _conn(self) -> Connection:
        return self._session.connection()

    def lock_account(self, account_id: int) -> None:
        """Serialize charges for one account until the transaction ends (PostgreSQL row
        lock, ``FOR NO KEY UPDATE`` so rows that reference the account can still be
        inserted; SQLite's writers are serialized by ``BEGIN IMMEDIATE``)."""
        self._conn().execute(_LOCK_ACCOUNT, {"account_id": account_id})

    def attempt(self, call_sid: str, attempt_no: int) -> AttemptView | None:
        row = self._conn().execute(
            _ATTEMPT_BY_CONFIRM, {"call_sid": call_sid, "attempt_no": attempt_no}
        ).one_or_none()
        return None if row is None else _attempt(row)

    def attempt_by_id(self, attempt_id: str) -> AttemptView | None:
        row = self._conn().execute(_ATTEMPT_BY_ID, {"attempt_id": attempt_id}).one_or_none()
        return None if row is None else _attempt(row)

    def try_open_attempt(
        self,
        *,
        call_sid: str,
        attempt_no: int,
        account_id: int,
        amount_cents: int,
        method: MethodRef,
        caller: str | None,
        now: datetime,
    ) -> AttemptView | None:
        """Write a pending attempt; None when ``(call_sid, attempt_no)`` has one already
        (a replay), which is left as it is. One statement either way."""
        conn = self._conn()
        attempt_id = new_attempt_id()
        inserted = conn.execute(
            _INSERT_ATTEMPT[conn.dialect.name],
            {
                "id": attempt_id,
                "call_sid": call_sid,
                "attempt_no": attempt_no,
                "account_id": account_id,
                "amount_cents": amount_cents,
                "currency": "usd",
                "method_processor_id": method.processor_id,
                "method_brand": method.brand,
                "method_last4": method.last4,
                "caller": caller,
                "status": "pending",
                "created_at": now,
            },
        ).scalar_one_or_none()
        if inserted is None:
            return None
        return AttemptView(
            id=attempt_id,
            call_sid=call_sid,
            attempt_no=attempt_no,
            account_id=account_id,
            amount_cents=amount_cents,
            status="pending",
            processor_id=None,
            method=method,
            opened_at=now,
        )

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
        opened = self.try_open_attempt(
            call_sid=call_sid,
            attempt_no=attempt_no,
            account_id=account_id,
            amount_cents=amount_cents,
            method=method,
            caller=caller,
            now=now,
        )
        if opened is not None:
            return opened
        existing = self.attempt(call_sid, attempt_no)
        if existing is None:  # pragma: no cover - the conflict was on this very key
            raise RuntimeError("a conflicting payment attempt vanished")
        return existing

    def settle(
        self,
        attempt_id: str,
        *,
        status: AttemptStatus,
        now: datetime,
        processor_id: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        """Record an attempt's outcome (one UPDATE; a processor id already on the row is
        kept when none is given)."""
        result = self._conn().execute(
            _SETTLE,
            {
                "attempt_id": attempt_id,
                "new_status": status,
                "new_processor_id": processor_id or None,
                "new_decline_code": decline_code,
                "settled_at": now,
            },
        )
        if result.rowcount == 0:
            raise LookupError(f"no payment attempt {attempt_id}")

    def record_payment(
        self, attempt: AttemptView, *, processor_id: str, status: str, now: datetime
    ) -> PaymentView:
        """The payment for a succeeded (or settling) attempt, with a random confirmation
        number of digits only: unique, and not guessable from the one before. The
        attempt's payment already there (a replay) is returned instead."""
        conn = self._conn()
        insert = _INSERT_PAYMENT[conn.dialect.name]
        for _ in range(CONFIRMATION_DRAWS):
            confirmation = _confirmation_number()
            payment_id = conn.execute(
                insert,
                {
                    "attempt_id": attempt.id,
                    "account_id": attempt.account_id,
                    "amount_cents": attempt.amount_cents,
                    "confirmation": confirmation,
                    "processor_id": processor_id,
                    "status": status,
                    "taken_at": now,
                },
            ).scalar_one_or_none()
            if payment_id is not None:
                return PaymentView(payment_id, attempt.amount_cents, confirmation, now, status)
            existing = conn.execute(_PAYMENT_OF_ATTEMPT, {"attempt_id": attempt.id}).one_or_none()
            if existing is not None:
                return _payment(existing)
            # A confirmation number already issued (or the processor's id on another
            # payment, which no new number cures: the draws run out and say so).
        raise RuntimeError("could not draw an unused confirmation number")

    def last_payment(self, account_id: int) -> PaymentView | None:
        row = self._conn().execute(_LAST_PAYMENT, {"account_id": account_id}).one_or_none()
        return None if row is None else _payment(row)

    def declines(self, since: datetime, *, account_id: int | None, caller: str | None) -> Declines:
        """Declined attempts since ``since`` on the account and from the caller's number,
        in one read (None counts nothing on that side)."""
        row = self._conn().execute(
            _DECLINES, {"since": since, "account_id": account_id, "caller": caller}
        ).one()
        return Declines(account=int(row.account or 0), caller=int(row.caller or 0))


def _confirmation_number() -> str:
    # First digit 1-9 so the number never loses a leading zero in a spreadsheet.
    return str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(CONFIRMATION_DIGITS - 1)
    )
