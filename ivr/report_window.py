"""The ``--since`` / ``--until`` options of the reporting commands (calls, payments,
audit): whole days in the utility's zone, ``--until`` included; a bad date is one line
and exit status 2."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any, NoReturn, TypeVar

import click

from db.payment_reports import DayWindow
from ivr.services import Services

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(code)


def parse_day(option: str, raw: str | None) -> date | None:
    if raw is None:
        return None
    try:
        if not DATE.fullmatch(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        fail(f"{option} must be a date as YYYY-MM-DD, got {raw!r}")


def day_window(services: Services, since: str | None, until: str | None) -> DayWindow:
    """``--until`` defaults to today in the utility's zone, ``--since`` to ``--until``."""
    zone = services.settings.timezone
    last = parse_day("--until", until) or services.clock.now().astimezone(zone).date()
    first = parse_day("--since", since) or last
    if last < first:
        fail(f"--since ({first}) is after --until ({last})")
    return DayWindow(first, last, zone)


def window_options(command: F) -> F:
    command = click.option(
        "--until", metavar="YYYY-MM-DD", help="Last day, included (default: today, in the utility's zone)."
    )(command)
    return click.option("--since", metavar="YYYY-MM-DD", help="First day (default: the --until day).")(
        command
    )
