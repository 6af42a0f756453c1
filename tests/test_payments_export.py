"""``securepay payments export``: the payments of a window of days in the utility's zone,
as CSV or JSON, for posting into the billing system."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from db.payment_reports import DayWindow, payments_taken
from ivr.secret_scan import appears_alone
from ivr.services import EXTENSION_KEY, Services
from payments.cli import EXPORT_COLUMNS, payments_group
from tests.ledger_factory import Ledger, add_account
from tests.members import PIN, SSN

# The test clock says 2026-11-24 16:00 UTC: 10:00 on Tuesday, November 24 in Chicago.
CHICAGO_MIDNIGHT_24 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 00:00 local, CST (UTC-6)
MORNING_24 = datetime(2026, 11, 24, 15, 0, 7, 250000, tzinfo=UTC)  # 09:00 local
EVENING_24 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 20:00 local, Nov 24: 02:00 UTC is the day before
LATE_23 = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)  # 23:30 local, Nov 23
CHICAGO_MIDNIGHT_25 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 00:00 local Nov 25: not the 24th


def services_of(app: Flask) -> Services:
    services: Services = app.extensions[EXTENSION_KEY]
    return services


@pytest.fixture
def sessions(app: Flask) -> sessionmaker[Session]:
    return services_of(app).sessions


@pytest.fixture
def taken(sessions: sessionmaker[Session]) -> dict[str, str]:
    """Five payments around the edges of November 24 in Chicago, and a declined attempt;
    returns their confirmation numbers by name."""
    ledger = Ledger(sessions)
    rivera = add_account(sessions, "30048217")
    chen = add_account(sessions, "5512")
    confirmations: dict[str, str] = {}
    for name, account, cents, at, method in [
        ("midnight_24", rivera, 5, CHICAGO_MIDNIGHT_24, ("pm_1", "visa", "4242")),
        ("morning_24", rivera, 12345, MORNING_24, ("pm_2", "mastercard", "4444")),
        ("evening_24", chen, 100000, EVENING_24, ("pm_3", "STRIPE TEST BANK", "6789")),
        ("late_23", chen, 2500, LATE_23, ("pm_4", "visa", "4242")),
        ("midnight_25", rivera, 700, CHICAGO_MIDNIGHT_25, ("pm_5", "visa", "4242")),
    ]:
        attempt_id = ledger.begin_attempt(account, cents, at=at, method=method)
        status = "processing" if name == "evening_24" else "succeeded"
        recorded = ledger.succeed(attempt_id, f"pi_{name}", at=at, status=status)
        assert recorded.confirmation is not None
        confirmations[name] = recorded.confirmation
    declined = ledger.begin_attempt(rivera, 9900, at=MORNING_24)
    ledger.settle(
        declined, "declined", at=MORNING_24, processor_id="pi_declined", decline_code="do_not_honor"
    )
    return confirmations


def invoke(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(payments_group, ["export", *args])
    return result.exit_code, result.output


def rows_of(output: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(output)))


def test_default_is_today_in_the_utilitys_zone_as_csv(app: Flask, taken: dict[str, str]) -> None:
    code, output = invoke(app)

    assert code == 0
    assert output.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    rows = rows_of(output)
    assert [row["confirmation"] for row in rows] == [
        taken["midnight_24"],
        taken["morning_24"],
        taken["evening_24"],
    ]
    assert rows[1] == {
        "taken_at": "2026-11-24T15:00:07Z",
        "local_date": "2026-11-24",
        "account_number": "30048217",
        "amount": "123.45",
        "confirmation": taken["morning_24"],
        "processor_id": "pi_morning_24",
        "method_brand": "mastercard",
        "method_last4": "4444",
        "channel": "ivr",
        "status": "succeeded",
    }
    assert [row["amount"] for row in rows] == ["0.05", "123.45", "1000.00"]
    assert rows[2]["taken_at"] == "2026-11-25T02:00:00Z" and rows[2]["local_date"] == "2026-11-24"
    assert rows[2]["status"] == "processing"


def test_json_is_a_list_of_the_same_rows(app: Flask, taken: dict[str, str]) -> None:
    _, csv_output = invoke(app, "--format", "csv")
    code, output = invoke(app, "--format", "json")

    assert code == 0
    payments = json.loads(output)
    assert isinstance(payments, list)
    assert payments == rows_of(csv_output)
    assert all(isinstance(payment["amount"], str) for payment in payments)  # never a float


def test_since_and_until_are_whole_local_days_until_included(app: Flask, taken: dict[str, str]) -> None:
    def confirmations(*args: str) -> list[str]:
        code, output = invoke(app, *args)
        assert code == 0, output
        return [row["confirmation"] for row in rows_of(output)]

    assert confirmations("--since", "2026-11-23", "--until", "2026-11-23") == [taken["late_23"]]
    assert confirmations("--until", "2026-11-25") == [taken["midnight_25"]]
    assert confirmations("--since", "2026-11-23", "--until", "2026-11-25") == [
        taken["late_23"],
        taken["midnight_24"],
        taken["morning_24"],
        taken["evening_24"],
        taken["midnight_25"],
    ]
    assert confirmations("--since", "2026-11-23") == [  # until today
        taken["late_23"],
        taken["midnight_24"],
        taken["morning_24"],
        taken["evening_24"],
    ]
    assert confirmations("--since", "2026-11-20", "--until", "2026-11-22") == []


def test_an_empty_window_is_a_header_or_an_empty_list(app: Flask) -> None:
    assert invoke(app) == (0, ",".join(EXPORT_COLUMNS) + "\n")
    assert invoke(app, "--format", "json") == (0, "[]\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-13-01"], "Error: --since must be a date as YYYY-MM-DD, got '2026-13-01'"),
        (["--until", "24/11/2026"], "Error: --until must be a date as YYYY-MM-DD, got '24/11/2026'"),
        (["--until", "20261124"], "Error: --until must be a date as YYYY-MM-DD, got '20261124'"),
        (
            ["--since", "2026-11-25", "--until", "2026-11-24"],
            "Error: --since (2026-11-25) is after --until (2026-11-24)",
        ),
    ],
)
def test_bad_dates_are_one_line_and_exit_2(app: Flask, args: list[str], message: str) -> None:
    assert invoke(app, *args) == (2, message + "\n")


def test_nothing_secret_is_exported(app: Flask, taken: dict[str, str]) -> None:
    for fmt in ("csv", "json"):
        _, output = invoke(app, "--since", "2026-11-01", "--until", "2026-11-30", "--format", fmt)
        # Standing alone: a random confirmation number may hold any four digits by chance.
        assert not appears_alone(PIN, output) and not appears_alone(SSN, output)
        assert "pm_" not in output  # not even the processor's method ids
        assert "pi_declined" not in output  # attempts that took no money are not payments


def test_the_window_query_on_its_own(sessions: sessionmaker[Session], taken: dict[str, str]) -> None:
    window = DayWindow(date(2026, 11, 24), date(2026, 11, 24), ZoneInfo("America/Chicago"))
    assert (window.start, window.end) == (CHICAGO_MIDNIGHT_24, CHICAGO_MIDNIGHT_25)
    with sessions() as session:
        lines = payments_taken(session, window)
    assert [line.taken_at for line in lines] == [CHICAGO_MIDNIGHT_24, MORNING_24, EVENING_24]
    with pytest.raises(ValueError, match="ends"):
        DayWindow(window.until, window.since.replace(day=1), window.zone)
