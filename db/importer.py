"""The accounts file from the billing system (contract section 5), upserted row by row.

Each row is checked first, then written in its own SAVEPOINT: a bad row is reported with
its line number and reason and leaves nothing behind, while the good rows stay. A file
whose header lacks a required column is refused before anything is written.

The SSN (or tax-ID) last four is stored only as ``hasher.hash(digits)``, never as text,
and no reason or exception message ever contains it. Hashing is Argon2id at OWASP
parameters (about 50 ms a row): a file of 10,000 accounts takes minutes.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import NamedTuple, TextIO

from sqlalchemy import delete, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from callcapture.numbers import InvalidPhoneNumber, normalize_on_file
from db.models import Account, Phone, PinCredential
from ivr.flows.ports import PinHasher

__all__ = ["ImportFileError", "ImportReport", "RowError", "decode_accounts_file", "import_accounts"]

REQUIRED = ("account_number", "account_type", "name", "balance", "due_date")
OPTIONAL = ("ssn_last4", "phones", "past_due", "language", "email")
COLUMNS = REQUIRED + OPTIONAL

_ACCOUNT_NUMBER = re.compile(r"[0-9]{4,20}")
_SSN_LAST4 = re.compile(r"[0-9]{4}")
_AMOUNT = re.compile(r"-?[0-9]{1,12}(\.[0-9]+)?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, a required column missing)."""


# Byte order marks, longest first (UTF-32's LE mark begins with UTF-16's): a file that
# starts with one is in that encoding, whatever --encoding says.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
DEFAULT_ENCODING = "utf-8"


