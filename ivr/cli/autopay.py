"""``securepay autopay run|list|show|cancel|export``: the drafts, and Auto Pay for staff
and for the billing system.

``run`` is the daily timer's command (README, "Auto Pay"). It prints a line per bill it
looked at (charged, skipped and why, declined, unknown, deferred) and a summary, and
exits non-zero only when it could not run (no processor configured, a bad date, the
database unreachable). ``cancel`` needs a staff name and a reason and goes into the
audit trail with the operating-system user and host (SECURITY 19). Nothing secret is
printed: account numbers, method brand and last four, processor-free ids.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import socket
from datetime import UTC, datetime, time

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from db.autopay import NotEnrolled, SqlAutopay
from ivr.cli.database_errors import describe
from ivr.cli.report_window import fail, parse_day
from ivr.flows.amounts import format_cents
from ivr.services import Services, current_services
from payments import autopay_enrollment
from payments.autopay import limits_from, run_drafts
from payments.autopay_notices import build_autopay_notices, wording_from
from payments.autopay_terms import EnrollmentView
from payments.receipts import build_receipt_dispatcher

__all__ = ["autopay_group"]

STATUSES = ("active", "suspended", "cancelled")
EXPORT_COLUMNS = (
    "account_number",
    "autopay",
    "method_kind",
    "method_brand",
    "method_last4",
    "first_due_after",
    "terms_version",
    "agreed_at",
    "channel",
    "changed_at",
    "reason",
)


@click.group("autopay")
def autopay_group() -> None:
    """Auto Pay: the daily drafts, and the enrollments for staff and billing."""


def _required_text(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not value:
        raise click.BadParameter("must not be empty", param=param)
    return value


def _local(services: Services, moment: datetime) -> str:
    return moment.astimezone(services.settings.timezone).strftime("%Y-%m-%d %H:%M %Z")


def _method(enrollment: EnrollmentView) -> str:
    return f"{enrollment.method_brand} {enrollment.method_last4}"


# --- run ------------------------------------------------------------------------------


@autopay_group.command("run")
@click.option(
    "--date", "day_raw", metavar="YYYY-MM-DD", help="The due date to draft (default: today, local)."
)
@with_appcontext
def run_command(day_raw: str | None) -> None:
    """Charge the Auto Pay bills due on the day, each at most once (run it daily; any
    day may be given again, to catch up after an outage: nothing is charged twice)."""
    services = current_services()
    day = parse_day("--date", day_raw) or services.clock.now().astimezone(services.settings.timezone).date()
    if services.gateway is None:
        fail("STRIPE_API_KEY is not set: nothing can be charged", 2)
    try:
        report = run_drafts(
            services.sessions,
            services.gateway,
            services.clock,
            day=day,
            limits=limits_from(services.settings),
            wording=wording_from(services.settings),
            process=f"{services.process}:autopay",
        )
    except SQLAlchemyError as exc:
        # The one-line reason every command gives (``ivr.cli.database_errors``).
        fail(f"{describe(exc)}; the run stopped", 1)
    receipts = build_receipt_dispatcher(services.settings, services.sessions, services.clock)
    try:
        for payment_id in report.payment_ids:
            receipts.dispatch(payment_id)
        receipts.wait(timeout=60)
    finally:
        receipts.shutdown()
    build_autopay_notices(services.settings, services.sessions, services.clock).deliver(report.notice_ids)
    for line in report.lines:
        click.echo(str(line))
    click.echo(report.summary())


# --- list, show -----------------------------------------------------------------------


@autopay_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only these (default: active and suspended).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@with_appcontext
def list_command(status: str | None, fmt: str) -> None:
    """The Auto Pay enrollments: account, status, method, since when, through which channel."""
    services = current_services()
    with services.sessions() as session:
        rows = SqlAutopay(session).listing(status)
    if fmt == "json":
        click.echo(json.dumps([_json(number, e) for number, e in rows], indent=2))
        return
    click.echo(f"{'account':<20} {'status':<10} {'method':<18} {'since':<22} channel")
    for number, enrollment in rows:
        click.echo(
            f"{number:<20} {enrollment.status:<10} {_method(enrollment):<18} "
            f"{_local(services, enrollment.agreed_at):<22} {enrollment.channel}"
        )
    click.echo(f"{len(rows)} enrollment(s)")


def _json(number: str, enrollment: EnrollmentView) -> dict[str, object]:
    return {
        "account_number": number,
        "status": enrollment.status,
        "status_reason": enrollment.status_reason,
        "method": {
            "kind": enrollment.method_kind,
            "brand": enrollment.method_brand,
            "last4": enrollment.method_last4,
        },
        "terms_version": enrollment.terms_version,
        "agreed_at": enrollment.agreed_at.isoformat(),
        "channel": enrollment.channel,
        "agreed_by": enrollment.agreed_by,
        "first_due_after": enrollment.first_due_after.isoformat(),
        "recorded_authorization": enrollment.recording_sid,
    }


@autopay_group.command("show")
@click.argument("account")
@with_appcontext
def show_command(account: str) -> None:
    """An account's Auto Pay: every agreement, every change, every draft."""
    services = current_services()
    with services.unit_of_work() as uow:
        summary = uow.accounts.by_number(account) if account.isdigit() else None
        if summary is None:
            fail(f"no account {account}", 1)
        autopay = SqlAutopay(uow.session)
        agreements, history, drafts = (
            autopay.agreements(summary.id),
            autopay.history(summary.id),
            autopay.drafts(summary.id),
        )
    click.echo(f"account {summary.number}")
    if not agreements:
        click.echo("never enrolled in Auto Pay")
        return
    click.echo("agreements:")
    for e in agreements:
        reason = f" ({e.status_reason})" if e.status_reason else ""
        recorded = f", recorded authorization {e.recording_sid}" if e.recording_sid else ""
        click.echo(
            f"  #{e.id} {e.status}{reason}: {e.method_kind} {_method(e)}, terms {e.terms_version}, "
            f"agreed {_local(services, e.agreed_at)} via {e.channel} by {e.agreed_by}, "
            f"bills due after {e.first_due_after}{recorded}"
        )
    click.echo("changes:")
    for change in history:
        why = f": {change.reason}" if change.reason else ""
        click.echo(
            f"  {_local(services, change.at)} #{change.enrollment_id} {change.action} "
            f"via {change.channel} by {change.actor}{why}"
        )
    click.echo("drafts:")
    for draft in drafts:
        code = f" ({draft.decline_code})" if draft.decline_code else ""
        click.echo(
            f"  due {draft.due_date}: {format_cents(draft.amount_cents)} {draft.status}{code}, "
            f"attempt {draft.attempt_id}"
        )
    if not drafts:
        click.echo("  none yet")


