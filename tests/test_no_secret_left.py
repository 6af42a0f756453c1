"""SECURITY 4 and 20: whole calls, then every log line and every database row scanned for
the secrets typed (PINs, SSN digits, card number, security code): none may appear."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from flask import Flask
from sqlalchemy import Engine

from ivr.cli.audit import audit_group
from ivr.logs import configure_logging
from ivr.secret_scan import scan_database, scan_files, scan_text
from ivr.softphone import Softphone
from payments.cli import payments_group
from tests.members import NEW_PIN, OTHER_SSN, PIN, SSN, Member, add_members

CARD = "4242424242424242"
CVC = "093"  # a code with a leading zero: nothing else in a call looks like it



@pytest.fixture
def log_stream(app: Flask) -> io.StringIO:
    """Everything logged from here on, as the JSON lines production writes."""
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    yield stream
    configure_logging("console")


def test_whole_calls_leave_no_secret_in_logs_or_database(
    app: Flask,
    engine: Engine,
    card_phone: Callable[..., Softphone],
    log_stream: io.StringIO,
    tmp_path: Path,
) -> None:
    add_members(app, Member("10004821", phones=["+12025550143"], email="rivera@example.test"))
    add_members(app, Member("20003355", pin=None))
    phone = card_phone(f"{CARD} 12/30 {CVC}", f"{CARD} 12/30 {CVC}")
    calls = [
        # a wrong PIN, the right one, then a paid bill with a new, saved card
        phone.call("+12025550143", ["1", "1111", "1", PIN, "1", "1", "1"]),
        # keyed account without a PIN: a wrong SSN, the right one, a new PIN, confirmed
        phone.call("+12025550166", ["1", "20003355#", OTHER_SSN, SSN, NEW_PIN, NEW_PIN]),
        # forgot the PIN: SSN, a new PIN; then pay another amount with a new card
        phone.call("+12025550143", ["1", "9999", "2", SSN, PIN, PIN, "2", "12#", "8", "2", "1"]),
    ]
    assert all(call.ok for call in calls)
    assert "Your confirmation number is" in calls[0].said_text()
    assert "Your confirmation number is" in calls[2].said_text()

    structlog.get_logger().info("canary", note=f"scanner self-check {PIN}")
    log_file = tmp_path / "securepay.log"
    log_file.write_text(log_stream.getvalue())
    assert log_stream.getvalue().count("\n") > 50  # the calls were really logged

    # The exports too: the posting batch (issue 11) and the trail for a SIEM.
    batch_file = tmp_path / "batch-0001.csv"
    posted = app.test_cli_runner().invoke(payments_group, ["export", "--batch", "--out", str(batch_file)])
    assert posted.exit_code == 0, posted.output
    assert batch_file.read_text().count("\n") == 4  # a header, two payments, the trailer
    trail_file = tmp_path / "trail.jsonl"
    trail = app.test_cli_runner().invoke(audit_group, ["export"])
    assert trail.exit_code == 0
    trail_file.write_text(trail.stdout)

    secrets = [PIN, SSN, OTHER_SSN, NEW_PIN, CARD, CVC]
    findings = scan_database(engine, secrets) + scan_files([log_file, batch_file, trail_file], secrets)
    # The canary line proves the scan finds a PIN where one stands alone in a log...
    assert [f.where for f in findings] == [f"{log_file}:{_canary_line(log_file)}"]


def _canary_line(log_file: Path) -> int:
    lines = log_file.read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if '"canary"' in line)


@pytest.mark.parametrize("text, kind", [
    ("card=4242 4242 4242 4242", "card_number"),
    ("pan 4000-0000-0000-0341 declined", "card_number"),
    ('{"cvc": "123"}', "security_code"),
    ("security_code=0931", "security_code"),
    ("entered 0473 at the prompt", "typed_secret"),
])
def test_the_scanner_finds_each_kind_of_secret(text: str, kind: str) -> None:
    (finding,) = scan_text(text, "here", secrets=[PIN])
    assert finding.kind == kind
    assert "4242 4242" not in str(finding) and PIN not in str(finding)


@pytest.mark.parametrize("text", [
    "confirmation 5474418630",  # 10 digits: not a card
    "pi_3abc0473def and CA0473ab",  # inside an identifier
    "+12025550473",  # inside a longer number
    "request_id=a4242424242424242b",  # digits inside a hex id are not a card
    "4242424242424241",  # fails Luhn
    '"SecurityCode": "***"',  # masked, as Twilio sends it
])
def test_the_scanner_leaves_ordinary_numbers_alone(text: str) -> None:
    assert scan_text(text, "here", secrets=[PIN]) == []
