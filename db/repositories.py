"""SQLAlchemy implementations of the flow's ports (``ivr.flows.ports``) and the unit of work.

The accounts, PIN credentials and calls are read and written on every webhook, so they
run prebuilt SQLAlchemy Core statements (module constants, compiled once and cached)
on the session's connection, and return the ports' dataclasses directly: no ORM entity
is loaded or flushed on these paths (docs/decisions/0009-hot-path-on-core.md).

Counters are changed by single conditional statements, never read and then written: on
PostgreSQL the second of two simultaneous upserts or updates waits for the first's row
lock and re-checks its condition against the new row; on SQLite every transaction starts
with ``BEGIN IMMEDIATE`` (``db.engine``), so writers are serialized. Either way two calls
cannot both get an account's last try.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    CursorResult,
    Executable,
    Integer,
    Table,
    and_,
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
from sqlalchemy.orm import Session, SessionTransaction

from db import audit_sealer, step_commit
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


_DIALECTS = ("postgresql", "sqlite")

_accounts = _table(Account)
_payments = _table(Payment)
_phones = _table(Phone)
_credentials = _table(PinCredential)
_throttles = _table(CallerThrottle)
_calls = _table(Call)


def _per_dialect(build: Callable[[Any], Executable]) -> dict[str, Executable]:
    """One prebuilt statement per supported dialect, for the ``ON CONFLICT`` clauses."""
    inserts = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    return {name: build(inserts[name]) for name in _DIALECTS}


def _run(session: Session, statement: Executable, params: Mapping[str, Any]) -> CursorResult[Any]:
    return session.connection().execute(statement, params)


def _run_upsert(
    session: Session, statements: Mapping[str, Executable], params: Mapping[str, Any]
) -> CursorResult[Any]:
    connection: Connection = session.connection()
    dialect = connection.dialect.name
    if dialect not in statements:
        raise NotImplementedError(f"unsupported database: {dialect}")
    return connection.execute(statements[dialect], params)


# --- accounts -------------------------------------------------------------------------

# The balance the flow speaks and charges against: the imported balance less the payments
# taken since that import (``balance_as_of``). This is the one place.
_PAID_SINCE_IMPORT = (
    select(func.coalesce(func.sum(_payments.c.amount_cents), 0))
    .where(
        _payments.c.account_id == _accounts.c.id,
        _payments.c.taken_at >= _accounts.c.balance_as_of,
        _payments.c.status.in_(COUNTED_PAYMENT_STATUSES),
    )
    .correlate(_accounts)
    .scalar_subquery()
    .label("paid_cents")
)
_SUMMARY = select(
    _accounts.c.id,
    _accounts.c.account_number,
    _accounts.c.account_type,
    _accounts.c.ssn_hash.is_not(None).label("has_ssn"),
    _accounts.c.language,
    _accounts.c.balance_cents,
    _PAID_SINCE_IMPORT,
    _accounts.c.past_due_cents,
    _accounts.c.due_date,
    _accounts.c.email,
)
_ACCOUNT_BY_ID = _SUMMARY.where(_accounts.c.id == bindparam("p_account_id"))
_ACCOUNT_BY_NUMBER = _SUMMARY.where(_accounts.c.account_number == bindparam("p_account_number"))


def account_number_order() -> tuple[ColumnElement[int], ColumnElement[str]]:
    """Account numbers are digit strings of varying length: shorter is smaller."""
    return (func.length(_accounts.c.account_number), _accounts.c.account_number)


_ACCOUNTS_BY_PHONE = (
    select(_accounts.c.id, _accounts.c.account_number, _accounts.c.language)
    .join(_phones, _phones.c.account_id == _accounts.c.id)
    .where(_phones.c.e164 == bindparam("p_e164"))
    .order_by(*account_number_order())
    .limit(bindparam("p_limit"))
)


def _summary(row: Any) -> AccountSummary:
    return AccountSummary(
        id=row.id,
        number=row.account_number,
        account_type=cast(AccountType, row.account_type),
        has_ssn=bool(row.has_ssn),
        language=row.language,
        balance_cents=int(row.balance_cents) - int(row.paid_cents or 0),
        past_due_cents=int(row.past_due_cents),
        due_date=row.due_date,
        email=row.email,
    )


class SqlAccounts:
    """Implements ``ivr.flows.ports.Accounts``: one statement per read, balance included."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def by_phone(self, e164: str, limit: int) -> list[AccountRef]:
        """One indexed query for ids, numbers and languages only: Call Capture runs it on
        every call and says nothing of the account but its last four digits."""
        rows = _run(self._session, _ACCOUNTS_BY_PHONE, {"p_e164": e164, "p_limit": limit})
        return [AccountRef(id=row.id, number=row.account_number, language=row.language) for row in rows]

    def by_number(self, account_number: str) -> AccountSummary | None:
        row = _run(self._session, _ACCOUNT_BY_NUMBER, {"p_account_number": account_number}).first()
        return None if row is None else _summary(row)

    def get(self, account_id: int) -> AccountSummary:
        row = _run(self._session, _ACCOUNT_BY_ID, {"p_account_id": account_id}).first()
        if row is None:
            raise AccountNotFound(f"no account with id {account_id}")
        return _summary(row)


