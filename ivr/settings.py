"""Settings, read once from the environment into a frozen dataclass.

Every variable of the contract (section 6) lives here, validated at start-up: a bad
value is a one-line ``SettingsError`` naming the variable. Nothing else in the code
reads ``os.environ``.

Secrets (``SECRET_VARIABLES``) are held as ``ivr.secrets.Secret``, masked wherever the
settings are printed, and each may come from ``NAME``, a file named by ``NAME_FILE`` or
systemd's ``$CREDENTIALS_DIRECTORY/NAME`` (SECURITY 19a). The pepper is optional here:
only what hashes needs it (``require_pepper``), so staff and auditor commands run
without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.secrets import Secret, SecretSourceError, read_secret
from ivr.voices import VoiceError, check_voice
from payments.gateway import MAX_CHARGE_CENTS, MIN_CHARGE_CENTS


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


# The variables that hold secrets; each also reads NAME_FILE and a systemd credential.
SECRET_VARIABLES = (
    "SECUREPAY_PEPPER",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKEN_PREVIOUS",
    "STRIPE_API_KEY",
    "SECUREPAY_PORTAL_TOKEN",
    "SECUREPAY_DATABASE_URL",  # may carry the database password
    "SECUREPAY_SMTP_PASSWORD",
    "TWILIO_API_SECRET",
)
PEPPER_MIN_LENGTH = 16


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    try:
        return read_secret(env, name)
    except SecretSourceError as exc:
        raise SettingsError(str(exc)) from None


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Twilio's card types for <Pay validCardTypes> (https://www.twilio.com/docs/voice/twiml/pay):
# without the attribute Twilio takes only Visa, Mastercard and Amex.
CARD_TYPES: Final = ("visa", "mastercard", "amex", "maestro", "discover", "optima", "jcb",
                     "diners-club", "enroute")  # fmt: skip
DEFAULT_CARD_TYPES: Final = ("visa", "mastercard", "amex", "discover")
# The Spanish <Pay> languages Twilio lists for card payments (es-US is not one of them).
PAY_LANGUAGES_ES: Final = ("es-MX", "es-ES")


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours per weekday (0 = Monday), in the utility's zone."""

    days: frozenset[int]
    opens: time
    closes: time
    text: str

    @classmethod
    def parse(cls, value: str) -> BusinessHours:
        """Parse ``Mon-Fri 08:00-17:00`` (days may be a range or a comma list)."""
        match = re.fullmatch(
            r"\s*([A-Za-z]{3}(?:\s*[-,]\s*[A-Za-z]{3})*)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*",
            value,
        )
        if not match:
            raise ValueError("expected a form like 'Mon-Fri 08:00-17:00'")
        days: set[int] = set()
        for part in match.group(1).lower().replace(" ", "").split(","):
            ends = part.split("-")
            if any(end not in DAYS for end in ends) or len(ends) > 2:
                raise ValueError(f"unknown day in {part!r}")
            first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
            days.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)])
        opens = time(int(match.group(2)), int(match.group(3)))
        closes = time(int(match.group(4)), int(match.group(5)))
        if closes <= opens:
            raise ValueError("closing time must be after opening time")
        return cls(frozenset(days), opens, closes, value.strip())


def _cents(name: str, raw: str) -> int:
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise SettingsError(f"{name} must be an amount in dollars like 5000.00, got {raw!r}") from None
    if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise SettingsError(f"{name} must be a positive amount with at most 2 decimals, got {raw!r}")
    return int(amount * 100)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE + _FALSE:
        raise SettingsError(f"{name} must be on or off (true/false, 1/0, yes/no), got {raw!r}")
    return raw in _TRUE


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise SettingsError(f"{name} must be a whole number of at least {minimum}, got {raw!r}")
    return int(raw)


