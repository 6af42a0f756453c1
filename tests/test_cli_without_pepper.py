"""Issue 11, defect 6 (SECURITY 19a): commands that hash nothing run without the pepper;
the one that hashes says so in one line and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import Engine, func, select

from db.models import Account, AuditEvent
from ivr import create_app
from ivr.cli import main
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from tests.members import Member, add_members

ACCOUNT = "10004821"


@pytest.fixture
def seeded(test_env: dict[str, str], engine: Engine) -> Iterator[Flask]:
    app = create_app(Settings.from_env(test_env), cli=True)
    add_members(app, Member(ACCOUNT, phones=["+12025550143"]))
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


@pytest.fixture
def no_pepper(test_env: dict[str, str]) -> dict[str, str | None]:
    env: dict[str, str | None] = {**test_env, "SECUREPAY_PEPPER": None, "SECUREPAY_PEPPER_FILE": None,
                                  "CREDENTIALS_DIRECTORY": None}
    return env


def run(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


@pytest.mark.parametrize("args", [
    ("pin", "status", ACCOUNT),
    ("pin", "reset", ACCOUNT, "--staff", "J. Ortiz", "--reason", "member request"),
    ("pin", "unlock", ACCOUNT, "--staff", "J. Ortiz", "--reason", "verified by phone"),
    ("calls", "list"),
    ("calls", "stats"),
    ("audit", "verify"),
    ("audit", "anchor"),
    ("audit", "export"),
    ("payments", "export"),
], ids=" ".join)
def test_staff_and_auditor_commands_run_without_the_pepper(
    seeded: Flask, no_pepper: dict[str, str | None], args: tuple[str, ...]
) -> None:
    result = run(no_pepper, *args)
    assert result.exit_code == 0, result.output
    assert "SECUREPAY_PEPPER" not in result.output


def test_a_staff_action_without_the_pepper_is_still_in_the_trail(
    seeded: Flask, no_pepper: dict[str, str | None]
) -> None:
    assert run(no_pepper, "pin", "reset", ACCOUNT, "--staff", "J. Ortiz", "--reason", "lost").exit_code == 0
    assert run(no_pepper, "audit", "verify").exit_code == 0
    with seeded.extensions[EXTENSION_KEY].sessions() as session:
        assert session.scalar(select(AuditEvent.actor).where(AuditEvent.event == "pin_reset")) == "J. Ortiz"


def test_import_without_the_pepper_is_one_line_naming_it_and_writes_nothing(
    engine: Engine, no_pepper: dict[str, str | None], tmp_path: Path
) -> None:
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(
        "account_number,account_type,name,ssn_last4,phones,balance,due_date\n"
        "20007315,residential,Okafor,0618,202-555-0178,80.00,2026-11-30\n"
    )
    result = run(no_pepper, "import", "accounts", str(accounts))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: SECUREPAY_PEPPER is not set: the PIN and SSN hashing key is required"
    ]
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Account)) == 0


def test_the_pepper_may_come_from_a_systemd_credential(
    engine: Engine, no_pepper: dict[str, str | None], tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "SECUREPAY_PEPPER").write_text("a-pepper-from-systemd-credentials\n")
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(
        "account_number,account_type,name,ssn_last4,phones,balance,due_date\n"
        "20007315,residential,Okafor,0618,202-555-0178,80.00,2026-11-30\n"
    )
    env = {**no_pepper, "CREDENTIALS_DIRECTORY": str(credentials)}
    result = run(env, "import", "accounts", str(accounts))
    assert result.exit_code == 0, result.output
    assert "created 1" in result.output