# --- PIN credentials and throttles -----------------------------------------------------

_NOW = bindparam("p_now", type_=UTCDateTime())
_CUTOFF = bindparam("p_cutoff", type_=UTCDateTime())
_LIMIT: BindParameter[int] = bindparam("p_limit", type_=Integer())


def _windowed(table: Table) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """The condition and the new values of "count one failure in the current window".

    A window opens at a failure and lasts ``window``; within it at most ``limit`` failures
    are counted (the condition; none for an uncapped count). Once it is over, the next
    failure opens a new one at 1.
    """
    count, started = table.c.failure_count, table.c.window_started_at
    expired = or_(started.is_(None), started < _CUTOFF)
    values = {
        "failure_count": case((expired, literal(1)), else_=count + 1),
        "window_started_at": case((expired, _NOW), else_=started),
    }
    return or_(count < _LIMIT, expired), values


_SSN_HASH = (
    select(_accounts.c.ssn_hash)
    .where(_accounts.c.id == bindparam("p_account_id"))
    .scalar_subquery()
    .label("ssn_hash")
)
_CREDENTIAL_COLUMNS = (
    _credentials.c.pin_hash,
    _credentials.c.origin,
    _credentials.c.failure_count,
    _credentials.c.locked_at,
    _credentials.c.changed_at,
)
_CREDENTIAL = (
    select(_accounts.c.ssn_hash, *_CREDENTIAL_COLUMNS)
    .select_from(_accounts.outerjoin(_credentials, _credentials.c.account_id == _accounts.c.id))
    .where(_accounts.c.id == bindparam("p_account_id"))
)


def _reserve_account(insert: Any) -> Executable:
    """Create the credential row counting this try, or count it in the existing row when
    it is unlocked and under the limit; the row as it stands after, or nothing."""
    allowed, values = _windowed(_credentials)
    source = select(_accounts.c.id, literal("none"), literal(1), _NOW).where(
        _accounts.c.id == bindparam("p_account_id")
    )
    statement: Executable = (
        insert(_credentials)
        .from_select(["account_id", "origin", "failure_count", "window_started_at"], source)
        .on_conflict_do_update(
            index_elements=[_credentials.c.account_id],
            set_=values,
            where=and_(_credentials.c.locked_at.is_(None), allowed),
        )
        .returning(_SSN_HASH, *_CREDENTIAL_COLUMNS)
    )
    return statement


def _count_key(capped: bool) -> Callable[[Any], Executable]:
    def build(insert: Any) -> Executable:
        allowed, values = _windowed(_throttles)
        statement: Executable = (
            insert(_throttles)
            .values(caller=bindparam("p_key"), failure_count=literal(1), window_started_at=_NOW)
            .on_conflict_do_update(
                index_elements=[_throttles.c.caller], set_=values, where=allowed if capped else None
            )
            .returning(_throttles.c.failure_count)
        )
        return statement

    return build


