"""``securepay payments export|reconcile|send-receipts``, for the utility's IT.

Registered on the ``securepay`` group by ``ivr.cli``; each runs inside the application
(``with_appcontext``) and uses its settings (the utility's zone), sessions, clock and
gateway. Dates are days in the utility's zone; a bad one is a one-line error, exit 2.
Nothing secret is printed (SECURITY 2): account numbers, amounts, confirmation numbers,
processor ids, card brand and last four.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import socket
from datetime import datetime, timedelta
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from db.models import Payment
from db.payment_reports import DayWindow, PaymentLine, attempts_made, payments_taken
from db.posting_batches import NoSuchBatch, create_batch, last_cutoff, mark_reexported
from ivr.report_window import day_window, fail, parse_day, window_options
from ivr.services import Services, current_services
from payments.gateway import Adjustment, ProcessorAdjustments, ProcessorRejected, ProcessorUnavailable
from payments.posting_file import PostingFileError, write_private
from payments.posting_layout import DEFAULT, Layout, LayoutError
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
@click.option("--batch", is_flag=True,
              help="Post the payments, refunds and disputes no batch holds yet as the next numbered batch.")
@click.option("--reexport", type=click.IntRange(1), metavar="N",
              help="Write batch N again (it is not renumbered).")
@click.option("--layout", type=click.Path(dir_okay=False, path_type=Path),
              help="The posting file's layout (TOML; default: CSV with a trailer), with --batch.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this new file (mode 0600, all at once; never over an existing file).")
@with_appcontext
def export_command(
    since: str | None, until: str | None, fmt: str, batch: bool, reexport: int | None,
    layout: Path | None, out: Path | None,
) -> None:
    """Print the payments taken in the window, one row per payment: CSV with a header
    row, or a JSON list. A report: run it again and it shows the same payments.

    For the billing system, post with ``--batch``: each payment goes in exactly one
    numbered batch, recorded in the database, with a trailer of the line count and the
    net sum; refunds and disputes made at the processor are lines of their own. A batch
    is written once; ``--reexport N`` writes it again, and says so in the trail.

    Columns: taken_at (ISO 8601, UTC), local_date (the utility's zone), account_number,
    amount (dollars, e.g. 123.45), confirmation, processor_id, method_brand,
    method_last4, channel (ivr, or autopay for an Auto Pay draft), status.
    """
    if batch or reexport is not None:
        if batch and reexport is not None:
            fail("--batch and --reexport: choose one")
        if until is not None or fmt != "csv":
            fail("--until and --format are for the report; a batch takes what no batch holds yet")
        export_batch(since=since, reexport=reexport, layout_path=layout, out=out)
        return
    if layout is not None:
        fail("--layout is for posting files: add --batch")
    services = current_services()
    window = day_window(services, since, until)
    with services.sessions() as session:
        rows = [_row(line, window) for line in payments_taken(session, window)]
    if fmt == "json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    _emit(text, out)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        write_private(out, text)
    except PostingFileError as exc:
        fail(str(exc), 1)


# --- posting batches ------------------------------------------------------------------

# Refunds and disputes are looked for from a day before the last batch's cut-off (clocks
# differ; an adjustment already posted is recognized by its processor id).
ADJUSTMENT_OVERLAP = timedelta(days=1)


def export_batch(
    *, since: str | None, reexport: int | None, layout_path: Path | None, out: Path | None
) -> None:
    """Make the next batch (or load batch ``reexport``), render it, record it, then write it."""
    services = current_services()
    zone = services.settings.timezone
    try:
        layout = (DEFAULT if layout_path is None else Layout.from_file(layout_path)).in_zone(zone)
    except LayoutError as exc:
        fail(str(exc))
    if out is not None and out.exists():  # checked again, atomically, when written
        fail(f"{out} already exists: posting files are never overwritten; nothing posted")
    now = services.clock.now()
    first_day = parse_day("--since", since)
    start = None if first_day is None else DayWindow(first_day, first_day, zone).start
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    adjustments: list[Adjustment] = []
    if reexport is None:
        adjustments = _processor_adjustments(services, now)
    with services.unit_of_work(os_user=getpass.getuser(), host=socket.gethostname()) as uow:
        try:
            made = (
                create_batch(uow.session, now, adjustments, since=start, created_by=who)
                if reexport is None else mark_reexported(uow.session, reexport, now)
            )
        except NoSuchBatch as exc:
            fail(str(exc))
        if made is None:
            click.echo("nothing to post: every payment, refund and dispute is in a batch already", err=True)
            return
        try:
            text = layout.render(made)
        except LayoutError as exc:
            fail(f"{exc}; nothing posted")
        event = "posting_batch_created" if reexport is None else "posting_batch_reexported"
        uow.events.record(event, actor=who, batch=made.number, lines=made.count,
                          total_cents=made.total_cents, exports=made.exports)
        uow.commit()
    try:
        if out is None:
            click.echo(text, nl=False)
        else:
            write_private(out, text)
    except PostingFileError as exc:
        number = made.number
        fail(f"batch {number} is recorded but not written ({exc}): write it with --reexport {number}", 1)
    again = "" if reexport is None else f" again (export {made.exports})"
    where = "" if out is None else f" to {out}"
    click.echo(f"batch {made.number}: {made.count} line(s), net {_dollars(made.total_cents)}, "
               f"written{again}{where}", err=True)


def _processor_adjustments(services: Services, now: datetime) -> list[Adjustment]:
    """The refunds and disputes at the processor since the last batch (before any write)."""
    gateway = services.gateway
    if not isinstance(gateway, ProcessorAdjustments):
        fail("STRIPE_API_KEY is not set: refunds and disputes made at the processor cannot be "
             "read; nothing posted")
    with services.sessions() as session:
        cutoff = last_cutoff(session)
        first = session.scalar(select(func.min(Payment.taken_at)))
    since = (cutoff - ADJUSTMENT_OVERLAP) if cutoff is not None else (first or now)
    try:
        return gateway.adjustments(since, now + timedelta(seconds=1))
    except (ProcessorUnavailable, ProcessorRejected) as exc:
        fail(f"the payment processor could not be asked for refunds and disputes ({exc}); nothing posted")


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
