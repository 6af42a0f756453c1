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
from typing import Literal, cast

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Account, PaymentMethod
from db.repositories import AccountNotFound
from ivr.flows.ports import MethodNotStored
from payments.gateway import MethodInfo, MethodKind

__all__ = [
    "MethodAlreadyStored",
    "MethodCreatedVia",
    "SqlStoredMethods",
    "StoredMethod",
    "TooManyMethods",
]

MethodCreatedVia = Literal["ivr", "portal"]


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


def _stored(row: PaymentMethod) -> StoredMethod:
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

    # -- methods -----------------------------------------------------------------------

    def for_account(self, account_id: int) -> list[StoredMethod]:
        """The account's methods, oldest first (the order the IVR reads them in)."""
        rows = self._session.scalars(
            select(PaymentMethod)
            .where(PaymentMethod.account_id == account_id)
            .order_by(PaymentMethod.created_at, PaymentMethod.id)
        )
        methods = [_stored(row) for row in rows]
        return [m for m in methods if m.offered_by_phone] if self._by_phone else methods

    def get(self, account_id: int, method_id: int) -> StoredMethod | None:
        """The method ``method_id`` if it belongs to ``account_id``, else None."""
        row = self._session.scalar(
            select(PaymentMethod).where(PaymentMethod.id == method_id, PaymentMethod.account_id == account_id)
        )
        return None if row is None else _stored(row)

    def by_processor_id(self, processor_id: str) -> StoredMethod | None:
        """The stored method with this processor id (``pm_...``), on whichever account."""
        row = self._session.scalar(select(PaymentMethod).where(PaymentMethod.processor_id == processor_id))
        return None if row is None else _stored(row)

    def count(self, account_id: int) -> int:
        return (
            self._session.scalar(
                select(func.count()).select_from(PaymentMethod).where(PaymentMethod.account_id == account_id)
            )
            or 0
        )

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
        row = PaymentMethod(
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
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError:
            existing = self.by_processor_id(info.processor_id)
            if existing is None:  # refused for another reason (a check constraint)
                raise
            raise MethodAlreadyStored(existing) from None
        return _stored(row)

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
        found = self._session.execute(
            select(Account.processor_customer_id).where(Account.id == account_id)
        ).one_or_none()
        if found is None:
            raise AccountNotFound(f"no account with id {account_id}")
        return cast(str | None, found.processor_customer_id)

    def set_customer_id(self, account_id: int, customer_id: str) -> str:
        """Record the account's processor customer unless one is already recorded.

        Returns the customer on record afterwards: ``customer_id``, or the one a
        concurrent request recorded first (the first stays; it may hold methods).
        """
        self._session.execute(
            update(Account)
            .where(Account.id == account_id, Account.processor_customer_id.is_(None))
            .values(processor_customer_id=customer_id),
            execution_options={"synchronize_session": False},
        )
        recorded = self.customer_id(account_id)
        if recorded is None:  # pragma: no cover - the update above cannot have missed
            raise RuntimeError(f"account {account_id} kept no processor customer")
        return recorded

    def _lock_account(self, account_id: int) -> None:
        """Lock the account's row until the end of the transaction (PostgreSQL; SQLite's
        writers are already serialized by ``BEGIN IMMEDIATE``)."""
        found = self._session.scalar(select(Account.id).where(Account.id == account_id).with_for_update())
        if found is None:
            raise AccountNotFound(f"no account with id {account_id}")
