"""Staff commands on a member's phone PIN: ``securepay pin reset|unlock|status``.

Every change needs a staff name and a reason, and goes into the audit trail with the
operating-system user and host it was run from (SECURITY rule 19). No command ever
shows or accepts a PIN.
"""

from __future__ import annotations

import getpass
import socket

import click
from flask.cli import with_appcontext

from db.unit_of_work import SqlUnitOfWork
from ivr.flows.ports import AccountSummary
from ivr.services import current_services


def _required_text(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not value:
        raise click.BadParameter("must not be empty", param=param)
    return value


def _staff_unit_of_work() -> SqlUnitOfWork:
    return current_services().unit_of_work(os_user=getpass.getuser(), host=socket.gethostname())


def _account(uow: SqlUnitOfWork, number: str) -> AccountSummary:
    summary = uow.accounts.by_number(number) if number.isdigit() else None
    if summary is None:
        raise click.ClickException(f"no account {number}")
    return summary


@click.group("pin")
def pin_group() -> None:
    """Staff: reset, unlock or inspect a member's phone PIN."""


def _staff_action(name: str, help_text: str) -> click.Command:
    @click.argument("account")
    @click.option("--staff", required=True, callback=_required_text, help="Your name, for the audit trail.")
    @click.option("--reason", required=True, callback=_required_text, help="Why, for the audit trail.")
    @with_appcontext
    def action(account: str, staff: str, reason: str) -> None:
        services = current_services()
        now = services.clock.now()
        with _staff_unit_of_work() as uow:
            summary = _account(uow, account)
            if name == "reset":
                uow.credentials.reset(summary.id, now)
            else:
                uow.credentials.unlock(summary.id, now)
            uow.events.record(f"pin_{name}", account_id=summary.id, actor=staff, reason=reason)
            uow.commit()
        done = {
            "reset": "PIN cleared: the member creates a new one on the next call.",
            "unlock": "Phone PIN unlocked: failed attempts cleared.",
        }[name]
        click.echo(f"Account ending {summary.number[-4:]}: {done}")

    action.__name__ = name
    return pin_group.command(name, help=help_text)(action)


_staff_action("reset", "Clear an account's phone PIN; the member creates a new one on the next call.")
_staff_action("unlock", "Lift the lockout after too many wrong PIN or SSN entries.")


@pin_group.command("status")
@click.argument("account")
@with_appcontext
def status(account: str) -> None:
    """Whether a PIN is set, its origin, failed attempts, lock, last change (never the PIN)."""
    services = current_services()
    zone = services.settings.timezone
    with services.unit_of_work() as uow:
        summary = _account(uow, account)
        credential = uow.credentials.get(summary.id)
    changed = "never"
    if credential.changed_at is not None:
        changed = credential.changed_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    click.echo(f"account:        ending {summary.number[-4:]}")
    click.echo(f"PIN set:        {'no' if credential.origin == 'none' else 'yes'}")
    click.echo(f"origin:         {credential.origin}")
    click.echo(f"failed entries: {credential.failure_count}")
    click.echo(f"locked:         {'yes' if credential.locked else 'no'}")
    click.echo(f"last change:    {changed}")
