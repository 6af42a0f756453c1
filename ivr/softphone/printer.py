"""Renders a call in the terminal as it happens (``securepay call``).

An observer of ``walk()``: each event is printed when it happens, so in an interactive
call the menu is on screen before the keys are asked for.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from ivr.softphone.transcript import (
    Dialed,
    Error,
    Event,
    Gathered,
    HungUp,
    Paid,
    Paused,
    Played,
    Redirected,
    Rejected,
    Said,
)


def describe(event: Event) -> str | None:
    """The terminal line for one event (None: nothing worth a line)."""
    match event:
        case Said(text, language):
            return f"IVR ({language}): {text}"
        case Played(url):
            return f"IVR plays: {url}"
        case Paused(seconds):
            return f"(pause, {seconds} s)"
        case Gathered(keys, _, _):
            return f"You pressed: {' '.join(keys)}" if keys else "You pressed nothing (timeout)"
        case Redirected():
            return None
        case Dialed(number):
            return f"IVR dials {number}: you are connected; the call ends when you hang up."
        case Paid(params):
            shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
            return f"<Pay> collected the card: {shown}"
        case Rejected(reason):
            return f"IVR rejected the call ({reason})."
        case HungUp(by):
            return "IVR hung up." if by == "ivr" else "You hung up."
        case Error(message, url):
            where = f" [{url}]" if url else ""
            return f"Error: {message}{where}"
    return None


class TerminalPrinter:
    """Prints each event; ``show_keys=False`` when the caller just typed them."""

    def __init__(self, *, show_keys: bool = True, echo: Callable[..., None] = click.echo) -> None:
        self._show_keys = show_keys
        self._echo = echo

    def __call__(self, event: Event) -> None:
        if isinstance(event, Gathered) and not self._show_keys and event.keys:
            return
        line = describe(event)
        if line is not None:
            self._echo(line, err=isinstance(event, Error))
