"""Looks for secrets where none may be (PCI DSS; SECURITY rules 2, 4, 20).

Card numbers are found as Luhn-valid runs of 13 to 19 digits (spaces or dashes
allowed between them), security codes as a code-named field with a value, and, where
the caller knows them (tests, an incident), the exact secrets typed: a PIN or SSN
digits standing alone, not inside a longer number or word. A finding names where it
is and masks what it found: the scan never prints the secret it is looking for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, MetaData, select

CARD_RUN = re.compile(r"(?<![0-9A-Za-z])(?:[0-9][ -]?){12,18}[0-9](?![0-9A-Za-z])")
SECURITY_CODE_FIELD = re.compile(
    r"(?i)(?:cvv2?|cvc2?|security[_ ]?code|card[_ ]?code)[\"']?\s*[:=]\s*[\"']?([0-9]{3,4})(?![0-9])"
)


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str  # card_number, security_code, typed_secret
    detail: str  # masked: never the secret itself

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} ({self.detail})"


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _standalone(secret: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])")


def appears_alone(secret: str, text: str) -> bool:
    """``secret`` stands alone in ``text``: not inside a longer number or identifier (a
    call SID may contain any three digits by chance; a leak shows them on their own)."""
    return _standalone(secret).search(text) is not None


def scan_text(text: str, where: str, secrets: Sequence[str] = ()) -> list[Finding]:
    findings: list[Finding] = []
    for match in CARD_RUN.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            findings.append(Finding(where, "card_number", f"{len(digits)} digits ending {digits[-4:]}"))
    for match in SECURITY_CODE_FIELD.finditer(text):
        if set(match.group(1)) != {"*"}:
            findings.append(Finding(where, "security_code", "a security code field with digits"))
    for index, secret in enumerate(secrets, start=1):
        if secret and appears_alone(secret, text):
            findings.append(Finding(where, "typed_secret", f"secret #{index} ({len(secret)} digits)"))
    return findings


def scan_database(engine: Engine, secrets: Sequence[str] = ()) -> list[Finding]:
    """Every row of every table, every column, as text."""
    metadata = MetaData()
    metadata.reflect(engine)
    findings: list[Finding] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for number, row in enumerate(conn.execute(select(table)), start=1):
                for column, value in row._mapping.items():
                    if value is not None:
                        findings.extend(scan_text(str(value), f"{table.name}.{column} row {number}", secrets))
    return findings


def scan_files(paths: Iterable[str | Path], secrets: Sequence[str] = ()) -> list[Finding]:
    """Log files, exports: each line on its own, named by file and line number."""
    findings: list[Finding] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                findings.extend(scan_text(line, f"{path}:{number}", secrets))
    return findings
