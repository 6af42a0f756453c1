"""Contract 6: settings are read once and validated; a bad one is a one-line error."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import pprint
from datetime import time
from pathlib import Path

import pytest
import structlog

from ivr import create_app
from ivr.logs import configure_logging
from ivr.settings import SECRET_VARIABLES, BusinessHours, Settings, SettingsError

BASE = {"SECUREPAY_PEPPER": "a-pepper-of-sixteen+"}


def test_defaults_are_a_demo_utility() -> None:
    settings = Settings.from_env(BASE)
    assert settings.payment_min_cents == 100 and settings.payment_max_cents == 500_000
    assert settings.utility_name == "Demo Electric Cooperative"
    assert settings.portal_token is None and settings.stripe_api_key is None


@pytest.mark.parametrize("env, variable", [
    ({"SECUREPAY_PEPPER": "short"}, "SECUREPAY_PEPPER"),
    ({**BASE, "SECUREPAY_PAYMENT_MIN": "1.005"}, "SECUREPAY_PAYMENT_MIN"),
    ({**BASE, "SECUREPAY_PAYMENT_MAX": "lots"}, "SECUREPAY_PAYMENT_MAX"),
    ({**BASE, "SECUREPAY_PAYMENT_MIN": "50", "SECUREPAY_PAYMENT_MAX": "20"}, "SECUREPAY_PAYMENT_MAX"),
    ({**BASE, "SECUREPAY_PAYMENT_MIN": "0.49"}, "SECUREPAY_PAYMENT_MIN"),  # Stripe's minimum: $0.50
    ({**BASE, "SECUREPAY_PAYMENT_MAX": "1000000.00"}, "SECUREPAY_PAYMENT_MAX"),  # its maximum: $999,999.99
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
    settings = Settings.from_env({**BASE, "SECUREPAY_PAYMENT_MIN": "0.50", "SECUREPAY_PAYMENT_MAX": "19.99"})
    assert (settings.payment_min_cents, settings.payment_max_cents) == (50, 1999)
    widest = Settings.from_env({**BASE, "SECUREPAY_PAYMENT_MAX": "999999.99"})
    assert widest.payment_max_cents == 99_999_999


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
    assert settings.twilio_auth_token_previous is not None
    assert settings.twilio_auth_token_previous.reveal() == "old-token-9f8e7d"
    assert "old-token-9f8e7d" not in repr(settings)
# --- secrets (SECURITY 19a) -----------------------------------------------------------

# Words, not digits: the log redaction masks digit runs, and the type must stand on its own.
SECRETS = {
    "SECUREPAY_PEPPER": "pepper-Quokka-Marmalade-Lighthouse",
    "TWILIO_AUTH_TOKEN": "twilio-Zebra-Tangerine-Harbour",
    "TWILIO_AUTH_TOKEN_PREVIOUS": "twilio-Otter-Paprika-Lantern",
    "STRIPE_API_KEY": "sk_live_Walrus-Cinnamon-Orchard",
    "SECUREPAY_PORTAL_TOKEN": "portal-Heron-Juniper-Meadow",
    "SECUREPAY_DATABASE_URL": "postgresql+psycopg://securepay:dbpass-Falcon-Saffron@db.internal/securepay",
    "SECUREPAY_SMTP_PASSWORD": "smtp-Badger-Nutmeg-Quarry",
    "TWILIO_API_SECRET": "twilio-Magpie-Clove-Estuary",
}
# What must never be printed: each secret, and the database password on its own.
LEAKS = [*SECRETS.values(), "dbpass-Falcon-Saffron"]


def _all_secrets_settings() -> Settings:
    return Settings.from_env({**SECRETS, "SECUREPAY_SMTP_USERNAME": "receipts"})


def _assert_clean(text: str) -> None:
    for secret in LEAKS:
        assert secret not in text, f"{secret!r} printed in: {text[:400]}"


def test_printing_the_settings_every_way_shows_no_secret() -> None:
    settings = _all_secrets_settings()
    shown = [
        repr(settings), str(settings), f"{settings}", f"{settings!r}",
        "%s" % (settings,), "{0}".format(settings),  # noqa: UP030, UP031, UP032
        pprint.pformat(settings), repr(dataclasses.asdict(settings)),
        json.dumps(dataclasses.asdict(settings), default=str), repr(vars(settings)),
        repr(copy.deepcopy(settings)), str(SettingsError(f"bad: {settings}")),
    ]
    for text in shown:
        _assert_clean(text)
    assert settings.pepper is not None and settings.pepper.reveal() == SECRETS["SECUREPAY_PEPPER"]


def test_logging_the_settings_every_way_shows_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    """Plain stdlib logging, without our redaction: the type alone must mask."""
    settings = _all_secrets_settings()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(args)s"))
    plain = logging.getLogger("test_settings.plain")
    plain.addHandler(handler)
    plain.setLevel(logging.INFO)
    plain.propagate = False
    try:
        plain.info(settings)
        plain.info("%s", settings)
        plain.info("%r", settings)
        plain.info("settings: %(s)s", {"s": settings})
        plain.info("fields %s", dataclasses.asdict(settings))
        try:
            raise SettingsError(repr(settings))
        except SettingsError:
            plain.exception("refused %s", settings.pepper)
    finally:
        plain.removeHandler(handler)
    _assert_clean(stream.getvalue())
    assert "Secret(" in stream.getvalue()


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_structlog_lines_with_the_settings_show_no_secret(fmt: str) -> None:
    settings = _all_secrets_settings()
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(fmt, stream)
    try:
        log = structlog.get_logger()
        log.info("settings_loaded", settings=settings, values=dataclasses.asdict(settings))
        fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
        log.info("settings_fields", **fields)
        log.info(f"started with {settings}")
    finally:
        structlog.reset_defaults()
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    _assert_clean(stream.getvalue())
    assert "settings_loaded" in stream.getvalue()


def test_every_secret_can_come_from_a_file_or_a_systemd_credential(tmp_path: Path) -> None:
    names = list(SECRETS)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    env: dict[str, str] = {"SECUREPAY_SMTP_USERNAME": "receipts"}
    for index, name in enumerate(names):
        if index % 2:
            (credentials / name).write_text(SECRETS[name] + "\n")
        else:
            (tmp_path / name.lower()).write_text(SECRETS[name] + "\n")
            env[f"{name}_FILE"] = str(tmp_path / name.lower())
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    settings = Settings.from_env(env)
    held = {
        "SECUREPAY_PEPPER": settings.pepper, "TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
        "STRIPE_API_KEY": settings.stripe_api_key, "SECUREPAY_PORTAL_TOKEN": settings.portal_token,
        "SECUREPAY_DATABASE_URL": settings.database_url,
        "TWILIO_AUTH_TOKEN_PREVIOUS": settings.twilio_auth_token_previous,
        "SECUREPAY_SMTP_PASSWORD": settings.smtp_password,
        "TWILIO_API_SECRET": settings.twilio_api_secret,
    }
    assert set(held) == set(SECRET_VARIABLES)
    for name, secret in held.items():
        assert secret is not None and secret.reveal() == SECRETS[name], name


def test_a_missing_secret_file_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TWILIO_AUTH_TOKEN_FILE": str(tmp_path / "absent")})
    assert "TWILIO_AUTH_TOKEN_FILE" in str(caught.value) and "\n" not in str(caught.value)


def test_a_short_pepper_from_a_file_names_the_file_variable(tmp_path: Path) -> None:
    (tmp_path / "pepper").write_text("short\n")
    with pytest.raises(SettingsError, match="SECUREPAY_PEPPER_FILE must be at least 16"):
        Settings.from_env({"SECUREPAY_PEPPER_FILE": str(tmp_path / "pepper")})


def test_the_pepper_is_needed_only_by_what_hashes(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    assert settings.pepper is None
    with pytest.raises(SettingsError, match="SECUREPAY_PEPPER"):
        settings.require_pepper()
    with pytest.raises(SettingsError, match="SECUREPAY_PEPPER"):
        create_app(Settings.from_env({"TWILIO_AUTH_TOKEN": "a-token"}))


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
