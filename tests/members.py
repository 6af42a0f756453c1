"""Test members, imported through the real importer, and the secrets they type."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from flask import Flask

from db.importer import import_accounts
from ivr.services import Services, current_services

# The secrets typed in tests: chosen so they appear nowhere else in a call (amounts,
# dates, account and phone numbers) and, with a leading zero, can never be a process id
# or a port in the trail: a scan that finds one standing alone has found a leak.
PIN = "0473"
SSN = "0618"
OTHER_SSN = "0536"
NEW_PIN = "0582"

COLUMNS = [
    "account_number", "account_type", "name", "ssn_last4", "phones", "balance",
    "due_date", "past_due", "language", "email",
]


@dataclass
class Member:
    account_number: str
    phones: list[str] = field(default_factory=list)
    ssn_last4: str = SSN
    pin: str | None = PIN
    account_type: str = "residential"
    name: str = "Rivera"
    balance: str = "123.45"
    due_date: str = "2026-11-30"
    past_due: str = ""
    language: str = ""
    email: str = ""

    def row(self) -> dict[str, str]:
        return {
            "account_number": self.account_number, "account_type": self.account_type,
            "name": self.name, "ssn_last4": self.ssn_last4, "phones": ";".join(self.phones),
            "balance": self.balance, "due_date": self.due_date, "past_due": self.past_due,
            "language": self.language, "email": self.email,
        }


def csv_text(*members: Member) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for member in members:
        writer.writerow(member.row())
    return out.getvalue()


def add_members(app: Flask, *members: Member, legacy_pin_from_ssn: bool = False) -> list[int]:
    """Import ``members`` and set their PINs; returns their account ids."""
    with app.app_context():
        services: Services = current_services()
        with services.unit_of_work() as uow:
            report = import_accounts(
                uow.session, csv_text(*members), services.hasher, services.clock.now(),
                legacy_pin_from_ssn=legacy_pin_from_ssn,
            )
            assert not report.errors, report.errors
            ids = []
            for member in members:
                summary = uow.accounts.by_number(member.account_number)
                assert summary is not None
                ids.append(summary.id)
                if member.pin is not None and not legacy_pin_from_ssn:
                    uow.credentials.set_pin(
                        summary.id, services.hasher.hash(member.pin), "member", services.clock.now()
                    )
            uow.commit()
    return ids
