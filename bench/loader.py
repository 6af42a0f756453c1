"""The benchmark's own bulk loader: N accounts with phones and PINs in seconds, not hours.

``securepay import accounts`` hashes each SSN with Argon2 (about 50 ms a row), fine for a
billing export and far too slow for 100,000 benchmark accounts. This loader writes the
same rows straight into the migrated schema with PostgreSQL ``COPY``. Every hash is
computed once per distinct secret and reused (one SSN hash, one hash per PIN of
``PINS``): what the benchmark measures is the service, not the load.

Members are synthetic and deterministic, from their 1-based index ``i``: account number
``100000000 + i``, one phone ``+1 202 <2000000 + i>``, a balance from $20.00 up, a PIN
from ``PINS``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from ivr.pinhash import Argon2PinHasher
from payments.card_tokenizer import tokenize_card
from payments.gateway import MethodInfo
from payments.stripe_gateway import StripeGateway, build_stripe_client

PINS = ("0473", "1958", "2741", "3860", "4602", "5319", "6087", "7235")
SSN_LAST4 = "6187"
FIRST_ACCOUNT_NUMBER = 100_000_000
FIRST_LINE = 2_000_000  # +1 202 200-0000: a valid US number, and 8 million after it
TEST_VISA = ("4242424242424242", 12, 2030, "123")
BENCH_STRIPE_KEY = "sk_test_securepay_bench"


@dataclass(frozen=True)
class Member:
    """One synthetic member (what a call needs to know about it)."""

    index: int
    account_number: str
    phone: str
    pin: str
    balance_cents: int


def member(index: int) -> Member:
    if not 1 <= index < 8_000_000:
        raise ValueError("member indexes run from 1 to 7,999,999")
    return Member(
        index=index,
        account_number=str(FIRST_ACCOUNT_NUMBER + index),
        phone=f"+1202{FIRST_LINE + index:07d}",
        pin=PINS[index % len(PINS)],
        balance_cents=2_000 + (index * 7_919) % 400_000,
    )


# -- databases --------------------------------------------------------------------------


def libpq_conninfo(url: str, dbname: str | None = None) -> str:
    """A libpq connection string for a SQLAlchemy URL (optionally another database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"the benchmark needs PostgreSQL, got {parsed.get_backend_name()}")
    return psycopg.conninfo.make_conninfo(
        host=parsed.host or "127.0.0.1",
        port=str(parsed.port or 5432),
        user=parsed.username or "postgres",
        password=parsed.password or None,
        dbname=dbname or parsed.database or "postgres",
    )


def database_name(url: str) -> str:
    name = make_url(url).database
    if not name:
        raise ValueError(f"the database URL names no database: {url}")
    return name


