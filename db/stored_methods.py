"""Stored payment methods and the account's processor customer, in SQL.

One store for the IVR and the portal (contract section 3). What is kept of a method is
what PCI DSS lets us keep (SECURITY rule 2): the processor's id, kind, brand, last four
and expiry. Nothing here talks to the processor: attaching and detaching are the
caller's, done before ``add`` and before ``remove`` so that a row exists only for a
method the processor holds for the account's customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Row, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from db.models import Account, Payment, PaymentAttempt, PaymentMethod
from db.repositories import AccountNotFound
from ivr.flows.ports import MethodNotStored, Wallet
from payments.gateway import MethodInfo, MethodKind

__all__ = [
    "MethodAlreadyStored",
    "MethodCreatedVia",
    "SqlStoredMethods",
    "StoredMethod",
    "TooManyMethods",
]

MethodCreatedVia = Literal["ivr", "portal"]

# The phone reads these on its payment steps: each statement built once, run on the
# session's connection (Core, no unit of work).
_METHODS = cast(Table, PaymentMethod.__table__)
_ACCOUNTS = cast(Table, Account.__table__)
_ATTEMPTS = cast(Table, PaymentAttempt.__table__)
_PAYMENTS = cast(Table, Payment.__table__)
_METHOD_COLUMNS = (
    _METHODS.c.id,
    _METHODS.c.account_id,
    _METHODS.c.processor_id,
    _METHODS.c.kind,
    _METHODS.c.brand,
    _METHODS.c.last4,
    _METHODS.c.exp_month,
    _METHODS.c.exp_year,
    _METHODS.c.created_via,
    _METHODS.c.created_at,
    _METHODS.c.mandate_id,
)
_OLDEST_FIRST = (_METHODS.c.created_at, _METHODS.c.id)
_FOR_ACCOUNT = (
    select(*_METHOD_COLUMNS).where(_METHODS.c.account_id == bindparam("account_id")).order_by(*_OLDEST_FIRST)
)
_GET = select(*_METHOD_COLUMNS).where(
    _METHODS.c.id == bindparam("method_id"), _METHODS.c.account_id == bindparam("account_id")
)
_BY_PROCESSOR_ID = select(*_METHOD_COLUMNS).where(_METHODS.c.processor_id == bindparam("processor_id"))
_COUNT = select(func.count()).select_from(_METHODS).where(_METHODS.c.account_id == bindparam("account_id"))
_CUSTOMER = select(_ACCOUNTS.c.processor_customer_id).where(_ACCOUNTS.c.id == bindparam("account_id"))
# The first customer recorded stays (it may hold methods): set only where none is.
_SET_CUSTOMER = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .values(processor_customer_id=func.coalesce(_ACCOUNTS.c.processor_customer_id, bindparam("customer_id")))
    .returning(_ACCOUNTS.c.processor_customer_id)
)
_LOCK_ACCOUNT = select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.id == bindparam("account_id")).with_for_update()
_LAST_PAID = (
    select(_ATTEMPTS.c.method_processor_id)
    .select_from(_PAYMENTS.join(_ATTEMPTS, _ATTEMPTS.c.id == _PAYMENTS.c.attempt_id))
    .where(_PAYMENTS.c.account_id == bindparam("account_id"))
    .order_by(_PAYMENTS.c.taken_at.desc(), _PAYMENTS.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
# One row per method (one with no method when there is none), each with the account's
# customer and the method its latest payment was taken with.
_WALLET = (
    select(
        _ACCOUNTS.c.processor_customer_id.label("customer_id"),
        _LAST_PAID.label("last_paid"),
        *_METHOD_COLUMNS,
    )
    .select_from(_ACCOUNTS.outerjoin(_METHODS, _METHODS.c.account_id == _ACCOUNTS.c.id))
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .order_by(*_OLDEST_FIRST)
)
# A processor id already on file (on any account) inserts nothing.
_INSERT = {
    name: insert(_METHODS).on_conflict_do_nothing(index_elements=["processor_id"]).returning(_METHODS.c.id)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


@dataclass(frozen=True)
class StoredMethod:
    """A payment method on file for an account."""

    id: int
    account_id: int
    processor_id: str  # pm_...
    kind: MethodKind
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    created_via: MethodCreatedVia
    created_at: datetime
    mandate_id: str | None = None

    @property
    def offered_by_phone(self) -> bool:
        """A card, or a bank account with its mandate: a debit without one would be
        refused (or disputed), so the IVR does not offer it."""
        return self.kind != "bank" or self.mandate_id is not None


class MethodAlreadyStored(MethodNotStored):
    """The processor method is already on file, on this account or another one."""

    def __init__(self, existing: StoredMethod) -> None:
        self.existing = existing
        super().__init__(f"payment method already stored as method {existing.id}")


class TooManyMethods(MethodNotStored):
    """The account already holds as many methods as allowed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"an account holds at most {limit} payment methods")


def _stored(row: Row[*tuple[Any, ...]]) -> StoredMethod:
    return StoredMethod(
        id=row.id,
        account_id=row.account_id,
        processor_id=row.processor_id,
        kind=cast(MethodKind, row.kind),
        brand=row.brand,
        last4=row.last4,
        exp_month=row.exp_month,
        exp_year=row.exp_year,
        created_via=cast(MethodCreatedVia, row.created_via),
        created_at=row.created_at,
        mandate_id=row.mandate_id,
    )


