"""``securepay config check``: the settings as the service will use them, before it starts.

It reads the environment the way ``create_app`` does (``Settings.from_env``) and prints
every setting with its effective value, defaults filled in, secrets masked. A bad value
is one line naming the variable, and every bad value is reported, not only the first:
each variable is also checked on its own, over a known-good baseline, so one run shows
all there is to fix. Errors exit 2 (``deploy/securepay.service`` runs this as its
``ExecStartPre=``, so a bad setting stops the start with those lines in the journal).

Warnings do not fail the check: they name a setting that works but is probably not what
a production line wants (an ``http://`` public URL with a Twilio token, no SMTP, no
portal token, payments off).

Nothing secret is printed: ``shown_value`` is the one place that decides how a value is
shown, and every secret-bearing field goes through ``mask``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from datetime import time
from zoneinfo import ZoneInfo

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ivr.secrets import Secret
from ivr.settings import BusinessHours, Settings, SettingsError
from ivr.version import build

__all__ = ["check", "config_group", "mask", "shown_value", "variable_of"]

# Fields whose variable is not SECUREPAY_ + the field's name in capitals.
_VARIABLES = {
    "twilio_auth_token": "TWILIO_AUTH_TOKEN",
    "twilio_auth_token_previous": "TWILIO_AUTH_TOKEN_PREVIOUS",
    "stripe_api_key": "STRIPE_API_KEY",
    "stripe_api_base": "STRIPE_API_BASE",
    "payment_min_cents": "SECUREPAY_PAYMENT_MIN",
    "payment_max_cents": "SECUREPAY_PAYMENT_MAX",
    "metrics_enabled": "SECUREPAY_METRICS",
    "language_timeout_seconds": "SECUREPAY_LANGUAGE_TIMEOUT",
    "menu_timeout_seconds": "SECUREPAY_MENU_TIMEOUT",
    "entry_timeout_seconds": "SECUREPAY_ENTRY_TIMEOUT",
    "card_timeout_seconds": "SECUREPAY_CARD_ENTRY_TIMEOUT",
    "closed_days": "SECUREPAY_CLOSED_DAYS_FILE",  # the days the file lists, as read
    "twilio_account_sid": "TWILIO_ACCOUNT_SID",
    "twilio_api_key": "TWILIO_API_KEY",
    "twilio_api_secret": "TWILIO_API_SECRET",
    "autopay_run_cap_cents": "SECUREPAY_AUTOPAY_RUN_CAP",
}

# Fields that hold a secret (SECURITY 19a). When the settings hold secrets in a type of
# their own, ``mask`` is the place to recognise it.
SECRET_FIELDS = frozenset(
    {
        "pepper",
        "twilio_auth_token",
        "twilio_auth_token_previous",
        "stripe_api_key",
        "portal_token",
        "smtp_password",
    }
)

_VARIABLE_NAME = re.compile(r"\b(?:SECUREPAY|TWILIO|STRIPE)_[A-Z0-9_]+\b")
# Variables checked against each other: one bad member sets the group aside.
_CHECKED_TOGETHER = (
    frozenset({"SECUREPAY_SMTP_USERNAME", "SECUREPAY_SMTP_PASSWORD"}),
    frozenset({"SECUREPAY_SMTP_STARTTLS", "SECUREPAY_SMTP_SSL"}),
    frozenset({"SECUREPAY_PAYMENT_MIN", "SECUREPAY_PAYMENT_MAX"}),
)
# Stands in for a missing or bad pepper, so the other variables can still be checked.
_PLACEHOLDER_PEPPER = "config-check-placeholder-pepper"  # noqa: S105 - not a secret

MASKED = "******** (set)"


def variable_of(field_name: str) -> str:
    """The environment variable a ``Settings`` field is read from."""
    return _VARIABLES.get(field_name, f"SECUREPAY_{field_name.upper()}")


def mask(field_name: str, value: object) -> str | None:
    """How a secret is shown (never its value, nor its length); None: not a secret."""
    if not isinstance(value, Secret) and field_name not in SECRET_FIELDS:
        return None
    return MASKED if value else "(not set)"


def shown_value(field_name: str, value: object) -> str:
    """The value of one setting as ``config check`` prints it."""
    if field_name == "database_url" and isinstance(value, Secret):
        return _database_url(value.reveal())  # its password hidden, the rest worth seeing
    masked = mask(field_name, value)
    if masked is not None:
        return masked
    if value is None:
        return "(not set)"
    if field_name.endswith("_cents") and isinstance(value, int):
        return f"{value // 100}.{value % 100:02d}"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, BusinessHours):
        return value.text
    if isinstance(value, ZoneInfo):
        return value.key
    if isinstance(value, time):
        return value.isoformat(timespec="minutes")
    if isinstance(value, frozenset):  # the closure days
        return ", ".join(day.isoformat() for day in sorted(value)) or "(none)"
    return str(value)


def _database_url(raw: str) -> str:
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def _all_errors(env: Mapping[str, str]) -> list[str]:
    """Every bad variable, not only the first: after each error, the variables it names
    are set aside (their defaults used; a missing pepper replaced by a placeholder) and
    the rest is read again, until it reads clean or an error names nothing to set aside.
    Each error so comes from reading the real environment, never from a guess."""
    errors: list[str] = []
    probe = dict(env)
    while True:
        try:
            Settings.from_env(probe)
        except SettingsError as exc:
            message = str(exc)
            errors.append(message)
            named = set(_VARIABLE_NAME.findall(message))
            for group in _CHECKED_TOGETHER:  # set a pair aside whole: no error follows from half
                if {name.removesuffix("_FILE") for name in named} & group:
                    named |= group
            before = dict(probe)
            for name in list(probe):
                if name in named or name.removesuffix("_FILE") in named:
                    del probe[name]
            if "SECUREPAY_PEPPER" in named:
                probe["SECUREPAY_PEPPER"] = _PLACEHOLDER_PEPPER
            if probe == before:
                return errors
        else:
            return errors


def _warnings(settings: Settings) -> Iterator[str]:
    if settings.twilio_auth_token and settings.public_url and settings.public_url.startswith("http://"):
        yield (
            "SECUREPAY_PUBLIC_URL is http:// with a Twilio token set: Twilio's <Pay> needs HTTPS "
            "and webhooks carry the caller's keys"
        )
    if settings.twilio_auth_token and settings.public_url is None:
        yield (
            "SECUREPAY_PUBLIC_URL is not set: signatures are checked against the request's own URL, "
            "which fails behind a proxy"
        )
    if settings.stripe_api_key is None:
        yield "STRIPE_API_KEY is not set: payments are off (the menu says so)"
    elif settings.stripe_api_key.reveal().startswith(("sk_test_", "rk_test_")):
        yield "STRIPE_API_KEY is a test-mode key: no real payment is taken"
    if settings.smtp_host is None:
        yield "SECUREPAY_SMTP_HOST is not set: no e-mail receipts"
    elif settings.smtp_username and not (settings.smtp_starttls or settings.smtp_ssl):
        yield (
            "SECUREPAY_SMTP_PASSWORD is sent in clear: set SECUREPAY_SMTP_STARTTLS or SECUREPAY_SMTP_SSL"
        )
    if settings.portal_token is None:
        yield "SECUREPAY_PORTAL_TOKEN is not set: the portal API is off"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    settings: Settings | None
    errors: list[str]
    warnings: list[str]


def check(env: Mapping[str, str], *, serving: bool = True) -> CheckResult:
    """Validate ``env`` as the service would. ``serving``: the web service is to start,
    so the Twilio token is required (commands run without it)."""
    errors = _all_errors(env)
    settings: Settings | None = None
    if not errors:
        settings = Settings.from_env(env)
        if serving:
            try:
                settings.require_web()  # the token and the pepper
            except SettingsError as exc:
                errors.append(str(exc))
    warnings = list(_warnings(settings)) if settings is not None else []
    return CheckResult(settings, errors, warnings)


def _lines(settings: Settings) -> Iterator[tuple[str, str]]:
    for spec in dataclasses.fields(settings):
        yield variable_of(spec.name), shown_value(spec.name, getattr(settings, spec.name))


@click.group("config")
def config_group() -> None:
    """The service's settings."""


@config_group.command("check")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and warnings (for ExecStartPre=).")
@click.option(
    "--commands-only",
    is_flag=True,
    help="Check for the commands and timers only: the Twilio token is not required.",
)
def check_command(quiet: bool, commands_only: bool) -> None:
    """Print every setting as it will be used (secrets masked), then the warnings.

    Exit status: 0 the settings are usable (warnings allowed), 2 at least one is not
    (one line per error on stderr, naming the variable).
    """
    result = check(os.environ, serving=not commands_only)
    if not quiet:
        click.echo(f"securepay {build().describe()}")
    for error in result.errors:
        click.echo(f"error: {error}", err=True)
    if result.errors or result.settings is None:
        raise click.exceptions.Exit(2)
    if not quiet:
        rows = list(_lines(result.settings))
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            click.echo(f"{name:<{width}}  {value}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
