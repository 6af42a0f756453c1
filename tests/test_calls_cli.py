"""Contract 4 and issue 4 (items 3 and 6): ``securepay calls list|show|stats`` over a
day of whole calls with known outcomes, placed through signed webhooks (both backends)."""

from __future__ import annotations

import csv
import io
import json
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask

from ivr.cli.call_stats import FUNNEL
from ivr.cli.calls import calls_group
from ivr.secret_scan import appears_alone
from ivr.softphone import Softphone
from ivr.softphone.keys import GatherPrompt, KeyPress, ScriptedKeys
from tests.fakes import FakeClock
from tests.ledger_checks import DECLINES_AT_CHARGE, VISA, books
from tests.members import NEW_PIN, OTHER_SSN, PIN, SSN, Member, add_members

PayPhone = Callable[..., Softphone]
CALLER = "+12025550143"
OTHER_CALLER = "+12025550178"
ACCOUNT = "10004821"
OTHER_ACCOUNT = "20007315"
WRONG_PIN = "0735"
TO_MENU = ["1", "1", PIN]  # English, the account found by caller ID, the PIN
WRONG_THRICE = ["1", "1", WRONG_PIN, "1", WRONG_PIN, "1", WRONG_PIN]
STEP = timedelta(seconds=10)  # each answer to a prompt takes the caller 10 seconds
SECRETS = (PIN, WRONG_PIN, SSN, OTHER_SSN, NEW_PIN, "4242424242424242", "4000000000000341")


class TimedKeys:
    """Scripted keys on a clock: the caller takes ``STEP`` to answer each prompt."""

    def __init__(self, keys: Sequence[str], clock: FakeClock) -> None:
        self._keys = ScriptedKeys(keys)
        self._clock = clock

    def keys_for(self, gather: GatherPrompt) -> KeyPress:
        self._clock.advance(STEP)
        return self._keys.keys_for(gather)