_RESERVE_ACCOUNT = _per_dialect(_reserve_account)
_RESERVE_KEY = _per_dialect(_count_key(capped=True))
_COUNT_KEY = _per_dialect(_count_key(capped=False))
_NEW_CREDENTIAL = select(_accounts.c.id, literal("none"), literal(0)).where(
    _accounts.c.id == bindparam("p_account_id")
)
_ENSURE_CREDENTIAL = _per_dialect(
    lambda insert: insert(_credentials)
    .from_select(["account_id", "origin", "failure_count"], _NEW_CREDENTIAL)
    .on_conflict_do_nothing()
)
_OF_ACCOUNT = _credentials.c.account_id == bindparam("p_account_id")
_RELEASE_ACCOUNT = (
    update(_credentials)
    .where(_OF_ACCOUNT, _credentials.c.failure_count > 0)
    .values(failure_count=_credentials.c.failure_count - 1)
)
_RELEASE_KEY = (
    update(_throttles)
    .where(_throttles.c.caller == bindparam("p_key"), _throttles.c.failure_count > 0)
    .values(failure_count=_throttles.c.failure_count - 1)
)
_LOCK_IF_EXHAUSTED = (
    update(_credentials)
    .where(_OF_ACCOUNT)
    .values(
        locked_at=case(
            (and_(_credentials.c.locked_at.is_(None), _credentials.c.failure_count >= _LIMIT), _NOW),
            else_=_credentials.c.locked_at,
        )
    )
    .returning(_credentials.c.locked_at)
)
_SET_PIN = (
    update(_credentials)
    .where(_OF_ACCOUNT)
    .values(
        pin_hash=bindparam("p_pin_hash"),
        origin=bindparam("p_origin"),
        changed_at=bindparam("p_changed_at", type_=UTCDateTime()),
    )
)
_REPLACE_HASH = (
    update(_credentials)
    .where(_OF_ACCOUNT, _credentials.c.pin_hash.is_not(None))
    .values(pin_hash=bindparam("p_pin_hash"))
)
_CLEAR_COUNTERS = {"failure_count": 0, "window_started_at": None, "locked_at": None}
_UNLOCK = update(_credentials).where(_OF_ACCOUNT).values(**_CLEAR_COUNTERS)
_RESET = (
    update(_credentials)
    .where(_OF_ACCOUNT)
    .values(
        pin_hash=None,
        origin="none",
        changed_at=bindparam("p_changed_at", type_=UTCDateTime()),
        **_CLEAR_COUNTERS,
    )
)


def _credential(account_id: int, row: Any) -> Credential:
    return Credential(
        account_id=account_id,
        pin_hash=row.pin_hash,
        origin=cast(PinOrigin, row.origin or "none"),
        ssn_hash=row.ssn_hash,
        failure_count=row.failure_count or 0,
        locked=row.locked_at is not None,
        changed_at=row.changed_at,
    )


class SqlCredentials:
    """Implements ``ivr.flows.ports.Credentials``.

    An account without a ``pin_credentials`` row is treated as having no PIN (origin
    ``none``); the row is created when first needed.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def _ensure_row(self, account_id: int) -> None:
        """Create the account's credential row if missing; nothing for an unknown account."""
        _run_upsert(self._session, _ENSURE_CREDENTIAL, {"p_account_id": account_id})

    def _update(self, statement: Executable, account_id: int, **params: Any) -> int:
        return _rowcount(_run(self._session, statement, {"p_account_id": account_id, **params}))

    def get(self, account_id: int) -> Credential:
        row = _run(self._session, _CREDENTIAL, {"p_account_id": account_id}).first()
        if row is None:
            raise AccountNotFound(f"no account with id {account_id}")
        return _credential(account_id, row)

    def reserve_attempt(
        self, account_id: int, now: datetime, limit: int, window: timedelta
    ) -> Credential | None:
        if limit < 1:
            return None
        params = {"p_account_id": account_id, "p_now": now, "p_cutoff": now - window, "p_limit": limit}
        row = _run_upsert(self._session, _RESERVE_ACCOUNT, params).first()
        return None if row is None else _credential(account_id, row)

    def release_attempt(self, account_id: int) -> None:
        self._update(_RELEASE_ACCOUNT, account_id)

    def lock_if_exhausted(self, account_id: int, now: datetime, limit: int) -> bool:
        params = {"p_account_id": account_id, "p_now": now, "p_limit": limit}
        locked_at = _run(self._session, _LOCK_IF_EXHAUSTED, params).scalar()
        return locked_at is not None

    def set_pin(self, account_id: int, pin_hash: str, origin: PinOrigin, now: datetime) -> None:
        if origin == "none":
            raise ValueError("a PIN is set with origin 'member' or 'legacy'; use reset() to clear")
        self._ensure_row(account_id)
        if not self._update(_SET_PIN, account_id, p_pin_hash=pin_hash, p_origin=origin, p_changed_at=now):
            raise AccountNotFound(f"no account with id {account_id}")

    def replace_hash(self, account_id: int, pin_hash: str) -> None:
        if not self._update(_REPLACE_HASH, account_id, p_pin_hash=pin_hash):
            raise ValueError(f"account {account_id} has no PIN to rehash")

    def reset(self, account_id: int, now: datetime) -> None:
        self._ensure_row(account_id)
        if not self._update(_RESET, account_id, p_changed_at=now):
            raise AccountNotFound(f"no account with id {account_id}")

    def unlock(self, account_id: int, now: datetime) -> None:
        self._ensure_row(account_id)
        if not self._update(_UNLOCK, account_id):
            raise AccountNotFound(f"no account with id {account_id}")

    def reserve_caller_attempt(self, caller: str, now: datetime, limit: int, window: timedelta) -> bool:
        if limit < 1:
            return False
        params = {"p_key": caller, "p_now": now, "p_cutoff": now - window, "p_limit": limit}
        return _run_upsert(self._session, _RESERVE_KEY, params).first() is not None

    def release_caller_attempt(self, caller: str) -> None:
        _run(self._session, _RELEASE_KEY, {"p_key": caller})

    def count_failure(self, key: str, now: datetime, window: timedelta) -> int:
        # The same row and window as a caller number's, without a cap; only failures
        # are counted (never reserved before verifying), so the row is written, and
        # locked until the step commits, only by a call that just failed.
        params = {"p_key": key, "p_now": now, "p_cutoff": now - window}
        return int(_run_upsert(self._session, _COUNT_KEY, params).scalar_one())


