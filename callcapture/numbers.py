"""Phone numbers to E.164: the caller ID Twilio sends, and the numbers on file.

Call Capture matches the caller ID against the numbers on file, so both sides are
normalized the same way, with ``phonenumbers``, and only numbers of the utility's own
region count (``US`` by default). Caller ID identifies; it never authenticates.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

__all__ = ["InvalidPhoneNumber", "normalize_caller_id", "normalize_on_file"]

# What Twilio puts in ``From`` when the caller ID is withheld or unknown: the words, and
# the numbers that spell them on a keypad (+266696687 "ANONYMOUS", +7378742833
# "RESTRICTED", +2562533 "BLOCKED", +8656696 "UNKNOWN", +86282452253 "UNAVAILABLE").
WITHHELD = frozenset(
    {
        "anonymous",
        "restricted",
        "unknown",
        "blocked",
        "unavailable",
        "private",
        "+266696687",
        "+7378742833",
        "+2562533",
        "+8656696",
        "+86282452253",
    }
)

# Digits with the usual separators; no letters (vanity numbers, "ext.") and nothing else.
_DIALABLE = re.compile(r"\+?[0-9 ().\-]+")


class InvalidPhoneNumber(ValueError):
    """A phone number on file cannot be used; the message says why (not the number)."""


def _parse(raw: str, region: str) -> phonenumbers.PhoneNumber:
    """Parse digits-and-separators text; raise ``InvalidPhoneNumber`` saying why not."""
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber("the number is empty")
    if not _DIALABLE.fullmatch(text):
        raise InvalidPhoneNumber("the number may hold only digits, spaces, '+', '(', ')', '.' and '-'")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        raise InvalidPhoneNumber("the text is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("the number does not exist (wrong length or area code)")
    if not phonenumbers.is_valid_number_for_region(number, region):
        raise InvalidPhoneNumber(f"the number is not a {region} number")
    return number


def normalize_on_file(raw: str, region: str = "US") -> str:
    """A number from the accounts file or the portal, in any common format, as E.164.

    ``(202) 555-0123``, ``202.555.0123``, ``+1 202 555 0123`` and ``2025550123`` all give
    ``+12025550123``. Anything else raises ``InvalidPhoneNumber`` with the reason.
    """
    return phonenumbers.format_number(_parse(raw, region), PhoneNumberFormat.E164)


def normalize_caller_id(raw: str, region: str = "US") -> str | None:
    """Twilio's ``From`` as E.164, or None when it cannot identify anyone.

    None for a withheld caller ID (anonymous, restricted, unknown, blocked, ...), for a
    malformed or non-existent number and for a number outside ``region``: the caller
    then keys the account number in.
    """
    if raw.strip().lower() in WITHHELD:
        return None
    try:
        return normalize_on_file(raw, region)
    except InvalidPhoneNumber:
        return None