@dataclass(frozen=True)
class Placed:
    outcome: str
    sid: str


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    """A November 2026 time in Chicago (UTC-6), as UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) + timedelta(hours=6)


@pytest.fixture
def day_of_calls(app: Flask, clock: FakeClock, card_phone: PayPhone) -> dict[str, Placed]:
    """Nine calls: eight on Tuesday 24 November (Chicago), one on the Wednesday."""
    add_members(app, Member(ACCOUNT, phones=[CALLER]), Member(OTHER_ACCOUNT, phones=[OTHER_CALLER]))
    script: list[tuple[str, datetime, str, list[str], tuple[str, ...]]] = [
        ("declined", _local(24, 10), CALLER, [*TO_MENU, "1", "2", "1"], (DECLINES_AT_CHARGE,)),
        ("paid", _local(24, 11), CALLER, [*TO_MENU, "1", "2", "1"], (VISA,)),
        ("abandoned", _local(24, 11, 30), CALLER, [*TO_MENU, "2", "20#"], ()),
        ("transferred", _local(24, 14), CALLER, [*TO_MENU, "0"], ()),
        ("no-input", _local(24, 14, 10), CALLER, [*TO_MENU, "", "", ""], ()),
        ("auth-failed", _local(24, 15), OTHER_CALLER, WRONG_THRICE, ()),
        ("locked-out", _local(24, 15, 30), OTHER_CALLER, WRONG_THRICE, ()),
        ("late no-input", _local(24, 22, 30), CALLER, ["", "", "", ""], ()),  # 04:30 UTC on the 25th
        ("next day", _local(25, 10), CALLER, ["h"], ()),
    ]
    placed: dict[str, Placed] = {}
    for name, start, caller, keys, cards in script:
        clock.current = start
        transcript = card_phone(*cards).call(caller, TimedKeys(keys, clock))
        assert transcript.ok, transcript.events
        placed[name] = Placed(name, transcript.call_sid)
    return placed


def calls(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(calls_group, list(args))


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:  # standing alone: a call SID may hold any four digits by chance
        assert not appears_alone(secret, text)


TUESDAY = ("--since", "2026-11-24", "--until", "2026-11-24")


# --- list -----------------------------------------------------------------------------


def test_list_shows_the_days_calls_in_the_utilitys_time_with_accounts_by_last_four(
    app: Flask, day_of_calls: dict[str, Placed]
) -> None:
    result = calls(app, "list", *TUESDAY)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["CALL", "SID", "STARTED", "DURATION", "CALLER", "ACCOUNT", "OUTCOME", "PAID"]
    paid = next(line for line in lines if day_of_calls["paid"].sid in line)
    assert "2026-11-24 11:00:00 CST" in paid and "...4821" in paid and "$123.45" in paid
    assert CALLER in paid and ACCOUNT not in result.output
    late = next(line for line in lines if day_of_calls["late no-input"].sid in line)
    assert "2026-11-24 22:30:00 CST" in late  # 04:30 UTC on the 25th: still Tuesday in Chicago
    assert day_of_calls["next day"].sid not in result.output
    assert lines[-1] == "8 calls in 2026-11-24 (America/Chicago); accounts by last four."
    assert_no_secret(result.output)


def test_list_as_json_has_every_call_and_field(app: Flask, day_of_calls: dict[str, Placed]) -> None:
    result = calls(app, "list", *TUESDAY, "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["outcome"] for r in records] == [
        "declined", "paid", "abandoned", "transferred", "no-input", "auth-failed", "locked-out", "no-input",
    ]
    paid = records[1]
    assert paid == {
        "call_sid": day_of_calls["paid"].sid,
        "started_at": "2026-11-24T17:00:00Z",
        "started_local": "2026-11-24T11:00:00-06:00",
        "duration_seconds": paid["duration_seconds"],
        "caller": CALLER,
        "account_last4": "4821",
        "outcome": "paid",
        "amount_paid": "123.45",
    }
    assert paid["duration_seconds"] > 0
    assert records[-1]["account_last4"] is None and records[-1]["amount_paid"] is None
    assert_no_secret(result.output)


def test_list_as_csv_filters_by_outcome(app: Flask, day_of_calls: dict[str, Placed]) -> None:
    result = calls(app, "list", *TUESDAY, "--format", "csv", "--outcome", "no-input")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [row["call_sid"] for row in rows] == [
        day_of_calls["no-input"].sid, day_of_calls["late no-input"].sid,
    ]
    assert rows[0]["account_last4"] == "4821" and rows[1]["account_last4"] == ""
    assert rows[1]["started_local"] == "2026-11-24T22:30:00-06:00"


def test_list_filters_by_account_and_by_caller_in_any_format(
    app: Flask, day_of_calls: dict[str, Placed]
) -> None:
    by_account = json.loads(
        calls(app, "list", *TUESDAY, "--account", OTHER_ACCOUNT, "--format", "json").output
    )
    assert [r["outcome"] for r in by_account] == ["auth-failed", "locked-out"]
    by_caller = json.loads(
        calls(app, "list", "--since", "2026-11-24", "--until", "2026-11-25",
              "--caller", "(202) 555-0178", "--format", "json").output
    )
    assert [r["call_sid"] for r in by_caller] == [
        day_of_calls["auth-failed"].sid, day_of_calls["locked-out"].sid,
    ]
    both_days = json.loads(
        calls(app, "list", "--since", "2026-11-24", "--until", "2026-11-25", "--format", "json").output
    )
    assert len(both_days) == 9


def test_list_defaults_to_today_in_the_utilitys_zone(app: Flask, clock: FakeClock,
                                                     day_of_calls: dict[str, Placed]) -> None:
    clock.current = _local(25, 18)
    result = calls(app, "list", "--format", "json")
    assert [r["call_sid"] for r in json.loads(result.output)] == [day_of_calls["next day"].sid]
    assert calls(app, "list", "--since", "2026-11-23", "--until", "2026-11-23").output == (
        "No calls in 2026-11-23 (America/Chicago).\n"
    )


@pytest.mark.parametrize("args, message", [
    (("--since", "24/11/2026"), "Error: --since must be a date as YYYY-MM-DD, got '24/11/2026'"),
    (("--since", "2026-11-25", "--until", "2026-11-24"),
     "Error: --since (2026-11-25) is after --until (2026-11-24)"),
    (("--outcome", "hung-up"), "Error: --outcome must be one of paid, declined, locked-out, auth-failed, "
                               "abandoned, transferred, no-input, unidentified, payment-unknown, completed, "
                               "error, busy, no-answer, failed, canceled; got 'hung-up'"),
    (("--caller", "555-01"),
     "Error: --caller '555-01': the number does not exist (wrong length or area code)"),
    (("--account", "12-34"), "Error: --account must be an account number (digits), got '12-34'"),
    (("--account", "99999999"), "Error: no account 99999999"),
])
def test_list_refuses_bad_input_in_one_line(app: Flask, args: tuple[str, ...], message: str) -> None:
    result = calls(app, "list", *args)
    assert result.exit_code != 0
    assert result.output == message + "\n"


# --- show -----------------------------------------------------------------------------


def test_show_tells_a_paid_call_as_labels_with_times_and_processor_ids(
    app: Flask, day_of_calls: dict[str, Placed]
) -> None:
    sid = day_of_calls["paid"].sid
    result = calls(app, "show", sid)
    assert result.exit_code == 0, result.output
    out = result.output
    (payment,) = books(app).payments
    assert f"Call {sid}\n  started   2026-11-24 11:00:00 CST (2026-11-24T17:00:00Z)\n" in out
    assert "  caller    +12025550143\n  account   ending 4821\n  outcome   paid\n  paid      $123.45\n" in out
    for label in (
        "English chosen", "caller ID matched 1 account on file", "account identified by caller ID",
        "PIN entered, 4 digits, correct", "pay full balance", "new card, do not save",
        "card taken by Twilio <Pay> (visa)", "confirm: attempt 1 for $123.45",
        f"payment taken: $123.45, {payment.processor_id}", "call ended: paid",
    ):
        assert label in out, label
    assert "+0:30  11:00:30  pin_entry" in out  # the third answer, 30 seconds in
    assert f"processor {payment.processor_id}" in out and f"confirmation {payment.confirmation}" in out
    assert "Time in each state" in out
    assert_no_secret(out)


def test_show_gives_wrong_pins_as_their_length_and_the_lockout(
    app: Flask, day_of_calls: dict[str, Placed]
) -> None:
    out = calls(app, "show", day_of_calls["locked-out"].sid).output
    assert out.count("PIN entered, 4 digits, wrong") == 2
    assert "account locked after 5 failed entries" in out
    assert "PIN entered, 4 digits, refused, the account is locked" in out
    assert "outcome   locked-out" in out and "Payment attempts\n  none\n" in out
    assert_no_secret(out)


def test_show_adds_up_the_time_in_each_state(app: Flask, day_of_calls: dict[str, Placed]) -> None:
    out = calls(app, "show", day_of_calls["no-input"].sid).output
    section = out.split("Time in each state\n")[1].split("\n\n")[0].splitlines()
    assert [line.split() for line in section] == [
        ["STATE", "TIME"],
        ["language", "10s"], ["confirm_found", "10s"], ["pin_entry", "10s"],
        ["account_menu", "30s"], ["no_input_goodbye", "0s"],
    ]
    assert "3 misses in a row: call ends" in out and out.count("no input") == 2


def test_show_of_an_unknown_call_is_one_line_and_exit_1(app: Flask) -> None:
    result = calls(app, "show", "CA" + "0" * 32)
    assert (result.exit_code, result.output) == (1, f"Error: no call CA{'0' * 32}\n")


# --- stats ----------------------------------------------------------------------------


def test_stats_figures_from_a_day_of_known_calls(app: Flask, day_of_calls: dict[str, Placed]) -> None:
    result = calls(app, "stats", *TUESDAY)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "  calls:               8\n" in out
    assert "  containment:         12.5% (1 paid without a transfer)\n" in out
    assert "  average time to pay: 1m 00s (call start to payment taken, 1 paid)\n" in out
    assert "  PIN failures:        6 in 2 calls; SSN failures: 0\n" in out
    assert "  lockouts:            1 account locked; 1 call ended locked out\n" in out
    gave_up = out.split("by the last state reached)\n")[1].split("\n\n")[0].splitlines()
    assert [line.split() for line in gave_up] == [
        ["account_menu", "1"], ["confirm_found", "1"], ["save_card", "1"],
    ]
    funnel = out.split("Funnel\n")[1].split("\n\n")[0].splitlines()
    assert [line.rsplit(maxsplit=2)[0].strip() for line in funnel] == list(FUNNEL)
    assert [int(line.split()[-2]) for line in funnel] == [8, 7, 5, 3, 2, 1]
    hours = out.split("Calls per hour (America/Chicago)\n")[1].splitlines()
    assert [line.split()[:2] for line in hours] == [
        ["10:00", "1"], ["11:00", "2"], ["14:00", "2"], ["15:00", "2"], ["22:00", "1"],
    ]
    assert_no_secret(out)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert kind == b"IHDR" and zlib.crc32(data[12 : 16 + length]) == crc
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_stats_draws_the_funnel_and_calls_per_hour_into_a_png(
    app: Flask, day_of_calls: dict[str, Placed], tmp_path: Path
) -> None:
    target = tmp_path / "calls.png"
    result = calls(app, "stats", *TUESDAY, "--plot", str(target))
    assert result.exit_code == 0, result.output
    assert result.output.endswith(f"\nPlot written to {target}\n")
    data = target.read_bytes()
    assert _png_size(data) == (1200, 500)
    assert len(data) > 20_000  # bars, labels and titles, not a blank canvas


def test_without_the_plot_extra_plot_is_one_line_and_nothing_written(
    app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = [name for name in sys.modules if name.split(".")[0] == "matplotlib"]
    for name in loaded or ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: import fails
    monkeypatch.delitem(sys.modules, "ivr.cli.call_plot", raising=False)
    target = tmp_path / "calls.png"
    result = calls(app, "stats", "--plot", str(target))
    assert result.exit_code == 1
    assert result.output == "Error: --plot needs matplotlib, an extra: pip install 'securepay[plot]'\n"
    assert not target.exists()


def test_stats_plot_must_be_a_png(app: Flask, tmp_path: Path) -> None:
    result = calls(app, "stats", "--plot", str(tmp_path / "calls.jpg"))
    assert result.exit_code == 2
    assert result.output == f"Error: --plot must name a .png file, got '{tmp_path / 'calls.jpg'}'\n"


def test_stats_of_a_day_without_calls(app: Flask) -> None:
    result = calls(app, "stats", "--since", "2026-11-23", "--until", "2026-11-23")
    assert result.exit_code == 0, result.output
    assert "  calls:               0\n" in result.output
    assert "  containment:         n/a (0 paid without a transfer)\n" in result.output