def recreate_database(url: str) -> None:
    """Drop (forcing other sessions off) and create the URL's database, empty."""
    name = database_name(url)
    with psycopg.connect(libpq_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def copy_database(source: str, target: str) -> None:
    """Recreate ``target``'s database as a file copy of ``source``'s (no session may be
    connected to ``source``): a loaded database again in seconds instead of a new load."""
    name, template = database_name(target), database_name(source)
    with psycopg.connect(libpq_conninfo(target, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )


def vacuum(url: str) -> float:
    """``VACUUM ANALYZE`` the whole database, then ``CHECKPOINT``; the seconds it took.

    A table just filled by ``COPY`` is vacuumed by autovacuum soon after (PostgreSQL 13+
    counts inserts), and the pages the load and the vacuum dirtied are written out by the
    next checkpoints: both done now, before a measurement, neither runs during one, and
    the rows are as a production database's, visible to all with their hint bits set.
    (``CHECKPOINT`` needs a superuser or ``pg_checkpoint``; without it, only the vacuum.)"""
    started = time.perf_counter()
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            pass
    return time.perf_counter() - started


def drop_database(url: str) -> None:
    name = database_name(url)
    with psycopg.connect(libpq_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- accounts, phones, PINs ---------------------------------------------------------------


@dataclass(frozen=True)
class LoadReport:
    accounts: int
    hash_seconds: float
    copy_seconds: float
    analyze_seconds: float

    @property
    def seconds(self) -> float:
        return self.hash_seconds + self.copy_seconds + self.analyze_seconds


def _account_rows(count: int, ssn_hash: str, now: datetime) -> Iterator[tuple[Any, ...]]:
    due = date.today() + timedelta(days=20)
    as_of = now - timedelta(hours=1)
    for index in range(1, count + 1):
        m = member(index)
        yield (
            index,
            m.account_number,
            "residential",
            f"Member{index}",
            ssn_hash,
            None,
            None,
            m.balance_cents,
            0,
            due,
            as_of,
            None,
            now,
            now,
        )


def _phone_rows(count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    for index in range(1, count + 1):
        yield (index, index, member(index).phone, "import", now)


def _pin_rows(count: int, hashes: dict[str, str], now: datetime) -> Iterator[tuple[Any, ...]]:
    for index in range(1, count + 1):
        yield (index, hashes[member(index).pin], "member", 0, None, None, now)


def copy_rows(
    conn: psycopg.Connection[Any], table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def reset_sequence(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(
        sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
            sql.Literal(table), sql.Identifier(table)
        )
    )


def load_accounts(url: str, count: int, pepper: bytes, *, with_pins: bool = True) -> LoadReport:
    """COPY ``count`` members into the (migrated, empty) database at ``url``."""
    started = time.perf_counter()
    hasher = Argon2PinHasher(pepper)
    ssn_hash = hasher.hash(SSN_LAST4)
    pin_hashes = {pin: hasher.hash(pin) for pin in PINS} if with_pins else {}
    hashed = time.perf_counter()
    now = datetime.now(UTC)
    with psycopg.connect(libpq_conninfo(url)) as conn:
        copy_rows(
            conn,
            "accounts",
            (
                "id",
                "account_number",
                "account_type",
                "name",
                "ssn_hash",
                "language",
                "email",
                "balance_cents",
                "past_due_cents",
                "due_date",
                "balance_as_of",
                "processor_customer_id",
                "created_at",
                "updated_at",
            ),
            _account_rows(count, ssn_hash, now),
        )
        copy_rows(
            conn, "phones", ("id", "account_id", "e164", "created_via", "created_at"), _phone_rows(count, now)
        )
        if with_pins:
            copy_rows(
                conn,
                "pin_credentials",
                (
                    "account_id",
                    "pin_hash",
                    "origin",
                    "failure_count",
                    "window_started_at",
                    "locked_at",
                    "changed_at",
                ),
                _pin_rows(count, pin_hashes, now),
            )
        reset_sequence(conn, "accounts")
        reset_sequence(conn, "phones")
        conn.commit()
    copied = time.perf_counter()
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("ANALYZE")
    analyzed = time.perf_counter()
    return LoadReport(count, hashed - started, copied - hashed, analyzed - copied)


# -- stored cards at the processor ------------------------------------------------------


def _stored_card(gateway: StripeGateway, client: Any, m: Member) -> tuple[int, str, MethodInfo]:
    customer = gateway.create_customer(m.account_number, idempotency_key=f"bench-customer-{m.index}")
    number, exp_month, exp_year, cvc = TEST_VISA
    card = tokenize_card(client, number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc)
    return m.index, customer, gateway.attach_method(customer, card.processor_id)


def attach_stored_cards(url: str, stripe_base: str, members: Sequence[Member], *, threads: int = 8) -> float:
    """Give each member a processor customer with the test Visa attached, and record
    both as the portal would (``processor_customer_id``, a ``payment_methods`` row).
    Returns the seconds it took."""
    started = time.perf_counter()
    client = build_stripe_client(BENCH_STRIPE_KEY, stripe_base, max_network_retries=2, timeout=30)
    gateway = StripeGateway(client)
    with ThreadPoolExecutor(threads) as pool:
        cards = list(pool.map(lambda m: _stored_card(gateway, client, m), members))
    now = datetime.now(UTC)
    with psycopg.connect(libpq_conninfo(url)) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE accounts SET processor_customer_id = %s WHERE id = %s",
                [(customer, index) for index, customer, _ in cards],
            )
        copy_rows(
            conn,
            "payment_methods",
            (
                "account_id",
                "processor_id",
                "kind",
                "brand",
                "last4",
                "exp_month",
                "exp_year",
                "created_via",
                "created_at",
            ),
            (
                (
                    index,
                    info.processor_id,
                    info.kind,
                    info.brand,
                    info.last4,
                    info.exp_month,
                    info.exp_year,
                    "portal",
                    now,
                )
                for index, _, info in cards
            ),
        )
        conn.commit()
    return time.perf_counter() - started
