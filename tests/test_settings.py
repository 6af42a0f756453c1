"""Contract 6: settings are read once and validated; a bad one is a one-line error."""

from __future__ import annotations

from datetime import time

import pytest

from ivr import create_app
from ivr.settings import BusinessHours, Settings, SettingsError

BASE = {"SECUREPAY_PEPPER": "a-pepper-of-sixteen+"}


def test_defaults_are_a_demo_utility() -> None:
    settings = Settings.from_env(BASE)
    assert settings.payment_min_cents == 100 and settings.payment_max_cents == 500_000
    assert settings.utility_name == "Demo Electric Cooperative"
    assert settings.portal_token is None and settings.stripe_api_key is None


@pytest.mark.parametrize("env, variable", [
    ({}, "SECUREPAY_PEPPER"),
    ({"SECUREPAY_PEPPER": "short"}, "SECUREPAY_PEPPER"),
    ({**BASE, "SECUREPAY_PAYMENT_MIN": "1.005"}, "SECUREPAY_PAYMENT_MIN"),
    ({**BASE, "SECUREPAY_PAYMENT_MAX": "lots"}, "SECUREPAY_PAYMENT_MAX"),
    ({**BASE, "SECUREPAY_PAYMENT_MIN": "50", "SECUREPAY_PAYMENT_MAX": "20"}, "SECUREPAY_PAYMENT_MAX"),
    ({**BASE, "SECUREPAY_TIMEZONE": "Mars/Olympus"}, "SECUREPAY_TIMEZONE"),
    ({**BASE, "SECUREPAY_BUSINESS_HOURS": "weekdays"}, "SECUREPAY_BUSINESS_HOURS"),
    ({**BASE, "SECUREPAY_PUBLIC_URL": "ivr.example.com"}, "SECUREPAY_PUBLIC_URL"),
    ({**BASE, "SECUREPAY_PIN_FAILURES_PER_ACCOUNT": "0"}, "SECUREPAY_PIN_FAILURES_PER_ACCOUNT"),
    ({**BASE, "SECUREPAY_AUTOPAY_RECORD_CONSENT": "maybe"}, "SECUREPAY_AUTOPAY_RECORD_CONSENT"),
    ({**BASE, "SECUREPAY_AUTOPAY_RUN_CAP": "0"}, "SECUREPAY_AUTOPAY_RUN_CAP"),
    ({**BASE, "SECUREPAY_AUTOPAY_DECLINES_TO_SUSPEND": "0"}, "SECUREPAY_AUTOPAY_DECLINES_TO_SUSPEND"),
])
def test_a_bad_setting_is_one_line_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert variable in message and "\n" not in message


def test_amount_limits_are_cents_without_floats() -> None:
    settings = Settings.from_env({**BASE, "SECUREPAY_PAYMENT_MIN": "0.10", "SECUREPAY_PAYMENT_MAX": "19.99"})
    assert (settings.payment_min_cents, settings.payment_max_cents) == (10, 1999)


def test_business_hours_accept_ranges_and_lists() -> None:
    hours = BusinessHours.parse("Sat-Mon 09:30-12:00")
    assert hours.days == frozenset({5, 6, 0}) and hours.opens == time(9, 30)
    assert BusinessHours.parse("Mon,Wed,Fri 08:00-17:00").days == frozenset({0, 2, 4})


def test_the_webhooks_refuse_to_start_without_the_twilio_token() -> None:
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN"):
        create_app(Settings.from_env(BASE))


def test_the_public_url_loses_its_trailing_slash() -> None:
    settings = Settings.from_env({**BASE, "SECUREPAY_PUBLIC_URL": "https://ivr.example.coop/"})
    assert settings.public_url == "https://ivr.example.coop"


def test_auto_pay_settings() -> None:
    default = Settings.from_env(BASE)
    assert not default.autopay_record_consent  # bank accounts through the portal
    assert (default.autopay_declines_to_suspend, default.autopay_run_cap_cents) == (2, 25_000_000)
    settings = Settings.from_env({
        **BASE, "SECUREPAY_AUTOPAY_RECORD_CONSENT": "on", "SECUREPAY_AUTOPAY_RUN_CAP": "1000.50",
        "SECUREPAY_AUTOPAY_DECLINES_TO_SUSPEND": "3",
    })
    assert settings.autopay_record_consent
    assert (settings.autopay_declines_to_suspend, settings.autopay_run_cap_cents) == (3, 100_050)