def _card_types(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_CARD_TYPES
    types = tuple(dict.fromkeys(raw.lower().replace(",", " ").split()))
    unknown = [kind for kind in types if kind not in CARD_TYPES]
    if unknown or not types:
        raise SettingsError(
            f"SECUREPAY_CARD_TYPES must name Twilio card types ({' '.join(CARD_TYPES)}), got {raw!r}"
        )
    return types


def _voice(raw: str | None, language: str, name: str) -> str | None:
    if raw is None:
        return None
    try:
        return check_voice(raw, language)
    except VoiceError as exc:
        raise SettingsError(f"{name}: {exc}") from None
def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value > 60:
        raise SettingsError(f"{name} must be at most 60 seconds, got {value}")
    return value


def read_closed_days(path: str) -> frozenset[date]:
    """Days member services is closed (holidays): one ``YYYY-MM-DD`` a line, ``#`` comments."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SettingsError(f"SECUREPAY_CLOSED_DAYS_FILE cannot be read: {exc.strerror}: {path}") from None
    days: set[date] = set()
    for number, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            days.add(date.fromisoformat(entry))
        except ValueError:
            raise SettingsError(
                f"SECUREPAY_CLOSED_DAYS_FILE line {number}: expected a day like 2026-12-25, got {entry!r}"
            ) from None
    return frozenset(days)


SMS_FROM = re.compile(r"\+1[2-9][0-9]{9}|MG[0-9a-f]{32}")
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
API_KEY_SID = re.compile(r"SK[0-9a-f]{32}")


@dataclass(frozen=True)
class Settings:
    pepper: Secret | None = None  # None: nothing that hashes may run (``require_pepper``)
    database_url: Secret | None = None
    twilio_auth_token: Secret | None = None
    # The token being replaced, still accepted while a rotation is under way.
    twilio_auth_token_previous: Secret | None = None
    public_url: str | None = None
    stripe_api_key: Secret | None = None
    stripe_api_base: str | None = None
    portal_token: Secret | None = None
    utility_name: str = "Demo Electric Cooperative"
    member_services_number: str = "+12025550100"
    business_hours: BusinessHours = field(
        default_factory=lambda: BusinessHours.parse("Mon-Fri 08:00-17:00")
    )
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("America/Chicago"))
    payment_min_cents: int = 100
    payment_max_cents: int = 500_000
    pin_failures_per_call: int = 3
    pin_failures_per_account: int = 5
    pin_failure_window_hours: int = 24
    caller_failures_per_hour: int = 10
    withheld_failures_per_hour: int = 10  # all withheld/invalid caller IDs together
    line_failures_per_hour: int = 100  # the line-wide PIN failure alarm
    pin_blocklist_file: str | None = None
    prompts_dir: str | None = None
    log_format: str = "console"
    pay_connector: str = "Default"
    pay_language_es: str = "es-MX"
    card_types: tuple[str, ...] = DEFAULT_CARD_TYPES
    voice_en: str | None = None
    voice_es: str | None = None
    new_cards_per_call: int = 2
    declines_per_account_day: int = 3
    declines_per_caller_day: int = 5
    smtp_host: str | None = None
    smtp_port: int = 25
    receipt_from: str = "securepay@localhost"
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    smtp_ca_file: str | None = None
    templates_dir: str | None = None
    metrics_enabled: bool = False
    audit_anchor_file: str | None = None
    # Proxies in front of the app that set X-Forwarded-For/-Proto (nginx: 1). 0 trusts none.
    proxy_count: int = 0
    language_timeout_seconds: int = 2
    menu_timeout_seconds: int = 6
    entry_timeout_seconds: int = 8
    card_timeout_seconds: int = 10
    closed_days_file: str | None = None
    closed_days: frozenset[date] = frozenset()
    sms_from: str | None = None  # a +1 number or a messaging service SID (MG...): texts on
    twilio_account_sid: str | None = None
    twilio_api_key: str | None = None  # SK...: with its secret, used instead of the auth token
    twilio_api_secret: Secret | None = None
    # Auto Pay (issue 10): bank accounts by phone only with the agreement <Record>ed;
    # declines in a row that suspend it; the most one run drafts.
    autopay_record_consent: bool = False
    autopay_declines_to_suspend: int = 2
    autopay_run_cap_cents: int = 25_000_000

    def require_web(self) -> None:
        """What the web service needs to start (the webhooks verify and hash); else a
        ``SettingsError`` naming the variable. ``create_app`` and gunicorn's master check it."""
        if self.twilio_auth_token is None:
            raise SettingsError("TWILIO_AUTH_TOKEN is not set: webhooks cannot be verified")
        self.require_pepper()

    def require_pepper(self) -> Secret:
        """The pepper, for what hashes PINs and SSN digits; a ``SettingsError`` without it."""
        if self.pepper is None:
            raise SettingsError("SECUREPAY_PEPPER is not set: the PIN and SSN hashing key is required")
        return self.pepper

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise ``SettingsError`` on bad input."""

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        pepper = _secret(env, "SECUREPAY_PEPPER")
        if pepper is not None and len(pepper) < PEPPER_MIN_LENGTH:
            raise SettingsError(
                f"{pepper.source} must be at least {PEPPER_MIN_LENGTH} characters long"
            )
        public_url = text("SECUREPAY_PUBLIC_URL")
        if public_url is not None:
            if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", public_url):
                raise SettingsError(f"SECUREPAY_PUBLIC_URL must be an http(s) base URL, got {public_url!r}")
            public_url = public_url.rstrip("/")
        hours_raw = text("SECUREPAY_BUSINESS_HOURS") or "Mon-Fri 08:00-17:00"
        try:
            hours = BusinessHours.parse(hours_raw)
        except ValueError as exc:
            raise SettingsError(f"SECUREPAY_BUSINESS_HOURS: {exc}, got {hours_raw!r}") from None
        zone_name = text("SECUREPAY_TIMEZONE") or "America/Chicago"
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"SECUREPAY_TIMEZONE is not a known time zone: {zone_name!r}") from None
        minimum_raw = text("SECUREPAY_PAYMENT_MIN") or "1.00"
        maximum_raw = text("SECUREPAY_PAYMENT_MAX") or "5000.00"
        minimum = _cents("SECUREPAY_PAYMENT_MIN", minimum_raw)
        maximum = _cents("SECUREPAY_PAYMENT_MAX", maximum_raw)
        if maximum < minimum:
            raise SettingsError("SECUREPAY_PAYMENT_MAX must not be below SECUREPAY_PAYMENT_MIN")
        # What Stripe charges in USD at all (https://docs.stripe.com/currencies, minimum
        # and maximum charge amounts): a limit outside it would offer a payment that fails.
        if minimum < MIN_CHARGE_CENTS:
            raise SettingsError(
                f"SECUREPAY_PAYMENT_MIN must be at least 0.50 (Stripe's minimum), got {minimum_raw!r}"
            )
        if maximum > MAX_CHARGE_CENTS:
            raise SettingsError(
                f"SECUREPAY_PAYMENT_MAX must be at most 999999.99 (Stripe's maximum), got {maximum_raw!r}"
            )
        member_services = text("SECUREPAY_MEMBER_SERVICES_NUMBER") or "+12025550100"
        if not re.fullmatch(r"\+?[0-9]{7,15}", member_services):
            raise SettingsError(
                f"SECUREPAY_MEMBER_SERVICES_NUMBER must be a phone number, got {member_services!r}"
            )
        sms_from = text("SECUREPAY_SMS_FROM")
        account_sid = text("TWILIO_ACCOUNT_SID")
        api_key, api_secret = text("TWILIO_API_KEY"), _secret(env, "TWILIO_API_SECRET")
        if sms_from is not None:
            if not SMS_FROM.fullmatch(sms_from):
                raise SettingsError(
                    "SECUREPAY_SMS_FROM must be a US number like +12025550123 or a messaging "
                    f"service SID (MG and 32 hex digits), got {sms_from!r}"
                )
            if account_sid is None or not ACCOUNT_SID.fullmatch(account_sid):
                raise SettingsError(
                    "TWILIO_ACCOUNT_SID (AC and 32 hex digits) is required with SECUREPAY_SMS_FROM"
                )
            if (api_key is None) != (api_secret is None):
                raise SettingsError("TWILIO_API_KEY and TWILIO_API_SECRET are set together")
            if api_key is not None and not API_KEY_SID.fullmatch(api_key):
                raise SettingsError("TWILIO_API_KEY must be an API key SID (SK and 32 hex digits)")
            if api_key is None and _secret(env, "TWILIO_AUTH_TOKEN") is None:
                raise SettingsError(
                    "SECUREPAY_SMS_FROM needs TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET"
                )
        closed_days_file = text("SECUREPAY_CLOSED_DAYS_FILE")
        log_format = text("SECUREPAY_LOG_FORMAT") or "console"
        if log_format not in ("console", "json"):
            raise SettingsError(f"SECUREPAY_LOG_FORMAT must be console or json, got {log_format!r}")
        pay_language_es = text("SECUREPAY_PAY_LANGUAGE_ES") or "es-MX"
        if pay_language_es not in PAY_LANGUAGES_ES:
            raise SettingsError(
                f"SECUREPAY_PAY_LANGUAGE_ES must be one of {', '.join(PAY_LANGUAGES_ES)}, "
                f"got {pay_language_es!r}"
            )
        smtp_starttls = _flag(env, "SECUREPAY_SMTP_STARTTLS")
        smtp_ssl = _flag(env, "SECUREPAY_SMTP_SSL")
        if smtp_starttls and smtp_ssl:
            raise SettingsError(
                "SECUREPAY_SMTP_STARTTLS and SECUREPAY_SMTP_SSL exclude each other: choose one"
            )
        smtp_username = text("SECUREPAY_SMTP_USERNAME")
        smtp_password = _secret(env, "SECUREPAY_SMTP_PASSWORD")
        if (smtp_username is None) != (smtp_password is None):
            raise SettingsError(
                "SECUREPAY_SMTP_USERNAME and SECUREPAY_SMTP_PASSWORD go together: set both or neither"
            )
        return cls(
            pepper=pepper,
            database_url=_secret(env, "SECUREPAY_DATABASE_URL"),
            twilio_auth_token=_secret(env, "TWILIO_AUTH_TOKEN"),
            twilio_auth_token_previous=_secret(env, "TWILIO_AUTH_TOKEN_PREVIOUS"),
            public_url=public_url,
            stripe_api_key=_secret(env, "STRIPE_API_KEY"),
            stripe_api_base=text("STRIPE_API_BASE"),
            portal_token=_secret(env, "SECUREPAY_PORTAL_TOKEN"),
            utility_name=text("SECUREPAY_UTILITY_NAME") or "Demo Electric Cooperative",
            member_services_number=member_services,
            business_hours=hours,
            timezone=zone,
            payment_min_cents=minimum,
            payment_max_cents=maximum,
            pin_failures_per_call=_int(env, "SECUREPAY_PIN_FAILURES_PER_CALL", 3),
            pin_failures_per_account=_int(env, "SECUREPAY_PIN_FAILURES_PER_ACCOUNT", 5),
            pin_failure_window_hours=_int(env, "SECUREPAY_PIN_FAILURE_WINDOW_HOURS", 24),
            caller_failures_per_hour=_int(env, "SECUREPAY_CALLER_FAILURES_PER_HOUR", 10),
            withheld_failures_per_hour=_int(env, "SECUREPAY_WITHHELD_FAILURES_PER_HOUR", 10),
            line_failures_per_hour=_int(env, "SECUREPAY_LINE_FAILURES_PER_HOUR", 100),
            pin_blocklist_file=text("SECUREPAY_PIN_BLOCKLIST_FILE"),
            prompts_dir=text("SECUREPAY_PROMPTS_DIR"),
            log_format=log_format,
            pay_connector=text("SECUREPAY_PAY_CONNECTOR") or "Default",
            pay_language_es=pay_language_es,
            card_types=_card_types(text("SECUREPAY_CARD_TYPES")),
            voice_en=_voice(text("SECUREPAY_VOICE_EN"), "en", "SECUREPAY_VOICE_EN"),
            voice_es=_voice(text("SECUREPAY_VOICE_ES"), "es", "SECUREPAY_VOICE_ES"),
            new_cards_per_call=_int(env, "SECUREPAY_NEW_CARDS_PER_CALL", 2),
            declines_per_account_day=_int(env, "SECUREPAY_DECLINES_PER_ACCOUNT_DAY", 3),
            declines_per_caller_day=_int(env, "SECUREPAY_DECLINES_PER_CALLER_DAY", 5),
            smtp_host=text("SECUREPAY_SMTP_HOST"),
            smtp_port=_int(env, "SECUREPAY_SMTP_PORT", 465 if smtp_ssl else 587 if smtp_starttls else 25),
            receipt_from=text("SECUREPAY_RECEIPT_FROM") or "securepay@localhost",
            smtp_starttls=smtp_starttls,
            smtp_ssl=smtp_ssl,
            smtp_username=smtp_username,
            smtp_password=smtp_password,
            smtp_ca_file=text("SECUREPAY_SMTP_CA_FILE"),
            templates_dir=text("SECUREPAY_TEMPLATES_DIR"),
            metrics_enabled=_flag(env, "SECUREPAY_METRICS"),
            audit_anchor_file=text("SECUREPAY_AUDIT_ANCHOR_FILE"),
            proxy_count=_int(env, "SECUREPAY_PROXY_COUNT", 0, minimum=0),
            language_timeout_seconds=_seconds(env, "SECUREPAY_LANGUAGE_TIMEOUT", 2),
            menu_timeout_seconds=_seconds(env, "SECUREPAY_MENU_TIMEOUT", 6),
            entry_timeout_seconds=_seconds(env, "SECUREPAY_ENTRY_TIMEOUT", 8),
            card_timeout_seconds=_seconds(env, "SECUREPAY_CARD_ENTRY_TIMEOUT", 10),
            closed_days_file=closed_days_file,
            closed_days=read_closed_days(closed_days_file) if closed_days_file else frozenset(),
            sms_from=sms_from,
            twilio_account_sid=account_sid,
            twilio_api_key=api_key,
            twilio_api_secret=api_secret,
            autopay_record_consent=_flag(env, "SECUREPAY_AUTOPAY_RECORD_CONSENT"),
            autopay_declines_to_suspend=_int(env, "SECUREPAY_AUTOPAY_DECLINES_TO_SUSPEND", 2),
            autopay_run_cap_cents=_cents(
                "SECUREPAY_AUTOPAY_RUN_CAP", text("SECUREPAY_AUTOPAY_RUN_CAP") or "250000.00"
            ),
        )
