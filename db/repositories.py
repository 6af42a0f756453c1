"""SQLAlchemy implementations of the flow's ports (``ivr.flows.ports``) and the unit of work.

Counters are changed by single conditional ``UPDATE`` statements, never read and then
written: on PostgreSQL the second of two simultaneous updates waits for the first's row
lock and re-checks its ``WHERE`` against the new row; on SQLite every transaction starts
with ``BEGIN IMMEDIATE`` (``db.engine``), so writers are serialized. Either way two calls
cannot both get an account's last try.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, SessionTransaction

from db import audit_sealer
from db.ledger import COUNTED_PAYMENT_STATUSES
from db.models import Account, AuditEvent, Base, Call, CallerThrottle, Payment, Phone, PinCredential
from db.types import UTCDateTime
from ivr.flows.ports import AccountRef, AccountSummary, AccountType, CallRecord, Credential, PinOrigin
from ivr.metrics import observe_trail

__all__ = [
    "AccountNotFound",
    "CallNotFound",
    "SqlAccounts",
    "SqlCalls",
    "SqlCredentials",
    "SqlEvents",
]


class AccountNotFound(LookupError):
    """No account with that id."""


class CallNotFound(LookupError):
    """No call with that CallSid."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


_NO_SYNC = {"synchronize_session": False}
_UNCAPPED = 2**31 - 1  # a count that never stops counting (the column is an INTEGER)


# --- accounts -------------------------------------------------------------------------


def _balance_cents(session: Session, account: Account) -> int:
    """The balance the flow speaks and charges against: the imported balance less the
    payments taken since that import (``balance_as_of``). This is the one place."""
    paid = session.scalar(
        select(func.coalesce(func.sum(Payment.amount_cents), 0)).where(
            Payment.account_id == account.id,
            Payment.taken_at >= account.balance_as_of,
            Payment.status.in_(COUNTED_PAYMENT_STATUSES),
        )
    )
    return account.balance_cents - int(paid or 0)


def _summary(session: Session, account: Account) -> AccountSummary:
    return AccountSummary(
        id=account.id,
        number=account.account_number,
        account_type=cast(AccountType, account.account_type),
        has_ssn=account.ssn_hash is not None,
        language=account.language,
        balance_cents=_balance_cents(session, account),
        past_due_cents=account.past_due_cents,
        due_date=account.due_date,
        email=account.email,
    )


def account_number_order() -> tuple[ColumnElement[int], InstrumentedAttribute[str]]:
    """Account numbers are digit strings of varying length: shorter is smaller."""
    return (func.length(Account.account_number), Account.account_number)


