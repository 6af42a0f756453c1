"""SECURITY 17 and 19: every trail event says who, what, when, where, and whether it
succeeded, and never holds a secret. Whole calls through the softphone, then staff commands,
then every row of the trail checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC

import pytest
from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent
from ivr.cli.pin import pin_group
from ivr.secret_scan import scan_text
from ivr.services import current_services
from ivr.softphone import Softphone
from tests.ledger_checks import DECLINES_AT_CHARGE
from tests.members import NEW_PIN, OTHER_SSN, PIN, SSN, Member, add_members

CALLER = "+12025550143"
LOCKED_CALLER = "+12025550177"
CARD = "4242424242424242"
CVC = "093"
SECRETS = [PIN, SSN, OTHER_SSN, NEW_PIN, CARD, CVC]
MENU_KEYS = set("0123456789*#")

# What each kind of event must say besides who, when, where: a reason when it failed.
FAILURES_WITH_REASON = {"pin_rejected", "ssn_rejected", "payment_refused", "step_refused"}


@pytest.fixture
def trail(app: Flask, card_phone: Callable[..., Softphone]) -> list[AuditEvent]:
    """The trail of a day: identify, PIN right/wrong/locked, SSN, new PIN, paid, declined,
    transfer, and staff reset and unlock."""
    add_members(
        app,
        Member("10004821", phones=[CALLER]),
        Member("20003355", pin=None),
        Member("30007714", phones=[LOCKED_CALLER]),
    )
    good = f"{CARD} 12/30 {CVC}"
    calls = [
        # a wrong PIN, the right one, the full balance paid with a new card
        card_phone(good).call(CALLER, ["1", "1111", "1", PIN, "1", "2", "1"]),
        # keyed account without a PIN: a wrong SSN, the right one, a new PIN, confirmed
        card_phone().call("+12025550166", ["1", "20003355#", OTHER_SSN, SSN, NEW_PIN, NEW_PIN]),
        # another amount, a declined card, back to the menu, member services (a transfer)
        card_phone(DECLINES_AT_CHARGE).call(
            "+12025550166", ["1", "20003355#", NEW_PIN, "2", "12#", "2", "1", "2", "0"]
        ),
        # five wrong PINs over two calls lock the account; the third call is refused
        card_phone().call(LOCKED_CALLER, ["1", "1111", "1", "2222", "1", "3333"]),
        card_phone().call(LOCKED_CALLER, ["1", "4444", "1", "5555"]),
        card_phone().call(LOCKED_CALLER, ["1", PIN]),
    ]
    assert all(call.ok for call in calls)
    assert "Your confirmation number is" in calls[0].said_text()
    runner = app.test_cli_runner()
    for action in ("unlock", "reset"):
        result = runner.invoke(
            pin_group, [action, "30007714", "--staff", "J. Staff", "--reason", "member called the desk"]
        )
        assert result.exit_code == 0, result.output
    with app.app_context():
        sealer = current_services().sealer
        assert sealer is not None
        sealer.wait_sealed()  # the web workers' sealer runs moments after each commit
    with app.app_context(), current_services().sessions() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        session.expunge_all()
    return rows


def test_the_day_covers_every_kind_of_event_an_auditor_asks_about(trail: list[AuditEvent]) -> None:
    kinds = {e.event for e in trail}
    assert {
        "call_started", "language_chosen", "call_capture", "account_identified", "pin_verified",
        "pin_rejected", "pin_locked", "ssn_rejected", "ssn_verified", "pin_created", "menu_chosen",
        "payment_attempt_opened", "payment_succeeded", "payment_declined", "transfer_requested",
        "call_ended", "pin_reset", "pin_unlock",
    } <= kinds
    assert {e.detail.get("reason") for e in trail if e.event == "pin_rejected"} >= {"mismatch", "locked"}


def test_every_event_says_when_and_where_and_whether_it_succeeded(trail: list[AuditEvent]) -> None:
    for event in trail:
        assert event.occurred_at.tzinfo is not None and event.occurred_at.utcoffset() == UTC.utcoffset(None)
        assert event.process, event.event
        assert isinstance(event.success, bool)
        assert event.seq > 0 and len(event.hash) == 64


def test_call_events_say_who_called_which_state_and_which_account_once_known(trail: list[AuditEvent]) -> None:
    identified: set[str] = set()
    for event in (e for e in trail if e.call_sid is not None):
        assert event.actor and event.actor.startswith("+1"), event.event
        assert event.detail.get("state"), event.event  # the state the call was in
        assert event.os_user is None and event.host is None  # no terminal behind a call
        if event.event in ("account_identified", "pin_verified", "ssn_verified"):
            identified.add(event.call_sid)
        if event.call_sid in identified and event.event != "account_identified":
            assert event.account_id is not None, event.event


def test_call_events_say_the_outcome_and_choices_as_labels(trail: list[AuditEvent]) -> None:
    ended = [e for e in trail if e.event == "call_ended"]
    assert len(ended) == len({e.call_sid for e in trail if e.call_sid is not None})
    assert all(e.detail.get("outcome") for e in ended)
    assert {e.detail["outcome"] for e in ended} >= {"transferred", "auth-failed"}
    for event in (e for e in trail if e.event == "menu_chosen"):
        choice = str(event.detail["choice"])
        assert choice and not set(choice) <= MENU_KEYS, choice  # a label, not the key
    for event in (e for e in trail if e.event in FAILURES_WITH_REASON):
        assert event.success is False and event.detail.get("reason"), event.event
    assert {e.event for e in trail if not e.success} >= {"pin_rejected", "ssn_rejected", "payment_declined"}


def test_staff_events_say_who_from_which_terminal_and_why(trail: list[AuditEvent]) -> None:
    staff = [e for e in trail if e.event in ("pin_reset", "pin_unlock")]
    assert [e.event for e in staff] == ["pin_unlock", "pin_reset"]
    for event in staff:
        assert (event.actor, event.detail["reason"]) == ("J. Staff", "member called the desk")
        assert event.os_user and event.host and event.process
        assert event.account_id is not None and event.call_sid is None


def test_no_event_holds_a_secret_typed_in_the_calls(trail: list[AuditEvent]) -> None:
    for event in trail:
        row = json.dumps({c: str(getattr(event, c)) for c in ("actor", "call_sid", "event")} | event.detail)
        assert scan_text(row, f"seq {event.seq}", SECRETS) == [], row
        for value in event.detail.values():
            assert not any(secret in str(value) for secret in SECRETS), (event.event, value)
