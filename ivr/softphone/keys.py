"""The caller's keypad: scripted for tests and ``--keys``, or typed at the terminal.

A key source answers one ``<Gather>`` at a time with the keys the caller presses, in
order, finish key included (``"6789#"``); ``""`` when the caller presses nothing (the
gather times out); ``HANG_UP`` when the caller hangs up instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import click


class _HangUp(Enum):
    HANG_UP = "h"


HANG_UP = _HangUp.HANG_UP
"""What a key source returns when the caller hangs up."""

KeyPress = str | _HangUp
_KEYS = re.compile(r"[0-9*#]*")


@dataclass(frozen=True)
class GatherPrompt:
    """What the caller knows when asked for keys: the gather's limits and its URL."""

    num_digits: int | None
    finish_on_key: str
    timeout: int
    url: str


class KeySource(Protocol):
    def keys_for(self, gather: GatherPrompt) -> KeyPress:
        """The keys pressed at this gather ("" for none), or ``HANG_UP``."""
        ...


def _entry(raw: str) -> KeyPress:
    entry = raw.strip()
    if entry in ("", "-"):
        return ""
    if entry.lower() == "h":
        return HANG_UP
    if not _KEYS.fullmatch(entry):
        raise ValueError(f"keys may be 0-9, * and # ('' or '-': no input, 'h': hang up), got {raw!r}")
    return entry


class ScriptedKeys:
    """One entry per ``<Gather>``: keys, ``""``/``"-"`` for no input, ``"h"`` to hang up.

    When the script runs out, the caller hangs up: a test that forgets a step ends the
    call instead of looping on a menu.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries: list[KeyPress] = [_entry(raw) for raw in entries]
        self._next = 0

    @property
    def remaining(self) -> list[KeyPress]:
        """Entries not used yet (``HANG_UP`` for an ``h``)."""
        return self._entries[self._next :]

    def keys_for(self, gather: GatherPrompt) -> KeyPress:
        if self._next >= len(self._entries):
            return HANG_UP
        entry = self._entries[self._next]
        self._next += 1
        return entry


def parse_keys(text: str) -> ScriptedKeys:
    """The ``--keys`` form: ``1,1,6789#,-,2`` (``-`` or nothing between commas: no input)."""
    return ScriptedKeys(text.split(",") if text.strip() else [])


class InteractiveKeys:
    """Asks at the terminal, once per gather; the gather's prompts are already printed."""

    def keys_for(self, gather: GatherPrompt) -> KeyPress:
        hints = []
        if gather.num_digits is not None:
            hints.append(f"up to {gather.num_digits} key{'s' if gather.num_digits > 1 else ''}")
        if gather.finish_on_key:
            hints.append(f"end with {gather.finish_on_key}")
        hints.append("Enter alone: no input, h: hang up")
        while True:
            try:
                raw = click.prompt(f"Keys ({'; '.join(hints)})", default="", show_default=False)
            except click.Abort:  # Ctrl-D / Ctrl-C: the caller put the phone down
                return HANG_UP
            try:
                return _entry(str(raw).replace(" ", ""))
            except ValueError as exc:
                click.echo(str(exc), err=True)