class SqlStoredMethods:
    """Payment methods on file and the processor customer, inside the caller's transaction.

    Nothing is committed here: the caller's unit of work does that.
    """

    def __init__(self, session: Session, *, by_phone: bool = False) -> None:
        """``by_phone``: the IVR's view, where ``for_account`` leaves out what cannot be
        charged by phone (a bank account without its mandate). Counting and adding see
        every method either way."""
        self._session = session
        self._by_phone = by_phone

    def _conn(self) -> Connection:
        return self._session.connection()

    def _offered(self, methods: list[StoredMethod]) -> list[StoredMethod]:
        return [m for m in methods if m.offered_by_phone] if self._by_phone else methods

    # -- methods -----------------------------------------------------------------------

    def for_account(self, account_id: int) -> list[StoredMethod]:
        """The account's methods, oldest first (the order the IVR reads them in)."""
        rows = self._conn().execute(_FOR_ACCOUNT, {"account_id": account_id})
        return self._offered([_stored(row) for row in rows])

    def wallet(self, account_id: int) -> Wallet:
        """The account's methods (as ``for_account``), its processor customer and the
        processor id of the method its latest payment was taken with: one statement."""
        rows = self._conn().execute(_WALLET, {"account_id": account_id}).all()
        if not rows:
            raise AccountNotFound(f"no account with id {account_id}")
        methods = [_stored(row) for row in rows if row.id is not None]
        return Wallet(account_id, rows[0].customer_id, tuple(self._offered(methods)), rows[0].last_paid)

    def get(self, account_id: int, method_id: int) -> StoredMethod | None:
        """The method ``method_id`` if it belongs to ``account_id``, else None."""
        row = self._conn().execute(_GET, {"account_id": account_id, "method_id": method_id}).one_or_none()
        return None if row is None else _stored(row)

    def by_processor_id(self, processor_id: str) -> StoredMethod | None:
        """The stored method with this processor id (``pm_...``), on whichever account."""
        row = self._conn().execute(_BY_PROCESSOR_ID, {"processor_id": processor_id}).one_or_none()
        return None if row is None else _stored(row)

    def count(self, account_id: int) -> int:
        return int(self._conn().execute(_COUNT, {"account_id": account_id}).scalar_one())

    def add(
        self,
        account_id: int,
        info: MethodInfo,
        *,
        created_via: MethodCreatedVia,
        now: datetime,
        limit: int | None = None,
    ) -> StoredMethod:
        """Store a method the processor has attached to the account's customer.

        With ``limit``, the account's row is locked first and the methods counted, so two
        simultaneous adds cannot both take the last place. Raises ``AccountNotFound``,
        ``TooManyMethods``, or ``MethodAlreadyStored`` when the processor id is on file
        (on any account); the transaction stays usable after either.
        """
        self._lock_account(account_id)
        existing = self.by_processor_id(info.processor_id)
        if existing is not None:
            raise MethodAlreadyStored(existing)
        if limit is not None and self.count(account_id) >= limit:
            raise TooManyMethods(limit)
        conn = self._conn()
        method_id = conn.execute(
            _INSERT[conn.dialect.name],
            {
                "account_id": account_id,
                "processor_id": info.processor_id,
                "kind": info.kind,
                "brand": info.brand,
                "last4": info.last4,
                "exp_month": info.exp_month,
                "exp_year": info.exp_year,
                "created_via": created_via,
                "created_at": now,
                "mandate_id": info.mandate_id,
            },
        ).scalar_one_or_none()
        if method_id is None:  # stored by a concurrent request since the check above
            existing = self.by_processor_id(info.processor_id)
            if existing is None:  # pragma: no cover - the conflict was on this very key
                raise RuntimeError("a conflicting payment method vanished")
            raise MethodAlreadyStored(existing)
        return StoredMethod(
            id=method_id,
            account_id=account_id,
            processor_id=info.processor_id,
            kind=info.kind,
            brand=info.brand,
            last4=info.last4,
            exp_month=info.exp_month,
            exp_year=info.exp_year,
            created_via=created_via,
            created_at=now,
            mandate_id=info.mandate_id,
        )

    def remove(self, account_id: int, method_id: int) -> bool:
        """Delete the method if it belongs to the account; False when there was none."""
        row = self._session.scalar(
            select(PaymentMethod).where(PaymentMethod.id == method_id, PaymentMethod.account_id == account_id)
        )
        if row is None:
            return False
        self._session.delete(row)
        self._session.flush()
        return True

    # -- the processor customer ----------------------------------------------------------

    def customer_id(self, account_id: int) -> str | None:
        """The account's processor customer (``cus_...``), None before the first method."""
        found = self._conn().execute(_CUSTOMER, {"account_id": account_id}).one_or_none()
        if found is None:
            raise AccountNotFound(f"no account with id {account_id}")
        return cast(str | None, found.processor_customer_id)

    def set_customer_id(self, account_id: int, customer_id: str) -> str:
        """Record the account's processor customer unless one is already recorded.

        Returns the customer on record afterwards: ``customer_id``, or the one a
        concurrent request recorded first (the first stays; it may hold methods).
        One statement (an UPDATE that returns what is on record).
        """
        found = self._conn().execute(
            _SET_CUSTOMER, {"account_id": account_id, "customer_id": customer_id}
        ).one_or_none()
        if found is None:
            raise AccountNotFound(f"no account with id {account_id}")
        return cast(str, found.processor_customer_id)

    def _lock_account(self, account_id: int) -> None:
        """Lock the account's row until the end of the transaction (PostgreSQL; SQLite's
        writers are already serialized by ``BEGIN IMMEDIATE``)."""
        found = self._conn().execute(_LOCK_ACCOUNT, {"account_id": account_id}).scalar_one_or_none()
        if found is None:
            raise AccountNotFound(f"no account with id {account_id}")