class SqlAccounts:
    """Implements ``ivr.flows.ports.Accounts``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def by_phone(self, e164: str, limit: int) -> list[AccountRef]:
        """One indexed query for ids, numbers and languages only: Call Capture runs it on
        every call and says nothing of the account but its last four digits."""
        rows = self._session.execute(
            select(Account.id, Account.account_number, Account.language)
            .join(Phone, Phone.account_id == Account.id)
            .where(Phone.e164 == e164)
            .order_by(*account_number_order())
            .limit(limit)
        )
        return [AccountRef(id=row.id, number=row.account_number, language=row.language) for row in rows]

    def by_number(self, account_number: str) -> AccountSummary | None:
        account = self._session.scalar(select(Account).where(Account.account_number == account_number))
        return None if account is None else _summary(self._session, account)

    def get(self, account_id: int) -> AccountSummary:
        account = self._session.get(Account, account_id)
        if account is None:
            raise AccountNotFound(f"no account with id {account_id}")
        return _summary(self._session, account)


# --- PIN credentials and throttles -----------------------------------------------------


def _insert(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of the session's dialect, which can be told to ignore conflicts."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database: {dialect}")


def _windowed_count(
    count: InstrumentedAttribute[int],
    started: InstrumentedAttribute[Any],
    now: datetime,
    limit: int,
    window: timedelta,
) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """The condition and the new values of "count one failure in the current window".

    A window opens at a failure and lasts ``window``; within it at most ``limit`` failures
    are counted. Once it is over, the next failure opens a new one with a count of 1.
    """
    now_param = bindparam("now_value", now, type_=UTCDateTime())
    expired = or_(started.is_(None), started < bindparam("cutoff", now - window, type_=UTCDateTime()))
    allowed = or_(count < limit, expired)
    values = {
        count.key: case((expired, literal(1)), else_=count + 1),
        started.key: case((expired, now_param), else_=started),
    }
    return allowed, values


class SqlCredentials:
    """Implements ``ivr.flows.ports.Credentials``.

    An account without a ``pin_credentials`` row is treated as having no PIN (origin
    ``none``); the row is created when first needed.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def _ensure_row(self, account_id: int) -> None:
        """Create the account's credential row if missing; nothing for an unknown account."""
        source = select(Account.id, literal("none"), literal(0)).where(Account.id == account_id)
        stmt = _insert(self._session, _table(PinCredential)).from_select(
            ["account_id", "origin", "failure_count"], source
        )
        self._session.execute(stmt.on_conflict_do_nothing())

    def _update(self, account_id: int, *where: ColumnElement[bool], **values: Any) -> int:
        stmt = update(PinCredential).where(PinCredential.account_id == account_id, *where).values(**values)
        return _rowcount(self._session.execute(stmt, execution_options=_NO_SYNC))

    def get(self, account_id: int) -> Credential:
        row = self._session.execute(
            select(
                Account.ssn_hash,
                PinCredential.pin_hash,
                PinCredential.origin,
                PinCredential.failure_count,
                PinCredential.locked_at,
                PinCredential.changed_at,
            )
            .outerjoin(PinCredential, PinCredential.account_id == Account.id)
            .where(Account.id == account_id)
        ).one_or_none()
        if row is None:
            raise AccountNotFound(f"no account with id {account_id}")
        return Credential(
            account_id=account_id,
            pin_hash=row.pin_hash,
            origin=cast(PinOrigin, row.origin or "none"),
            ssn_hash=row.ssn_hash,
            failure_count=row.failure_count or 0,
            locked=row.locked_at is not None,
            changed_at=row.changed_at,
        )

    def reserve_attempt(self, account_id: int, now: datetime, limit: int, window: timedelta) -> bool:
        self._ensure_row(account_id)
        allowed, values = _windowed_count(
            PinCredential.failure_count, PinCredential.window_started_at, now, limit, window
        )
        return self._update(account_id, PinCredential.locked_at.is_(None), allowed, **values) == 1

    def release_attempt(self, account_id: int) -> None:
        self._update(
            account_id,
            PinCredential.failure_count > 0,
            failure_count=PinCredential.failure_count - 1,
        )

    def lock_if_exhausted(self, account_id: int, now: datetime, limit: int) -> bool:
        self._update(
            account_id,
            PinCredential.locked_at.is_(None),
            PinCredential.failure_count >= limit,
            locked_at=now,
        )
        locked_at = self._session.scalar(
            select(PinCredential.locked_at).where(PinCredential.account_id == account_id)
        )
        return locked_at is not None

    def set_pin(self, account_id: int, pin_hash: str, origin: PinOrigin, now: datetime) -> None:
        if origin == "none":
            raise ValueError("a PIN is set with origin 'member' or 'legacy'; use reset() to clear")
        self._ensure_row(account_id)
        if not self._update(account_id, pin_hash=pin_hash, origin=origin, changed_at=now):
            raise AccountNotFound(f"no account with id {account_id}")

    def replace_hash(self, account_id: int, pin_hash: str) -> None:
        if not self._update(account_id, PinCredential.pin_hash.is_not(None), pin_hash=pin_hash):
            raise ValueError(f"account {account_id} has no PIN to rehash")

    def reset(self, account_id: int, now: datetime) -> None:
        self._ensure_row(account_id)
        cleared = self._update(
            account_id,
            pin_hash=None,
            origin="none",
            changed_at=now,
            failure_count=0,
            window_started_at=None,
            locked_at=None,
        )
        if not cleared:
            raise AccountNotFound(f"no account with id {account_id}")

    def unlock(self, account_id: int, now: datetime) -> None:
        self._ensure_row(account_id)
        if not self._update(account_id, failure_count=0, window_started_at=None, locked_at=None):
            raise AccountNotFound(f"no account with id {account_id}")

    def reserve_caller_attempt(self, caller: str, now: datetime, limit: int, window: timedelta) -> bool:
        row = _insert(self._session, _table(CallerThrottle)).values(
            caller=caller, failure_count=0, window_started_at=now
        )
        self._session.execute(row.on_conflict_do_nothing())
        allowed, values = _windowed_count(
            CallerThrottle.failure_count, CallerThrottle.window_started_at, now, limit, window
        )
        stmt = update(CallerThrottle).where(CallerThrottle.caller == caller, allowed).values(**values)
        return _rowcount(self._session.execute(stmt, execution_options=_NO_SYNC)) == 1

    def release_caller_attempt(self, caller: str) -> None:
        stmt = (
            update(CallerThrottle)
            .where(CallerThrottle.caller == caller, CallerThrottle.failure_count > 0)
            .values(failure_count=CallerThrottle.failure_count - 1)
        )
        self._session.execute(stmt, execution_options=_NO_SYNC)

    def count_failure(self, key: str, now: datetime, window: timedelta) -> int:
        # The same row and window as a caller number's, without a cap; only failures
        # are counted (never reserved before verifying), so the row is written, and
        # locked until the step commits, only by a call that just failed.
        row = _insert(self._session, _table(CallerThrottle)).values(
            caller=key, failure_count=0, window_started_at=now
        )
        self._session.execute(row.on_conflict_do_nothing())
        _allowed, values = _windowed_count(
            CallerThrottle.failure_count, CallerThrottle.window_started_at, now, _UNCAPPED, window
        )
        stmt = update(CallerThrottle).where(CallerThrottle.caller == key).values(**values)
        self._session.execute(stmt, execution_options=_NO_SYNC)
        count = self._session.scalar(select(CallerThrottle.failure_count).where(CallerThrottle.caller == key))
        return int(count or 0)


