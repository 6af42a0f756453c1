"""What a command says when the database fails it: one line, never the SQL or its values.

SQLAlchemy's exceptions print the statement and its parameters (an account number, a
name, a balance); the traceback around them is 70-90 lines. The ``securepay`` group
turns any ``SQLAlchemyError`` into a ``DatabaseFailed`` (``click.ClickException``:
"Error: ..." on stderr, exit status 1) whose message is built here from the error's
kind only: read-only, unreachable, refused login, missing schema, busy, or the driver's
error class and SQLSTATE. The driver's own text is shown only for connection failures
(it names the host and port, never a row).
"""

from __future__ import annotations

import sqlite3

import click
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

__all__ = ["DatabaseFailed", "describe"]

MAX_DETAIL = 160

# SQLSTATE classes and codes (PostgreSQL, appendix A) a staff member can act on.
READ_ONLY_STATES = frozenset({"25006"})  # read_only_sql_transaction (a standby, or read-only set)
LOGIN_STATES = frozenset({"28000", "28P01"})
MISSING_STATES = frozenset({"3D000"})  # database does not exist
SCHEMA_STATES = frozenset({"42P01", "42703"})  # undefined table / column
UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})  # shutting down, too many clients
BUSY_STATES = frozenset({"55P03", "57014", "40P01"})  # lock not available, cancelled (timeout), deadlock


class DatabaseFailed(click.ClickException):
    """A command stopped on a database failure; the message is safe to print."""

    exit_code = 1


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def describe(exc: SQLAlchemyError) -> str:
    """One line for ``exc``, without the statement, its parameters or a row's values."""
    if isinstance(exc, PoolTimeout):
        return "cannot reach the database in time (no connection from the pool): overloaded or down"
    if not isinstance(exc, DBAPIError):
        return f"a database error ({type(exc).__name__}) stopped the command"
    orig = exc.orig
    kind = type(orig).__name__
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return _postgres(exc, sqlstate, kind)
    if isinstance(orig, sqlite3.Error):
        return _sqlite(exc, str(orig))
    if exc.connection_invalidated or kind in ("OperationalError", "InterfaceError"):
        return f"cannot reach the database ({_first_line(str(orig))})"
    return f"a database error ({kind}) stopped the command"


def _postgres(exc: DBAPIError, sqlstate: str, kind: str) -> str:
    if sqlstate in READ_ONLY_STATES:
        return "the database is read-only (SQLSTATE 25006): this command writes, nothing more written"
    if sqlstate.startswith("08") or sqlstate in UNAVAILABLE_STATES:
        return f"cannot reach the database (SQLSTATE {sqlstate}): check SECUREPAY_DATABASE_URL and the server"
    if sqlstate in LOGIN_STATES:
        return f"the database refused the login (SQLSTATE {sqlstate}): check SECUREPAY_DATABASE_URL"
    if sqlstate in MISSING_STATES:
        return "the database named in SECUREPAY_DATABASE_URL does not exist (SQLSTATE 3D000)"
    if sqlstate in SCHEMA_STATES:
        return f"the database schema is missing or old (SQLSTATE {sqlstate}): run `securepay db upgrade`"
    if sqlstate in BUSY_STATES:
        return f"the database was busy (SQLSTATE {sqlstate}): try again"
    return f"a database error ({kind}, SQLSTATE {sqlstate}) stopped the command"


def _sqlite(exc: DBAPIError, message: str) -> str:
    lowered = message.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return "the database is read-only (SQLite): this command writes, nothing more written"
    if "unable to open" in lowered or "disk i/o" in lowered:
        return f"cannot reach the database (SQLite: {_first_line(message)}): check SECUREPAY_DATABASE_URL"
    if "no such table" in lowered or "no such column" in lowered:
        return "the database schema is missing or old: run `securepay db upgrade`"
    if "locked" in lowered or "busy" in lowered:
        return "the database was busy (SQLite: database is locked): try again"
    return f"a database error (SQLite {type(exc.orig).__name__}) stopped the command"
