"""Contract 4 and SECURITY 19: staff reset and unlock a phone PIN, with name and reason."""

from __future__ import annotations

import getpass

from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent, PinCredential
from ivr.cli.pin import pin_group
from ivr.services import current_services
from ivr.softphone import Softphone
from tests.members import PIN, SSN, Member, add_members

CALLER = "+12025550143"
MENU = "Press 1 to pay the full balance."


def run(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(pin_group, list(args))
    return result.exit_code, result.output


def staff_events(app: Flask, name: str) -> list[AuditEvent]:
    with app.app_context(), current_services().unit_of_work() as uow:
        rows = list(uow.session.scalars(
            select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)
        ))
        uow.session.expunge_all()
        return rows


def test_reset_clears_the_pin_and_the_member_creates_one_on_the_next_call(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    code, out = run(app, "reset", "10004821", "--staff", "J. Ortiz", "--reason", "member request #4411")
    assert code == 0, out
    assert "Account ending 4821: PIN cleared" in out
    (event,) = staff_events(app, "pin_reset")
    assert event.actor == "J. Ortiz" and event.detail["reason"] == "member request #4411"
    assert event.os_user == getpass.getuser() and event.host
    call = phone.call(CALLER, ["1", SSN, "0582", "0582"])
    assert "This account has no PIN yet." in call.said_text()
    assert MENU in call.said_text() and call.last_said().startswith("Or press 2")


def test_unlock_lifts_a_lockout(app: Flask, phone: Softphone) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER]))
    for _ in range(2):
        phone.call(CALLER, ["1", "1111", "1", "2222", "1", "3333"])
    assert "locked:         yes" in run(app, "status", "10004821")[1]
    code, out = run(app, "unlock", "10004821", "--staff", "J. Ortiz", "--reason", "verified by phone")
    assert code == 0 and "unlocked" in out
    with app.app_context(), current_services().unit_of_work() as uow:
        row = uow.session.get(PinCredential, account_id)
        assert row is not None and row.locked_at is None and row.failure_count == 0
    unlocked = phone.call(CALLER, ["1", PIN])
    assert MENU in unlocked.said_text() and unlocked.last_said().startswith("Or press 2")
    assert len(staff_events(app, "pin_unlock")) == 1


def test_status_never_shows_the_pin(app: Flask) -> None:
    add_members(app, Member("10004821"))
    code, out = run(app, "status", "10004821")
    assert code == 0
    assert "PIN set:        yes" in out and "origin:         member" in out
    assert PIN not in out


def test_staff_name_and_reason_are_required(app: Flask) -> None:
    add_members(app, Member("10004821"))
    code, out = run(app, "reset", "10004821", "--reason", "x")
    assert code != 0 and "--staff" in out
    code, out = run(app, "unlock", "10004821", "--staff", "  ", "--reason", "x")
    assert code != 0 and "must not be empty" in out
    assert not staff_events(app, "pin_reset") and not staff_events(app, "pin_unlock")


def test_an_unknown_account_is_a_one_line_error(app: Flask) -> None:
    code, out = run(app, "reset", "99999999", "--staff", "J. Ortiz", "--reason", "x")
    assert code == 1
    assert out.strip() == "Error: no account 99999999"
