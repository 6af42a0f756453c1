"""Which new PINs we refuse (SECURITY rule 8, NIST SP 800-63B section 5.1.1.2).

A 4-digit PIN has only 10,000 values and people pick a few hundred of them; the
lockout after five wrong tries only protects a PIN that is not among the first
guesses an attacker makes. So a new PIN is checked against the guesses that come
first: repeats, runs, the most common PINs, years, and what an attacker may know of
the member (the account number they dialled for, the phone they call from, the SSN
last four). The caller is told which rule refused the PIN (``prompt_key``), as NIST
asks, so they can pick a better one instead of guessing at our rules.

The checks run in the order the members of ``PinRejection`` are declared, and the
first failing one is the answer. The SSN check is last because it costs one keyed
hash comparison (the SSN is only stored hashed), which is slow on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from itertools import pairwise
from pathlib import Path

__all__ = ["COMMON_PINS", "BlocklistError", "PinPolicy", "PinRejection"]

_FOUR_DIGITS = re.compile(r"[0-9]{4}")

# The most common 4-digit PINs in published analyses of leaked PIN and passcode sets,
# beyond what the pattern rules below already catch.
COMMON_PINS: frozenset[str] = frozenset(
    "1234 1111 0000 1212 7777 1004 2000 4444 2222 6969 9999 3333 5555 6666 1122 1313"
    " 8888 4321 2001 1010 2580 0852 1357 2468 1369 5683 0007".split()
)


class PinRejection(Enum):
    """Why a new PIN was refused; declared in the order the checks run."""

    NOT_FOUR_DIGITS = "not_four_digits"
    REPEATED = "repeated"
    SEQUENCE = "sequence"
    COMMON = "common"
    YEAR = "year"
    ACCOUNT_DIGITS = "account_digits"
    PHONE_DIGITS = "phone_digits"
    BLOCKLISTED = "blocklisted"
    SSN_DIGITS = "ssn_digits"

    @property
    def prompt_key(self) -> str:
        """The prompt the IVR says to explain the refusal, e.g. ``pin_rejected_year``."""
        return f"pin_rejected_{self.value}"


class BlocklistError(ValueError):
    """A utility's blocklist file has a line that is not a 4-digit PIN."""


def _is_repeated(pin: str) -> bool:
    return len(set(pin)) == 1


def _is_sequence(pin: str) -> bool:
    """Ascending or descending by one, wrapping 9 to 0 (``7890``, ``9012``, ``1098``)."""
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(pin)}
    return steps in ({1}, {9})


def _is_common(pin: str) -> bool:
    """A listed common PIN, or the ``ABAB`` (``1212``) and ``AABB`` (``1122``) shapes."""
    abab = pin[0] == pin[2] and pin[1] == pin[3]
    aabb = pin[0] == pin[1] and pin[2] == pin[3]
    return pin in COMMON_PINS or abab or aabb


def _is_year(pin: str) -> bool:
    return 1900 <= int(pin) <= 2099


def _last_four(number: str | None) -> str | None:
    """The last four digits of a number as written anywhere (``+1 (202) 555-0100``)."""
    if number is None:
        return None
    digits = "".join(ch for ch in number if "0" <= ch <= "9")
    return digits[-4:] if len(digits) >= 4 else None


def _validated(pins: Iterable[str]) -> frozenset[str]:
    checked = frozenset(pins)
    bad = sorted(pin for pin in checked if not _FOUR_DIGITS.fullmatch(pin))
    if bad:
        raise BlocklistError(f"blocklisted PINs must be 4 digits, got {bad[0]!r}")
    return checked


@dataclass(frozen=True)
class PinPolicy:
    """The rules for a new PIN, plus the PINs a utility adds (``extra``).

    ``extra`` exists because a utility knows local favourites we cannot (its street
    numbers, the co-op's founding year, the digits on its trucks).
    """

    extra: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", _validated(self.extra))

    @classmethod
    def from_file(cls, path: str | Path) -> PinPolicy:
        """Read a blocklist: one PIN per line; ``#`` starts a comment; blank lines skipped.

        A bad line raises ``BlocklistError`` (a ``ValueError``) naming the file and line,
        so a typo in the configuration stops start-up instead of silently allowing PINs.
        """
        pins: set[str] = set()
        text = Path(path).read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            if not _FOUR_DIGITS.fullmatch(entry):
                raise BlocklistError(
                    f"{path}, line {number}: expected a 4-digit PIN, got {entry!r}"
                )
            pins.add(entry)
        return cls(frozenset(pins))

    def check(
        self,
        pin: str,
        *,
        account_number: str,
        caller_number: str | None = None,
        matches_ssn: Callable[[str], bool] | None = None,
    ) -> PinRejection | None:
        """The first rule ``pin`` breaks, or ``None`` when it may be used.

        ``caller_number`` is the caller ID as received (withheld: ``None``);
        ``matches_ssn`` compares a candidate with the stored SSN or tax-ID hash and is
        called at most once, after every other rule passed.
        """
        if not _FOUR_DIGITS.fullmatch(pin):
            return PinRejection.NOT_FOUR_DIGITS
        if _is_repeated(pin):
            return PinRejection.REPEATED
        if _is_sequence(pin):
            return PinRejection.SEQUENCE
        if _is_common(pin):
            return PinRejection.COMMON
        if _is_year(pin):
            return PinRejection.YEAR
        if pin == _last_four(account_number):
            return PinRejection.ACCOUNT_DIGITS
        if pin == _last_four(caller_number):
            return PinRejection.PHONE_DIGITS
        if pin in self.extra:
            return PinRejection.BLOCKLISTED
        if matches_ssn is not None and matches_ssn(pin):
            return PinRejection.SSN_DIGITS
        return None