# --- calls ----------------------------------------------------------------------------

_CALL_FIELDS = step_commit.CALL_FIELDS
_LOAD_CALL = (
    select(_calls.c.call_sid, *(_calls.c[name] for name in _CALL_FIELDS))
    .where(_calls.c.call_sid == bindparam("p_call_sid"))
    .with_for_update()
)
_INSERT_CALL = _per_dialect(
    lambda insert: insert(_calls)
    .on_conflict_do_nothing(index_elements=[_calls.c.call_sid])
    .returning(_calls.c.id)
)
# The columns set are the parameters' (every field and ``updated_at``).
_SAVE_CALL = update(_calls).where(_calls.c.call_sid == bindparam("p_call_sid"))


def _fields(record: CallRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _CALL_FIELDS}


def _written(fields: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the row holds, to tell whether a save would change it (``data`` as JSON)."""
    return tuple(
        json.dumps(value, sort_keys=True) if name == "data" else value for name, value in fields.items()
    )


class SqlCalls:
    """Implements ``ivr.flows.ports.Calls``.

    It remembers what each call's row holds as this transaction loaded or wrote it, so
    that ``save`` writes only a call that changed (a status callback for an ended call,
    a greeting whose insert already holds its state: no ``UPDATE``).
    """

    def __init__(self, session: Session, clock: Callable[[], datetime] = utcnow) -> None:
        self._session = session
        self._now = clock
        self._held: dict[str, tuple[SessionTransaction | None, tuple[Any, ...]]] = {}

    def _hold(self, call_sid: str, fields: Mapping[str, Any]) -> None:
        self._held[call_sid] = (self._session.get_transaction(), _written(fields))

    def load_for_update(self, call_sid: str) -> CallRecord | None:
        row = _run(self._session, _LOAD_CALL, {"p_call_sid": call_sid}).first()
        if row is None:
            return None
        fields = {name: getattr(row, name) for name in _CALL_FIELDS}
        self._hold(call_sid, fields)
        fields["data"] = dict(fields["data"] or {})
        return CallRecord(call_sid=row.call_sid, **fields)

    def create(self, record: CallRecord) -> bool:
        fields = _fields(record)
        params = {"call_sid": record.call_sid, "updated_at": self._now(), **fields}
        if _run_upsert(self._session, _INSERT_CALL, params).first() is None:
            return False
        self._hold(record.call_sid, fields)
        return True

    def save(self, record: CallRecord) -> None:
        params = self.changes(record)
        if params is None:
            return
        if not _rowcount(_run(self._session, _SAVE_CALL, params)):
            raise CallNotFound(f"no call {record.call_sid}")
        self.saved(record)

    def changes(self, record: CallRecord) -> dict[str, Any] | None:
        """The parameters of the ``UPDATE`` that would save ``record`` (``p_call_sid``,
        ``updated_at`` and every field), or None when the row holds it already."""
        fields = _fields(record)
        held = self._held.get(record.call_sid)
        if held is not None and held == (self._session.get_transaction(), _written(fields)):
            return None
        return {"p_call_sid": record.call_sid, "updated_at": self._now(), **fields}

    def saved(self, record: CallRecord) -> None:
        """``record`` was written (by ``save``, or with the trail in one statement)."""
        self._held[record.call_sid] = (self._session.get_transaction(), _written(_fields(record)))


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

    def write_pending_moving(self, call_update: Mapping[str, Any]) -> bool:
        """PostgreSQL: the call's ``UPDATE`` (``SqlCalls.changes``) and the buffered
        events' ``INSERT`` in one statement (``db.step_commit``); False, and nothing
        written, when there is no such call. Only with events pending: the statement
        tells a missing call by the events it inserted."""
        pending = self._pending
        if not pending:
            raise ValueError("no trail events to write with the call's update")
        params = {**call_update, "p_events": step_commit.event_rows(event._asdict() for event in pending)}
        if not _run(self._session, step_commit.MOVE_AND_RECORD, params).all():
            return False
        self._pending = []
        self._written = True
        observe_trail(pending)
        return True

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
