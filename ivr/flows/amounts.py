"""Amounts keyed on a phone keypad, and amounts written for people.

A keypad has no decimal point, so the caller keys ``*`` for it: ``2 5 * 5 0 #`` is
$25.50 (Twilio strips the ``#``). Everything is integer cents: a float cannot hold
$0.10 exactly, and a payment system that rounds is a payment system that is audited.
"""

from __future__ import annotations

import re

__all__ = ["MAX_DOLLAR_DIGITS", "format_cents", "parse_amount_keys"]

# Seven dollar digits ($9,999,999.99) is far above any utility bill and any configured
# maximum; a longer entry is a mistake, not an amount.
MAX_DOLLAR_DIGITS = 7

_KEYS = re.compile(r"(?P<dollars>[0-9]*)(?:\*(?P<cents>[0-9]{0,2}))?")


def parse_amount_keys(digits: str) -> int | None:
    """Keys such as ``"25*50"`` -> ``2550`` cents; ``None`` when they are not an amount.

    ``"25"`` is whole dollars, ``"25*5"`` is $25.50 (one cent digit is tenths, as
    written), ``"*50"`` and ``"0*50"`` are 50 cents, and leading zeros are ignored.
    Not an amount: nothing keyed, a lone ``*``, two ``*``, three cent digits, any other
    key, or more than ``MAX_DOLLAR_DIGITS`` dollar digits. Whether the amount is within
    the utility's limits is the caller's question, not this function's.
    """
    match = _KEYS.fullmatch(digits)
    if match is None:
        return None
    dollars = match.group("dollars").lstrip("0")
    cents = match.group("cents") or ""
    if not match.group("dollars") and not cents:
        return None
    if len(dollars) > MAX_DOLLAR_DIGITS:
        return None
    return int(dollars or "0") * 100 + int(cents.ljust(2, "0"))


def format_cents(cents: int) -> str:
    """``123456`` -> ``"$1,234.56"``, ``-500`` -> ``"-$5.00"``: for the CLI and exports."""
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{rest:02d}"