def decode_accounts_file(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """The text of an accounts file and the encoding it was read with.

    A byte order mark decides (UTF-8, UTF-16 and UTF-32, as Windows tools write them);
    otherwise ``encoding`` (default UTF-8; billing exports are often ``cp1252``). Bytes
    that are not text in that encoding, or NUL characters (UTF-16 without its mark),
    refuse the whole file with ``ImportFileError`` naming the encoding and where: nothing
    is written. The message never quotes the file's content.
    """
    chosen = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    name = chosen or encoding or DEFAULT_ENCODING
    try:
        codecs.lookup(name)
    except LookupError:
        raise ImportFileError(f"unknown encoding {name!r}") from None
    wide = codecs.lookup(name).name.startswith(("utf-16", "utf-32"))
    if not wide and b"\x00" in data:
        raise ImportFileError(
            f"not {name} text: it holds NUL bytes (UTF-16 without a byte order mark? "
            "try --encoding utf-16-le)"
        )
    try:
        text = data.decode(name)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(name, errors="replace").count("\n") + 1
        hint = "" if encoding or chosen else " (a Windows export? try --encoding cp1252)"
        raise ImportFileError(
            f"not {name} text: byte {exc.object[exc.start]:#04x} at line {line}{hint}"
        ) from None
    if "\x00" in text:
        raise ImportFileError(f"not {name} text: it holds NUL characters")
    return text, name


class RowError(NamedTuple):
    line: int
    reason: str


@dataclass(frozen=True)
class ImportReport:
    created: int
    updated: int
    errors: tuple[RowError, ...]

    @property
    def rejected(self) -> int:
        return len(self.errors)


class _BadRow(ValueError):
    """A row cannot be imported; the message is the reason shown to the operator."""


@dataclass(frozen=True)
class _Row:
    """One checked row. Optional columns absent from the file are None: left unchanged."""

    account_number: str
    account_type: str
    name: str
    balance_cents: int
    due_date: date
    past_due_cents: int
    ssn_last4: str | None  # None: column absent; "": no SSN on file
    phones: tuple[str, ...] | None
    language: str | None  # None: column absent; "": none
    email: str | None

    def __repr__(self) -> str:  # never show the SSN digits, even in a debugger or a trace
        return f"_Row(account_number={self.account_number!r}, ...)"


def _cents(column: str, raw: str) -> int:
    if not _AMOUNT.fullmatch(raw):
        raise _BadRow(f"{column} must be an amount in dollars like 123.45")
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise _BadRow(f"{column} must be an amount in dollars like 123.45") from None
    if amount != amount.quantize(Decimal("0.01")):
        raise _BadRow(f"{column} has more than 2 decimals")
    return int(amount * 100)


def _check(fields: dict[str, str]) -> _Row:
    """Validate one row's fields (stripped text by column); raise ``_BadRow`` with why."""
    number = fields["account_number"]
    if not _ACCOUNT_NUMBER.fullmatch(number):
        raise _BadRow("account_number must be 4 to 20 digits")
    account_type = fields["account_type"].lower()
    if account_type not in ("residential", "commercial"):
        raise _BadRow("account_type must be residential or commercial")
    name = fields["name"]
    if not name:
        raise _BadRow("name is empty")
    if len(name) > 120:
        raise _BadRow("name is longer than 120 characters")
    if not name.isprintable():
        raise _BadRow("name holds control characters (a line break, a tab...)")
    balance = _cents("balance", fields["balance"])
    due = fields["due_date"]
    try:
        if not _ISO_DATE.fullmatch(due):
            raise ValueError
        due_date = date.fromisoformat(due)
    except ValueError:
        raise _BadRow("due_date must be a date as YYYY-MM-DD") from None
    past_due = 0
    if fields.get("past_due"):
        past_due = _cents("past_due", fields["past_due"])
        if not 0 <= past_due <= max(balance, 0):
            raise _BadRow("past_due must be between 0 and the balance")
    ssn = fields.get("ssn_last4")
    if ssn and not _SSN_LAST4.fullmatch(ssn):
        raise _BadRow("ssn_last4 must be empty or exactly 4 digits")
    phones: tuple[str, ...] | None = None
    if "phones" in fields:
        numbers: list[str] = []
        parts = fields["phones"].split(";") if fields["phones"] else []
        for position, part in enumerate(parts, start=1):
            try:
                e164 = normalize_on_file(part)
            except InvalidPhoneNumber as exc:
                raise _BadRow(f"phone {position} of the phones column: {exc}") from None
            if e164 not in numbers:
                numbers.append(e164)
        phones = tuple(numbers)
    language = fields.get("language")
    if language is not None:
        language = language.lower()
        if language not in ("", "en", "es"):
            raise _BadRow("language must be empty, en or es")
    email = fields.get("email")
    if email and (len(email) > 254 or not _EMAIL.fullmatch(email)):
        raise _BadRow("email is not an e-mail address")
    return _Row(
        account_number=number,
        account_type=account_type,
        name=name,
        balance_cents=balance,
        due_date=due_date,
        past_due_cents=past_due,
        ssn_last4=ssn,
        phones=phones,
        language=language,
        email=email,
    )


def _header(raw: list[str]) -> list[str]:
    columns = [name.strip().lower() for name in raw]
    if columns and columns[0].startswith("\ufeff"):  # a byte-order mark from a spreadsheet
        columns[0] = columns[0][1:]
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        raise ImportFileError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; the columns are {', '.join(COLUMNS)}"
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ImportFileError(f"column(s) named twice: {', '.join(repeated)}")
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise ImportFileError(f"required column(s) missing: {', '.join(missing)}")
    return columns


def _records(source: str | TextIO) -> tuple[list[str], Iterator[tuple[int, list[str] | str]]]:
    """The header, and each data record as (first line number, fields or a parse error)."""
    stream = io.StringIO(source) if isinstance(source, str) else source
    reader = csv.reader(stream, strict=True)
    try:
        raw_header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"the header row is not valid CSV: {exc}") from None
    if raw_header is None:
        raise ImportFileError("the file is empty: a header row is expected")
    columns = _header(raw_header)

    def records() -> Iterator[tuple[int, list[str] | str]]:
        while True:
            line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, f"not valid CSV: {exc}"
                continue
            if fields and any(field.strip() for field in fields):
                yield line, fields

    return columns, records()


