"""SECURITY 7, 7a and 9a (issue 11, defect 2): the per-caller PIN throttle cannot be
dodged by withholding the caller ID, and a line-wide alarm slows guessers who spoof a new
caller ID every call.

What Twilio sends in ``From`` for a withheld caller ID ("ANONYMOUS", "RESTRICTED", or the
digits that spell them): https://twilio.com/changelog/upcoming-changes-to-withheld-caller-ids-behavior-for-dial-calls
(``callcapture.numbers`` reads them all as no caller ID).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent
from ivr.services import EXTENSION_KEY, Services
from ivr.softphone import Softphone
from tests.fakes import FakeClock
from tests.members import PIN, Member, add_members

ACCOUNTS = ["10004821", "20007315", "30001942", "40006638"]
W1, W2, W3 = "0735", "0846", "0957"  # wrong PINs
THREE_WRONG = [W1, "1", W2, "1", W3]
MENU = "Or press 2 for another amount or method"  # the account menu's last line
WRONG_PIN = "That PIN does not match our records."
ENDED = "We cannot verify your identity."
WITHHELD = ["anonymous", "Restricted", "+266696687", "unknown", "not-a-number"]


def services(app: Flask) -> Services:
    found: Services = app.extensions[EXTENSION_KEY]
    return found


def configure(app: Flask, **limits: int) -> None:
    services(app).flow_config = dataclasses.replace(services(app).flow_config, **limits)


def trail(app: Flask, *names: str) -> list[AuditEvent]:
    # In the order written (ids, given at insert): the web app's sealer numbers events
    # moments after each commit, so some may not have a seq yet (NULL sorts last).
    with services(app).sessions() as session:
        rows = list(session.scalars(
            select(AuditEvent).where(AuditEvent.event.in_(names)).order_by(AuditEvent.id)
        ))
        session.expunge_all()
        return rows


def reasons(app: Flask) -> list[str]:
    return [event.detail["reason"] for event in trail(app, "pin_rejected")]


@pytest.fixture
def members(app: Flask) -> None:
    add_members(app, *(Member(number) for number in ACCOUNTS))


@pytest.mark.parametrize("callers", [
    pytest.param(["+12025550166"] * 4, id="one-number"),
    pytest.param(WITHHELD[:4], id="withheld-or-invalid"),
])
def test_ten_wrong_pins_across_accounts_stop_the_eleventh(
    app: Flask, phone: Softphone, members: None, callers: list[str]
) -> None:
    for caller, account in zip(callers[:3], ACCOUNTS[:3], strict=True):
        phone.call(caller, ["1", f"{account}#", *THREE_WRONG])
    # The tenth failure, then the right PIN of a fresh account: refused, with the same words.
    last = phone.call(callers[3], ["1", f"{ACCOUNTS[3]}#", W1, "1", PIN])

    assert last.last_said().startswith(WRONG_PIN)
    assert reasons(app) == ["mismatch"] * 10 + ["caller_throttled"]


def test_withheld_callers_have_their_own_budget(app: Flask, phone: Softphone, members: None) -> None:
    configure(app, withheld_failures_per_hour=2)
    phone.call("anonymous", ["1", f"{ACCOUNTS[0]}#", W1, "1", W2, "1", PIN])
    # A caller with a number is not held up by the withheld callers' budget.
    known = phone.call("+12025550166", ["1", f"{ACCOUNTS[1]}#", PIN])

    assert reasons(app) == ["mismatch", "mismatch", "caller_throttled"]
    assert known.last_said().startswith(MENU)


def test_withheld_budget_is_a_setting(test_env: dict[str, str]) -> None:
    from ivr.settings import Settings

    settings = Settings.from_env({**test_env, "SECUREPAY_WITHHELD_FAILURES_PER_HOUR": "4",
                                  "SECUREPAY_LINE_FAILURES_PER_HOUR": "250"})
    assert (settings.withheld_failures_per_hour, settings.line_failures_per_hour) == (4, 250)
    assert Settings.from_env(test_env).line_failures_per_hour == 100


def test_a_right_pin_gives_the_withheld_budget_its_try_back(
    app: Flask, phone: Softphone, members: None
) -> None:
    configure(app, withheld_failures_per_hour=3)  # each try is reserved before it is verified
    phone.call("anonymous", ["1", f"{ACCOUNTS[0]}#", W1, "1", PIN])
    phone.call("Restricted", ["1", f"{ACCOUNTS[1]}#", W1, "1", PIN])
    assert reasons(app) == ["mismatch", "mismatch"]


def test_the_line_alarm_trips_once_logs_and_gives_each_call_one_try(
    app: Flask, phone: Softphone, members: None, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    configure(app, line_failures_per_hour=4)
    spoofed = iter(f"+1202555{n:04d}" for n in range(170, 190))  # a new caller ID every call
    for account in ACCOUNTS[:3]:
        before = phone.call(next(spoofed), ["1", f"{account}#", W1])  # three failures: no alarm
        assert before.last_said().startswith(WRONG_PIN)  # re-entry offered

    tripping = phone.call(next(spoofed), ["1", f"{ACCOUNTS[3]}#", W1, "1", W2])
    during = phone.call(next(spoofed), ["1", f"{ACCOUNTS[0]}#", W2, "1", W3])
    member = phone.call(next(spoofed), ["1", f"{ACCOUNTS[1]}#", PIN])

    # Tripped: a wrong entry ends the call at once (one try per call), with the same words.
    assert tripping.last_said().startswith(ENDED) and during.last_said().startswith(ENDED)
    assert W2 not in "".join(str(step) for step in tripping.said_text())
    assert member.last_said().startswith(MENU)  # the right PIN still works
    (alarm,) = trail(app, "pin_failure_alarm")
    assert alarm.detail["failures"] == 4 and alarm.detail["limit"] == 4 and not alarm.success
    counted = [event.detail.get("line_failures") for event in trail(app, "pin_rejected")]
    assert counted == [None, None, None, 4, 5]
    assert caplog.text.count("pin_failure_alarm_raised") == 1

    clock.advance(timedelta(minutes=61))  # the window closes: three tries a call again
    after = phone.call(next(spoofed), ["1", f"{ACCOUNTS[2]}#", W1])
    assert after.last_said().startswith(WRONG_PIN)
    assert len(trail(app, "pin_failure_alarm")) == 1
