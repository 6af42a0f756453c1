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
    # Issue 8: <Pay> languages, card types and voices as Twilio names them
    ({**BASE, "SECUREPAY_PAY_LANGUAGE_ES": "es-US"}, "SECUREPAY_PAY_LANGUAGE_ES"),
    ({**BASE, "SECUREPAY_CARD_TYPES": "visa diners"}, "SECUREPAY_CARD_TYPES"),
    ({**BASE, "SECUREPAY_CARD_TYPES": " , "}, "SECUREPAY_CARD_TYPES"),
    ({**BASE, "SECUREPAY_VOICE_EN": "Polly.Lupe-Neural"}, "SECUREPAY_VOICE_EN"),
    ({**BASE, "SECUREPAY_VOICE_ES": "Polly.Joanna"}, "SECUREPAY_VOICE_ES"),
    ({**BASE, "SECUREPAY_VOICE_ES": "Google.en-US-Neural2-F"}, "SECUREPAY_VOICE_ES"),
    ({**BASE, "SECUREPAY_VOICE_ES": "Polly.Celine"}, "SECUREPAY_VOICE_ES"),
    ({**BASE, "SECUREPAY_VOICE_EN": "Polly.Nobody-Neural"}, "SECUREPAY_VOICE_EN"),
    ({**BASE, "SECUREPAY_VOICE_EN": "alice"}, "SECUREPAY_VOICE_EN"),
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


def test_pay_card_types_and_voices_default_to_what_twilio_documents() -> None:
    settings = Settings.from_env(BASE)
    # https://www.twilio.com/docs/voice/twiml/pay: without validCardTypes only Visa,
    # Mastercard and Amex are taken; es-MX and es-ES are the Spanish card languages.
    assert settings.card_types == ("visa", "mastercard", "amex", "discover")
    assert settings.pay_language_es == "es-MX"
    assert settings.voice_en is None and settings.voice_es is None


@pytest.mark.parametrize("variable, voice", [
    ("SECUREPAY_VOICE_EN", "Polly.Joanna-Neural"),
    ("SECUREPAY_VOICE_EN", "Polly.Matthew"),
    ("SECUREPAY_VOICE_EN", "Google.en-US-Neural2-F"),
    ("SECUREPAY_VOICE_ES", "Polly.Lupe-Neural"),
    ("SECUREPAY_VOICE_ES", "Polly.Mia-Neural"),
    ("SECUREPAY_VOICE_ES", "Google.es-US-Neural2-A"),
])
def test_a_voice_of_the_right_language_is_taken(variable: str, voice: str) -> None:
    settings = Settings.from_env({**BASE, variable: voice})
    assert voice in (settings.voice_en, settings.voice_es)


def test_card_types_and_the_spanish_pay_language_can_be_chosen() -> None:
    settings = Settings.from_env({
        **BASE, "SECUREPAY_CARD_TYPES": "Visa, mastercard diners-club", "SECUREPAY_PAY_LANGUAGE_ES": "es-ES",
    })
    assert settings.card_types == ("visa", "mastercard", "diners-club")
    assert settings.pay_language_es == "es-ES"


def test_the_previous_auth_token_is_never_shown() -> None:
    settings = Settings.from_env({**BASE, "TWILIO_AUTH_TOKEN_PREVIOUS": "old-token-9f8e7d"})
    assert settings.twilio_auth_token_previous == "old-token-9f8e7d"
    assert "old-token-9f8e7d" not in repr(settings)
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
