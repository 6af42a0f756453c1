"""``securepay demo``: a newcomer's first run, start to finish, on this machine only.

Each test runs the real command (localstripe on 127.0.0.1, a fresh SQLite database in
the test's folder, the real app, the softphone playing Twilio and ``<Pay>``).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from callcapture.numbers import normalize_on_file
from ivr.cli.demo import (
    DEMO_CALLER,
    DEMO_MEMBERS,
    DEMO_SCRIPT,
    NEWCOMER,
    KeyCard,
    accounts_csv,
    demo_command,
)
from ivr.flows.pin_policy import PinPolicy
from ivr.secret_scan import appears_alone

CARD_DIGITS = re.compile(r"\d{12,19}")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The demo's app logs to the stderr CliRunner lends it; put the real one back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def run_demo(folder: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(demo_command, ["--dir", str(folder), *args], input=stdin)


def scripted_card_numbers() -> list[str]:
    return [step.card.split()[0] for step in DEMO_SCRIPT if isinstance(step, KeyCard)]


def test_the_scripted_demo_exits_0_and_reads_the_balance(tmp_path: Path) -> None:
    result = run_demo(tmp_path)

    assert result.exit_code == 0, result.output
    assert "IVR (en-US): Your balance is 123 dollars and 45 cents, due December 15." in result.output
    assert "completed as scripted; the IVR hung up." in result.output
    assert f"Database: {tmp_path / 'demo.db'}" in result.output
    assert "securepay demo --interactive" in result.output
    assert f"securepay call --from {DEMO_CALLER}" in result.output
    for member in DEMO_MEMBERS:  # the intro gives the PINs to type
        assert f"account {member.account_number}" in result.output
        assert member.pin is None or f"PIN {member.pin}" in result.output
    assert not CARD_DIGITS.search(result.output)
    with sqlite3.connect(tmp_path / "demo.db") as db:
        assert db.execute("SELECT count(*) FROM accounts").fetchone() == (len(DEMO_MEMBERS),)
        assert db.execute("SELECT count(*) FROM calls").fetchone() == (1,)


def test_the_scripted_demo_ends_with_a_confirmation_number(tmp_path: Path) -> None:
    """CONFIRMATION: the scripted call pays the balance and hears its confirmation number."""
    result = run_demo(tmp_path, "--logs")

    assert result.exit_code == 0, result.output
    # CONFIRMATION: said by the IVR, and the same number is in the ledger for this call.
    said = re.search(r"Your confirmation number is ([\d ]+)\.", result.output)
    assert said is not None, result.output
    number = said.group(1).replace(" ", "")
    assert f"Payment taken: $123.45, confirmation number {number}" in result.output
    with sqlite3.connect(tmp_path / "demo.db") as db:
        assert db.execute("SELECT confirmation, amount_cents FROM payments").fetchall() == [(number, 12345)]
    # The card went to localstripe and nowhere else: not the output, not the logs, not a row.
    for digits in scripted_card_numbers():
        assert digits not in result.output
        assert digits.encode() not in (tmp_path / "demo.db").read_bytes()


def test_the_scripted_call_is_the_fast_lane_and_its_figures_meet_the_targets(tmp_path: Path) -> None:
    result = run_demo(tmp_path)

    assert result.exit_code == 0, result.output
    out = result.output
    assert "with Visa ending 4 2 4 2." in out and "You are about to pay" not in out
    assert "<Pay>:" not in out.split("Summary")[1]  # no card typed: the stored Visa paid
    figures = out.split("The caller's minute")[1].splitlines()
    rows = {line[:42].strip(): line for line in figures[2:6]}
    assert set(rows) == {
        "returning caller, stored card (English)", "returning caller, stored card (Spanish)",
        "new card, caller ID found (English)", "keyed account, new card (English)",
    }
    for path, target in [
        ("returning caller, stored card (English)", "<= 45 s met"),
        ("returning caller, stored card (Spanish)", "<= 55 s met"),
        ("new card, caller ID found (English)", "<= 90 s met"),
    ]:
        assert rows[path].endswith(target), rows[path]
        words, waited, _s, estimate, *_ = rows[path][42:].split()
        assert abs(float(estimate) - (int(words) * 60 / 150 + int(waited))) < 0.06


def test_an_interactive_caller_types_keys_and_a_hidden_card(tmp_path: Path) -> None:
    # The security code has a leading zero so it cannot turn up by chance in a call SID or
    # a confirmation number: found standing alone, it would be a leak.
    # A newcomer (no card on file): English, the PIN, pay in full, do not save, the card.
    typed = ["1", "5821", "1", "2", "4242424242424242", "12/30", "087", "1", ""]

    result = run_demo(tmp_path, "--interactive", stdin="\n".join(typed) + "\n")

    assert result.exit_code == 0, result.output
    assert f"You are calling from {NEWCOMER}." in result.output
    assert "Your balance is 245 dollars and 10 cents" in result.output
    assert "Your confirmation number is" in result.output
    assert "4242424242424242" not in result.output
    assert not appears_alone("087", result.output)


def test_a_call_that_ends_before_the_script_does_exits_1(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--keys", "1,4739,6,6,6,6,6")  # three wrong keys end the call

    assert result.exit_code == 1
    assert "did NOT complete as scripted" in result.output


def test_a_malformed_card_is_refused_without_repeating_it(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--card", "4242424242424242 123")

    assert result.exit_code == 2
    assert "card entry 1" in result.output and "4242424242424242" not in result.output
    assert not (tmp_path / "demo.db").exists()


def test_the_demo_members_are_what_the_intro_says() -> None:
    rows = {row["account_number"]: row for row in csv.DictReader(io.StringIO(accounts_csv()))}
    policy = PinPolicy()

    assert sorted(rows) == sorted(member.account_number for member in DEMO_MEMBERS)
    for member in DEMO_MEMBERS:
        row = rows[member.account_number]
        assert member.phone == normalize_on_file(row["phones"].split(";")[0])
        assert row["ssn_last4"] == member.ssn_last4
        if member.pin is not None:  # a PIN the app itself would let the member choose
            rejection = policy.check(
                member.pin,
                account_number=member.account_number,
                caller_number=member.phone,
                matches_ssn=lambda pin, ssn=member.ssn_last4: pin == ssn,
            )
            assert rejection is None, (member.account_number, rejection)
    callers = [row for row in rows.values() if "555-0142" in row["phones"]]
    assert len(callers) == 1 and callers[0]["balance"] == "123.45"  # Call Capture finds one account
    assert {row["language"] for row in rows.values()} >= {"en", "es"}
    assert any(row["past_due"] for row in rows.values())
    assert any(member.pin is None for member in DEMO_MEMBERS)
