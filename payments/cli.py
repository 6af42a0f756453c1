"""``securepay payments export|reconcile|send-receipts``, for the utility's IT.

Registered on the ``securepay`` group by ``ivr.cli``; each runs inside the application
(``with_appcontext``) and uses its settings (the utility's zone), sessions, clock and
gateway. Dates are days in the utility's zone; a bad one is a one-line error, exit 2.
Nothing secret is printed (SECURITY 2): account numbers, amounts, confirmation numbers,
processor ids, card brand and last four.
"""

from __future__ import annotations

import csv
import io
import json

import click
from flask.cli import with_appcontext

from db.payment_reports import DayWindow, PaymentLine, attempts_made, payments_taken
from ivr.cli.report_window import day_window, fail, window_options
from ivr.services import current_services
from payments.gateway import ProcessorUnavailable
from payments.receipts import build_receipt_dispatcher
from payments.reconcile import ReconcileAborted, reconcile

__all__ = ["payments_group"]

EXPORT_COLUMNS = (
    "taken_at",
    "local_date",
    "account_number",
    "amount",
    "confirmation",
    "processor_id",
    "method_brand",
    "method_last4",
    "channel",
    "status",
)



@click.group("payments")
def payments_group() -> None:
    """Payments taken: export for the billing system, reconcile, receipts."""


# --- export ---------------------------------------------------------------------------


def _dollars(cents: int) -> str:
    """``12345`` -> ``"123.45"``: integer arithmetic, no float anywhere."""
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}{dollars}.{rest:02d}"


def _row(line: PaymentLine, window: DayWindow) -> dict[str, str]:
    return {
        "taken_at": line.taken_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "local_date": window.local_date(line.taken_at).isoformat(),
        "account_number": line.account_number,
        "amount": _dollars(line.amount_cents),
        "confirmation": line.confirmation,
        "processor_id": line.processor_id,
        "method_brand": line.method_brand,
        "method_last4": line.method_last4,
        "channel": line.channel,
        "status": line.status,
    }


@payments_group.command("export")
@window_options
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@with_appcontext
def export_command(since: str | None, until: str | None, fmt: str) -> None:
    """Print the payments taken in the window, one row per payment, for posting into
    the billing system: CSV with a header row, or a JSON list.

    Columns: taken_at (ISO 8601, UTC), local_date (the utility's zone), account_number,
    amount (dollars, e.g. 123.45), confirmation, processor_id, method_brand,
    method_last4, channel (ivr, or autopay for an Auto Pay draft), status.
    """
    services = current_services()
    window = day_window(services, since, until)
    with services.sessions() as session:
        rows = [_row(line, window) for line in payments_taken(session, window)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    click.echo(out.getvalue(), nl=False)


# --- reconcile ------------------------------------------------------------------------


@payments_group.command("reconcile")
@window_options
@with_appcontext
def reconcile_command(since: str | None, until: str | None) -> None:
    """Compare each payment attempt of the window with the payment processor.

    The processor's answer is the truth. This command only REPORTS: it changes nothing,
    here or at the processor. Each mismatch is printed on a line (attempt id,
    confirmation number, what differs: status, amount, a payment the processor does not
    have), then a summary.

    Exit status: 0 all match, 1 some mismatch, 2 the processor could not be asked.
    """
    services = current_services()
    window = day_window(services, since, until)
    if services.gateway is None:
        fail("STRIPE_API_KEY is not set: the payment processor cannot be asked", 2)
    # Read, then close the transaction before talking to the processor.
    with services.sessions() as session:
        lines = attempts_made(session, window)
    try:
        report = reconcile(lines, services.gateway)
    except ProcessorUnavailable as exc:
        fail(f"the payment processor is unreachable, nothing compared: {exc}", 2)
    except ReconcileAborted as exc:
        fail(str(exc), 2)
    for mismatch in report.mismatches:
        click.echo(str(mismatch))
    click.echo(f"{window}: {report.summary()}")
    if not report.matched:
        raise click.exceptions.Exit(1)


# --- receipts -------------------------------------------------------------------------


@payments_group.command("send-receipts")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@with_appcontext
def send_receipts_command(limit: int) -> None:
    """Send the email receipts still pending (SMTP was down, or the process stopped),
    oldest first, for payments of the last seven days. Exit 1 when any failed."""
    services = current_services()
    dispatcher = build_receipt_dispatcher(services.settings, services.sessions, services.clock)
    try:
        if not dispatcher.enabled:
            fail("SECUREPAY_SMTP_HOST is not set: receipts are off", 1)
        sent, failed = dispatcher.send_pending(limit)
    finally:
        dispatcher.shutdown()
    click.echo(f"sent {sent}, failed {failed}")
    if failed:
        raise click.exceptions.Exit(1)
