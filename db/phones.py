"""Phone numbers on file, in SQL: the numbers Call Capture matches caller ID against.

Numbers are stored in E.164 (``callcapture.numbers.normalize_on_file``); normalizing is
the caller's, so every writer (the importer, the portal, the IVR) agrees on one form.
A number may be on several accounts; it is on one account at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Phone

__all__ = ["PhoneAlreadyOnFile", "PhoneCreatedVia", "SqlPhones", "StoredPhone"]

PhoneCreatedVia = Literal["import", "portal", "ivr"]


@dataclass(frozen=True)
class StoredPhone:
    id: int
    account_id: int
    e164: str
    created_via: PhoneCreatedVia
    created_at: datetime


class PhoneAlreadyOnFile(Exception):
    """The number is already on file for this account."""

    def __init__(self, existing: StoredPhone) -> None:
        self.existing = existing
        super().__init__(f"number already on file as phone {existing.id}")


def _stored(row: Phone) -> StoredPhone:
    return StoredPhone(
        id=row.id,
        account_id=row.account_id,
        e164=row.e164,
        created_via=cast(PhoneCreatedVia, row.created_via),
        created_at=row.created_at,
    )


class SqlPhones:
    """An account's phone numbers, inside the caller's transaction (nothing committed here)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def for_account(self, account_id: int) -> list[StoredPhone]:
        """The account's numbers, oldest first."""
        rows = self._session.scalars(
            select(Phone).where(Phone.account_id == account_id).order_by(Phone.created_at, Phone.id)
        )
        return [_stored(row) for row in rows]

    def get(self, account_id: int, phone_id: int) -> StoredPhone | None:
        """The phone ``phone_id`` if it belongs to ``account_id``, else None."""
        row = self._session.scalar(select(Phone).where(Phone.id == phone_id, Phone.account_id == account_id))
        return None if row is None else _stored(row)

    def find(self, account_id: int, e164: str) -> StoredPhone | None:
        row = self._session.scalar(select(Phone).where(Phone.account_id == account_id, Phone.e164 == e164))
        return None if row is None else _stored(row)

    def add(self, account_id: int, e164: str, *, created_via: PhoneCreatedVia, now: datetime) -> StoredPhone:
        """Put an E.164 number on file for the account.

        Raises ``PhoneAlreadyOnFile`` when it is there already (the transaction stays
        usable), and ``ValueError`` for a number not in E.164 form.
        """
        if not (e164.startswith("+") and e164[1:].isdigit() and 8 <= len(e164) <= 16):
            raise ValueError("a phone number is stored in E.164 form, e.g. +12025550143")
        existing = self.find(account_id, e164)
        if existing is not None:
            raise PhoneAlreadyOnFile(existing)
        row = Phone(account_id=account_id, e164=e164, created_via=created_via, created_at=now)
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError:
            existing = self.find(account_id, e164)
            if existing is None:  # refused for another reason (no such account)
                raise
            raise PhoneAlreadyOnFile(existing) from None
        return _stored(row)

    def remove(self, account_id: int, phone_id: int) -> bool:
        """Delete the phone if it belongs to the account; False when there was none."""
        row = self._session.scalar(select(Phone).where(Phone.id == phone_id, Phone.account_id == account_id))
        if row is None:
            return False
        self._session.delete(row)
        self._session.flush()
        return True