def _write(
    session: Session,
    row: _Row,
    hasher: PinHasher,
    now: datetime,
    legacy_pin_from_ssn: bool,
) -> bool:
    """Upsert one checked row; True when the account is new."""
    account = session.scalar(select(Account).where(Account.account_number == row.account_number))
    created = account is None
    if account is None:
        account = Account(account_number=row.account_number, created_at=now)
        session.add(account)
    account.account_type = row.account_type
    account.name = row.name
    account.balance_cents = row.balance_cents
    account.past_due_cents = row.past_due_cents
    account.due_date = row.due_date
    account.balance_as_of = now
    account.updated_at = now
    if row.language is not None or created:
        account.language = row.language or None
    if row.email is not None or created:
        account.email = row.email or None
    if row.ssn_last4 is not None:
        if not row.ssn_last4:
            account.ssn_hash = None
        elif account.ssn_hash is None or not hasher.verify(account.ssn_hash, row.ssn_last4):
            account.ssn_hash = hasher.hash(row.ssn_last4)
    session.flush()

    credential = session.get(PinCredential, account.id)
    if credential is None:
        credential = PinCredential(account_id=account.id, origin="none", failure_count=0)
        session.add(credential)
    if legacy_pin_from_ssn and credential.origin == "none" and account.ssn_hash is not None:
        # The same keyed hash of the same digits: the SSN hash serves as the legacy PIN.
        credential.pin_hash = account.ssn_hash
        credential.origin = "legacy"
        credential.changed_at = now

    if row.phones is not None:
        _replace_imported_phones(session, account.id, row.phones, now)
    session.flush()
    return created


def _replace_imported_phones(
    session: Session, account_id: int, phones: tuple[str, ...], now: datetime
) -> None:
    """The file's numbers replace the account's imported ones; portal and IVR ones stay."""
    session.execute(
        delete(Phone).where(
            Phone.account_id == account_id,
            Phone.created_via == "import",
            Phone.e164.not_in(phones),
        )
    )
    kept = set(session.scalars(select(Phone.e164).where(Phone.account_id == account_id)))
    for e164 in phones:
        if e164 not in kept:
            session.add(Phone(account_id=account_id, e164=e164, created_via="import", created_at=now))


def import_accounts(
    session: Session,
    rows_text_or_stream: str | TextIO,
    hasher: PinHasher,
    now: datetime,
    *,
    legacy_pin_from_ssn: bool = False,
    after_row: Callable[[], None] | None = None,
) -> ImportReport:
    """Upsert the accounts of a CSV file into ``session``; the caller commits.

    ``ImportFileError`` when the header is unusable (nothing written). Otherwise every
    good row is written and every bad row is in ``errors`` as (line, reason).
    ``legacy_pin_from_ssn``: accounts without a PIN whose row has SSN digits get those
    digits as a PIN of origin ``legacy`` (the caller is asked to choose one on first use).
    ``after_row`` is called after each row, between SAVEPOINTs (e.g. to commit in batches).
    """
    columns, records = _records(rows_text_or_stream)
    created = updated = 0
    errors: list[RowError] = []
    first_line: dict[str, int] = {}
    for line, record in records:
        if isinstance(record, str):
            errors.append(RowError(line, record))
            continue
        if len(record) != len(columns):
            errors.append(RowError(line, f"expected {len(columns)} fields, found {len(record)}"))
            continue
        try:
            row = _check({name: value.strip() for name, value in zip(columns, record, strict=True)})
            if row.account_number in first_line:
                raise _BadRow(
                    f"account {row.account_number} appears again "
                    f"(first on line {first_line[row.account_number]})"
                )
            first_line[row.account_number] = line
            with session.begin_nested():
                is_new = _write(session, row, hasher, now, legacy_pin_from_ssn)
        except _BadRow as exc:
            errors.append(RowError(line, str(exc)))
            continue
        except (IntegrityError, DataError) as exc:
            # The constraint's or the error's name only: the database's message may quote values.
            constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
            errors.append(
                RowError(line, f"refused by the database ({constraint or type(exc.orig).__name__})")
            )
            continue
        if is_new:
            created += 1
        else:
            updated += 1
        if after_row is not None:
            after_row()
    return ImportReport(created=created, updated=updated, errors=tuple(errors))