# --- calls ----------------------------------------------------------------------------

_CALL_FIELDS = (
    "from_number",
    "to_number",
    "state",
    "started_at",
    "language",
    "step",
    "account_id",
    "verified",
    "data",
    "status",
    "outcome",
    "ended_at",
)


def _record(call: Call) -> CallRecord:
    """A detached copy: the flow may change ``data`` in place without touching the row."""
    fields = {name: getattr(call, name) for name in _CALL_FIELDS}
    fields["data"] = copy.deepcopy(call.data)
    return CallRecord(call_sid=call.call_sid, **fields)


def _fields(record: CallRecord) -> dict[str, Any]:
    fields = {name: getattr(record, name) for name in _CALL_FIELDS}
    fields["data"] = copy.deepcopy(record.data)
    return fields


class SqlCalls:
    """Implements ``ivr.flows.ports.Calls``."""

    def __init__(self, session: Session, clock: Callable[[], datetime] = utcnow) -> None:
        self._session = session
        self._now = clock

    def load_for_update(self, call_sid: str) -> CallRecord | None:
        call = self._session.scalar(
            select(Call)
            .where(Call.call_sid == call_sid)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return None if call is None else _record(call)

    def create(self, record: CallRecord) -> CallRecord:
        call = Call(call_sid=record.call_sid, updated_at=self._now(), **_fields(record))
        try:
            with self._session.begin_nested():
                self._session.add(call)
        except IntegrityError:
            stored = self.load_for_update(record.call_sid)
            if stored is None:  # refused for another reason than a replay
                raise
            return stored
        return _record(call)

    def save(self, record: CallRecord) -> None:
        stmt = (
            update(Call)
            .where(Call.call_sid == record.call_sid)
            .values(updated_at=self._now(), **_fields(record))
        )
        if not _rowcount(self._session.execute(stmt, execution_options=_NO_SYNC)):
            raise CallNotFound(f"no call {record.call_sid}")


# --- audit events ---------------------------------------------------------------------


class PendingEvent(NamedTuple):
    """A trail event recorded in a transaction, written at its commit (unsealed)."""

    occurred_at: datetime
    event: str
    call_sid: str | None
    account_id: int | None
    actor: str | None
    os_user: str | None
    host: str | None
    process: str | None
    success: bool
    detail: dict[str, Any]


# One multi-row INSERT of a commit's events, built once. RETURNING makes SQLAlchemy send
# the rows as one INSERT ... VALUES (...), (...) ("insertmanyvalues"); the chain fields
# stay NULL until the sealer sets them.
_INSERT_EVENTS = insert(_table(AuditEvent)).returning(_table(AuditEvent).c.id)


class SqlEvents:
    """Implements ``ivr.flows.ports.Events``: appends to the ``audit_events`` trail.

    ``record`` only buffers the event (with its time); the buffer is inserted, unsealed,
    when the session commits, and dropped when it rolls back. ``SqlUnitOfWork.commit``
    calls ``write_pending``; a session committed on its own does the same through its
    ``before_commit`` event. After the commit the session's sealer is told
    (``db.audit_sealer``); on SQLite the events are sealed inside the transaction.
    """

    def __init__(
        self,
        session: Session,
        process: str,
        os_user: str | None = None,
        host: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session = session
        self._process = process
        self._os_user = os_user
        self._host = host
        self._now = clock
        self._pending: list[PendingEvent] = []
        self._written = False  # events inserted in this transaction, to seal after it
        sa_event.listen(session, "before_commit", self._before_commit)
        sa_event.listen(session, "after_commit", self._after_commit)
        sa_event.listen(session, "after_soft_rollback", self._after_rollback)

    def record(
        self,
        event: str,
        *,
        call_sid: str | None = None,
        account_id: int | None = None,
        actor: str | None = None,
        success: bool = True,
        **detail: Any,
    ) -> None:
        try:
            json.dumps(detail)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"audit detail of {event!r} is not JSON-serializable: {exc}") from None
        self._pending.append(
            PendingEvent(
                occurred_at=self._now(),
                event=event,
                call_sid=call_sid,
                account_id=account_id,
                actor=actor,
                os_user=self._os_user,
                host=self._host,
                process=self._process,
                success=success,
                detail=detail,
            )
        )

    @property
    def pending(self) -> int:
        """Events recorded and not yet written."""
        return len(self._pending)

    def write_pending(self) -> None:
        """Insert the buffered events, unsealed, in one statement; no lock, no head read.

        On SQLite (one writer at a time, ``BEGIN IMMEDIATE``) they are sealed here, in
        this transaction; on PostgreSQL by the sealer once the transaction commits.
        """
        pending, self._pending = self._pending, []
        if not pending:
            return
        self._session.execute(_INSERT_EVENTS, [event._asdict() for event in pending])
        if self._session.get_bind().dialect.name == "sqlite":
            audit_sealer.seal_in_transaction(self._session.connection())
        else:
            self._written = True
        observe_trail(pending)

    def discard_pending(self) -> None:
        self._pending.clear()

    def _before_commit(self, session: Session) -> None:
        if not session.in_nested_transaction():  # a savepoint's release is not the commit
            self.write_pending()

    def _after_commit(self, session: Session) -> None:
        if self._written:
            self._written = False
            audit_sealer.committed(session)

    def _after_rollback(self, _session: Session, previous: SessionTransaction) -> None:
        if previous.parent is None:  # the transaction, not a savepoint inside it
            self.discard_pending()
            self._written = False