# --- cancel ---------------------------------------------------------------------------


@autopay_group.command("cancel")
@click.argument("account")
@click.option("--staff", required=True, callback=_required_text, help="Your name, for the audit trail.")
@click.option("--reason", required=True, callback=_required_text, help="Why, for the audit trail.")
@with_appcontext
def cancel_command(account: str, staff: str, reason: str) -> None:
    """Cancel an account's Auto Pay (the member asked member services); the member is
    sent the cancellation in writing."""
    services = current_services()
    now = services.clock.now()
    with services.unit_of_work(os_user=getpass.getuser(), host=socket.gethostname()) as uow:
        summary = uow.accounts.by_number(account) if account.isdigit() else None
        if summary is None:
            fail(f"no account {account}", 1)
        try:
            done = autopay_enrollment.cancel(
                uow.session, summary.id, channel="staff", actor=staff, reason=reason,
                wording=wording_from(services.settings), now=now,
            )
        except NotEnrolled:
            fail(f"account ending {summary.number[-4:]} has no Auto Pay", 1)
        ended, notices = done.enrollment, done.notice_ids
        uow.events.record(
            "autopay_cancelled",
            account_id=summary.id,
            actor=staff,
            reason=reason,
            enrollment_id=ended.id,
            channel="staff",
        )
        uow.commit()
    if notices:
        build_autopay_notices(services.settings, services.sessions, services.clock).deliver(list(notices))
    click.echo(f"Account ending {summary.number[-4:]}: Auto Pay cancelled; no further bill will be drafted.")


# --- export ---------------------------------------------------------------------------


@autopay_group.command("export")
@click.option(
    "--since", metavar="YYYY-MM-DD", help="Only accounts whose Auto Pay changed since (default: all)."
)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@with_appcontext
def export_command(since: str | None, fmt: str) -> None:
    """Each account's Auto Pay as it stands, for the billing system (so the bill can
    say "do not pay: Auto Pay"): one row per account that has (or had) Auto Pay.

    Columns: account_number, autopay (active, suspended, cancelled), method_kind,
    method_brand, method_last4, first_due_after (bills due after it are drafted),
    terms_version, agreed_at (UTC), channel, changed_at (UTC, the last change), reason.
    """
    services = current_services()
    first = parse_day("--since", since)
    start = (
        datetime.combine(first, time.min, services.settings.timezone).astimezone(UTC)
        if first is not None
        else datetime(1970, 1, 1, tzinfo=UTC)
    )
    with services.sessions() as session:
        autopay = SqlAutopay(session)
        latest: dict[str, EnrollmentView] = {}
        for number, enrollment in autopay.listing("cancelled"):  # oldest first: the last stays
            latest[number] = enrollment
        for number, enrollment in autopay.listing():  # a live agreement is what stands
            latest[number] = enrollment
    latest = {number: e for number, e in latest.items() if e.status_changed_at >= start}
    rows = [_export_row(number, latest[number]) for number in sorted(latest, key=lambda n: (len(n), n))]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    click.echo(out.getvalue(), nl=False)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _export_row(number: str, e: EnrollmentView) -> dict[str, str]:
    return {
        "account_number": number,
        "autopay": e.status,
        "method_kind": e.method_kind,
        "method_brand": e.method_brand,
        "method_last4": e.method_last4,
        "first_due_after": e.first_due_after.isoformat(),
        "terms_version": e.terms_version,
        "agreed_at": _utc(e.agreed_at),
        "channel": e.channel,
        "changed_at": _utc(e.status_changed_at),
        "reason": e.status_reason or "",
    }
