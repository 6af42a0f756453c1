"""Issue 11, defect 3: a read-only or unreachable database is one line and exit 1 for
every command, never SQLAlchemy's traceback with the SQL and its parameters."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import Engine, make_url

from db.autopay import SqlAutopay
from ivr import create_app
from ivr.cli import main
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from payments.autopay_terms import TERMS_VERSION
from payments.gateway import MethodInfo
from tests.members import Member, add_members

ACCOUNT = "10004821"
NAME = "Quenneville"  # a name that appears nowhere else: found in the output, it is a leak
CALL_SID = "CA" + "7e" * 16

# Every command of `securepay`, with arguments that reach the database. Excluded: `serve`
# (a server), `call` (it drives webhooks, which answer TwiML), `demo` (its own database),
# `config check` (it reads the environment, never the database).
NOT_DATABASE_COMMANDS = {"serve", "call", "demo", "config check"}
WRITERS = {
    "pin reset": ["pin", "reset", ACCOUNT, "--staff", "J. Ortiz", "--reason", "member request"],
    "pin unlock": ["pin", "unlock", ACCOUNT, "--staff", "J. Ortiz", "--reason", "verified"],
    "import accounts": ["import", "accounts", "{accounts_csv}"],
    "db upgrade": ["db", "upgrade"],
    "autopay run": ["autopay", "run", "--date", "2026-11-30"],  # the seeded member's bill is due
    "autopay cancel": ["autopay", "cancel", ACCOUNT, "--staff", "J. Ortiz", "--reason", "member request"],
}
READERS = {
    # Writes only events left unsealed: here (every commit sealed its own) it only reads.
    "audit seal": ["audit", "seal"],
    "pin status": ["pin", "status", ACCOUNT],
    "calls list": ["calls", "list"],
    "calls show": ["calls", "show", CALL_SID],
    "calls stats": ["calls", "stats"],
    "audit verify": ["audit", "verify"],
    "audit anchor": ["audit", "anchor"],
    "audit export": ["audit", "export"],
    "audit scan-secrets": ["audit", "scan-secrets"],
    "payments export": ["payments", "export"],
    "payments reconcile": ["payments", "reconcile"],
    "payments send-receipts": ["payments", "send-receipts"],  # writes only what it sends
    "autopay list": ["autopay", "list"],
    "autopay show": ["autopay", "show", ACCOUNT],
    "autopay export": ["autopay", "export"],
}
ALL = {**WRITERS, **READERS}
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z \[")
LEAKS = ("SELECT", "INSERT", "UPDATE", "DELETE", "[SQL", "parameters", "Traceback", NAME, "sqlalche.me")


def _leaf_commands(group: click.Group, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found |= _leaf_commands(command, path + " ")
        else:
            found.add(path)
    return found


def test_the_table_below_names_every_command() -> None:
    assert _leaf_commands(main) - NOT_DATABASE_COMMANDS == set(ALL)


@pytest.fixture
def accounts_csv(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.csv"
    path.write_text(
        "account_number,account_type,name,ssn_last4,phones,balance,due_date\n"
        f"{ACCOUNT},residential,{NAME},0618,202-555-0143,123.45,2026-11-30\n"
    )
    return path


@pytest.fixture
def seeded(test_env: dict[str, str], engine: Engine) -> Iterator[Flask]:
    app = create_app(Settings.from_env(test_env), cli=True)
    (account_id,) = add_members(app, Member(ACCOUNT, name=NAME, phones=["+12025550143"]))
    # In Auto Pay with a stored card, its November bill covered: `autopay run` has a draft
    # to write and `autopay cancel` an agreement to end.
    services = app.extensions[EXTENSION_KEY]
    with app.app_context(), services.unit_of_work() as uow:
        card = MethodInfo("pm_card_visa", "card", "visa", "4242", 12, 2030)
        method = uow.methods.add(account_id, card, created_via="portal", now=services.clock.now())
        SqlAutopay(uow.session).enroll(
            account_id, method, channel="portal", actor="portal", terms_version=TERMS_VERSION,
            first_due_after=date(2026, 10, 31), now=services.clock.now(),
        )
        uow.commit()
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


def _read_only_url(backend: str, database_url: str) -> str:
    if backend == "sqlite":
        path = make_url(database_url).database
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    return make_url(database_url).update_query_dict(
        {"options": "-c default_transaction_read_only=on"}
    ).render_as_string(hide_password=False)


def _unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'securepay.db'}"
    return "postgresql+psycopg://securepay@127.0.0.1:1/securepay"  # nothing listens on port 1


def _run(env: dict[str, str], args: list[str], accounts_csv: Path) -> Result:
    args = [arg.replace("{accounts_csv}", str(accounts_csv)) for arg in args]
    # A processor key and a mail server (nothing is sent: the database fails first).
    extra = {"STRIPE_API_KEY": "sk_test_unused", "SECUREPAY_SMTP_HOST": "127.0.0.1",
             "SECUREPAY_SMTP_PORT": "1"}
    return CliRunner().invoke(main, args, env={**env, **extra})


def _assert_one_line(result: Result, *, expected: str) -> None:
    # Before: the SQLAlchemy error escaped the command (a traceback on a terminal).
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    # Log records (alembic's "Context impl ...") are the log's; the command says one line.
    lines = [line for line in result.output.strip().splitlines() if not LOG_RECORD.match(line)]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and expected in lines[0], lines[0]
    for leak in LEAKS:
        assert leak not in result.output, result.output


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_writing_command_on_a_read_only_database_is_one_line_and_exit_1(
    seeded: Flask, backend: str, database_url: str, test_env: dict[str, str], accounts_csv: Path,
    command: str,
) -> None:
    env = {**test_env, "SECUREPAY_DATABASE_URL": _read_only_url(backend, database_url)}
    result = _run(env, WRITERS[command], accounts_csv)
    _assert_one_line(result, expected="the database is read-only")


@pytest.mark.parametrize("command", sorted(ALL))
def test_every_command_on_an_unreachable_database_is_one_line_and_exit_1(
    backend: str, tmp_path: Path, test_env: dict[str, str], accounts_csv: Path, command: str
) -> None:
    env = {**test_env, "SECUREPAY_DATABASE_URL": _unreachable_url(backend, tmp_path)}
    result = _run(env, ALL[command], accounts_csv)
    _assert_one_line(result, expected="cannot reach the database")


def test_a_real_terminal_sees_one_line_on_stderr(
    seeded: Flask, backend: str, database_url: str, test_env: dict[str, str]
) -> None:
    env = {**test_env, "SECUREPAY_DATABASE_URL": _read_only_url(backend, database_url)}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", "from ivr.cli import main; main()",
         "pin", "reset", ACCOUNT, "--staff", "J. Ortiz", "--reason", "member request"],
        env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "the database is read-only" in done.stderr, done.stderr
    for leak in LEAKS:
        assert leak not in done.stderr
