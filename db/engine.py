"""The one engine and session factory, built by ``create_app`` and injected."""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker


def build_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and write-locking transactions.

    SQLite transactions start with ``BEGIN IMMEDIATE``: every transaction that may write
    takes the database's write lock at its start, so two workers can never both read a
    counter and then both update it (the "last try" race).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    # A webhook has 15 s: never wait long for a database host that drops packets, nor for
    # a pooled connection (the caller hears silence meanwhile).
    kwargs.setdefault("pool_timeout", 5)
    # No pre-ping (a SELECT 1 round trip on every checkout, i.e. on every webhook):
    # connections are recycled after RECYCLE_SECONDS, and one the server has closed or
    # is closing is refused at checkout without a round trip (``_refuse_dead``).
    kwargs.setdefault("pool_recycle", RECYCLE_SECONDS)
    if url.startswith("postgresql"):
        kwargs.setdefault("connect_args", {"connect_timeout": 3})
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkout", _refuse_dead)
    return engine


# Older connections are closed and replaced when next checked out: a server-side idle
# timeout, a failover or a PgBouncer restart never leaves a pool of stale connections.
RECYCLE_SECONDS = 300


def _refuse_dead(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: a connection the server has spoken on while idle is dead; retry.

    An idle PostgreSQL connection receives nothing unless the server is ending it
    (``pg_terminate_backend``, a restart, an idle timeout: a FATAL message, then end of
    file) or the socket is gone. A zero-timeout ``poll`` of the socket sees that without
    a round trip. Raising ``DisconnectionError`` here makes the pool discard the
    connection and check out another (a new one if need be), up to three times.
    """
    if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
        raise exc.DisconnectionError("the pooled connection is closed")
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:
        return
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise exc.DisconnectionError("the server closed the pooled connection")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
