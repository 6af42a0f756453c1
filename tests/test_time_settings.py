"""Issue 9, item 6: menu, entry and card-entry waits as settings; member services'
hours and number when closed; closure days (holidays) on which `0` dials nobody."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - parses only the IVR's own replies
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import stripe
from flask import Flask

from ivr import create_app
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings, SettingsError
from ivr.softphone import Dialed, FlaskTransport, Softphone
from payments.emulator import LocalStripe
from payments.stripe_gateway import StripeGateway
from tests.conftest import TEST_ENV
from tests.fakes import FakeClock
from tests.members import PIN, Member, add_members
from tests.twiml_checks import CheckingTransport

CALLER = "+12025550143"
CLOSED_TODAY = (
    "Member services is closed today. Hours are Monday through Friday, from 8 AM to 5 PM. "
    "The number is 2 0 2, 5 5 5, 0 1 0 0."
)


def app_with(
    test_env: dict[str, str], clock: FakeClock, client: stripe.StripeClient, base: str, **env: str
) -> Flask:
    settings = Settings.from_env({**test_env, "STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": base, **env})
    app = create_app(settings)
    services = app.extensions[EXTENSION_KEY]
    services.clock = clock
    services.gateway = StripeGateway(client)
    return app


def phone_for(app: Flask) -> Softphone:
    return Softphone(
        CheckingTransport(FlaskTransport(app)),
        auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
        public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"],
    )


def waits(call_bodies: list[str]) -> list[tuple[str, str]]:
    """(the first words said in each <Gather>, its timeout), in order."""
    found = []
    for body in call_bodies:
        if body.startswith("<?xml"):
            for gather in ET.fromstring(body).iter("Gather"):  # noqa: S314 - our own replies
                says = [say.text or "" for say in gather.iter("Say")]
                found.append((says[-1], gather.get("timeout", "")))
    return found


@pytest.fixture
def build(
    test_env: dict[str, str], clock: FakeClock, stripe_client: stripe.StripeClient, localstripe: LocalStripe
) -> Iterator[Callable[..., Flask]]:
    """``build(SECUREPAY_X="...")``: the real app with these settings added."""
    apps: list[Flask] = []

    def make(**env: str) -> Flask:
        app = app_with(test_env, clock, stripe_client, localstripe.base_url, **env)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions[EXTENSION_KEY].engine.dispose()


def test_the_waits_are_the_defaults_but_for_the_language_prompt(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["-", PIN, "2"])
    assert waits([e.body for e in call.exchanges]) == [
        ("Para español, oprima 2.", "2"),
        ("For a different account, press star.", "8"),
        ("Or press 2 for another amount or method, 3 last payment, 4 Auto Pay, 5 another account, "
         "0 member services.", "6"),
        ("Enter the amount with star for the decimal point, then pound. For 25 dollars 50 cents, press "
         "2 5 star 5 0 pound. Pound alone pays the full balance.", "8"),
    ]


def test_each_wait_is_a_setting(build: Callable[..., Flask]) -> None:
    app = build(
        SECUREPAY_LANGUAGE_TIMEOUT="3", SECUREPAY_MENU_TIMEOUT="9",
        SECUREPAY_ENTRY_TIMEOUT="12", SECUREPAY_CARD_ENTRY_TIMEOUT="15",
    )
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone_for(app).call(CALLER, ["-", PIN, "1", "2"])
    bodies = [e.body for e in call.exchanges]
    assert [timeout for _, timeout in waits(bodies)] == ["3", "12", "9", "9"]
    pay = next(body for body in bodies if "<Pay " in body)
    assert 'timeout="15"' in pay


@pytest.mark.parametrize("name", [
    "SECUREPAY_LANGUAGE_TIMEOUT", "SECUREPAY_MENU_TIMEOUT", "SECUREPAY_ENTRY_TIMEOUT",
    "SECUREPAY_CARD_ENTRY_TIMEOUT",
])
@pytest.mark.parametrize("value", ["0", "61", "two"])
def test_a_bad_wait_stops_the_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**TEST_ENV, name: value})


def test_closed_on_a_closure_day_says_hours_and_number_and_does_not_dial(
    build: Callable[..., Flask], clock: FakeClock, tmp_path: Path
) -> None:
    days = tmp_path / "closed-days.txt"
    days.write_text("# holidays\n2026-11-26  # Thanksgiving\n2026-12-25\n", encoding="utf-8")
    app = build(SECUREPAY_CLOSED_DAYS_FILE=str(days))
    add_members(app, Member("10004821", phones=[CALLER]))
    clock.current = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # Thursday 10:00 in Chicago
    call = phone_for(app).call(CALLER, ["1", PIN, "0"])
    assert CLOSED_TODAY in call.said_text()
    assert not [e for e in call.events if isinstance(e, Dialed)]
    assert call.last_said().startswith("Or press 2")  # back at the menu
    clock.current = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)  # the Friday after: open
    again = phone_for(app).call(CALLER, ["1", PIN, "0"])
    assert [e.number for e in again.events if isinstance(e, Dialed)] == ["+12025550100"]


def test_closed_on_a_closure_day_in_spanish(
    build: Callable[..., Flask], clock: FakeClock, tmp_path: Path
) -> None:
    days = tmp_path / "closed-days.txt"
    days.write_text("2026-11-26\n", encoding="utf-8")
    app = build(SECUREPAY_CLOSED_DAYS_FILE=str(days))
    add_members(app, Member("10004821", phones=[CALLER]))
    clock.current = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    call = phone_for(app).call(CALLER, ["2", PIN, "0"])
    assert (
        "Servicio al socio está cerrado hoy. El horario es de lunes a viernes, de 8:00 a 17:00. "
        "El número es 2 0 2, 5 5 5, 0 1 0 0."
    ) in call.said_text()
    assert not [e for e in call.events if isinstance(e, Dialed)]


def test_a_bad_closure_days_file_stops_the_start_with_its_line(tmp_path: Path) -> None:
    days = tmp_path / "closed-days.txt"
    days.write_text("2026-12-25\nChristmas Eve\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="SECUREPAY_CLOSED_DAYS_FILE line 2"):
        Settings.from_env({**TEST_ENV, "SECUREPAY_CLOSED_DAYS_FILE": str(days)})
    with pytest.raises(SettingsError, match="SECUREPAY_CLOSED_DAYS_FILE cannot be read"):
        Settings.from_env({**TEST_ENV, "SECUREPAY_CLOSED_DAYS_FILE": str(tmp_path / "missing.txt")})
