"""Issue 10, points 3, 5 and 6: ``securepay autopay run|list|show|cancel|export``, the
written notices, ``payments export`` marking drafts, ``calls stats`` counting them."""

from __future__ import annotations

import csv
import dataclasses
import getpass
import io
import json
from collections.abc import Iterator

import pytest
import stripe
from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent, AutopayNotice
from ivr.cli import main  # the whole command line, as installed
from ivr.services import EXTENSION_KEY, current_services
from tests.autopay_setup import DUE, enroll, live, save_card
from tests.ledger_checks import DECLINES_AT_CHARGE, processor_charges
from tests.members import Member, add_members
from tests.test_receipts import SmtpServer, smtp_server  # noqa: F401 -- a fixture

ACCOUNT = "10004821"
EMAIL = "maria.rivera@example.com"


def cli(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def mail(app: Flask, smtp_server: SmtpServer) -> Iterator[SmtpServer]:  # noqa: F811
    """The app's settings pointed at a real SMTP server on 127.0.0.1."""
    services = app.extensions[EXTENSION_KEY]
    services.settings = dataclasses.replace(
        services.settings, smtp_host="127.0.0.1", smtp_port=smtp_server.port
    )
    yield smtp_server


def enrolled(app: Flask, client: stripe.StripeClient, card: str | None = None, **member: str) -> int:
    (account_id,) = add_members(app, Member(ACCOUNT, email=EMAIL, **member))  # type: ignore[arg-type]
    enroll(app, save_card(app, client, ACCOUNT, *([card] if card else [])))
    return account_id


def test_run_prints_what_it_did_and_sends_the_receipt(
    app: Flask, stripe_client: stripe.StripeClient, mail: SmtpServer
) -> None:
    enrolled(app, stripe_client)
    code, out = cli(app, "autopay", "run", "--date", str(DUE))
    assert code == 0, out
    assert f"{ACCOUNT} due {DUE}: charged $123.45 confirmation" in out
    assert "1 charged, 0 processing, 0 declined" in out and "$123.45 drafted" in out
    (receipt,) = mail.inbox.messages
    assert "123.45" in receipt.get_content() and receipt["To"] == EMAIL
    code, again = cli(app, "autopay", "run", "--date", str(DUE))
    assert code == 0 and "skipped $123.45 (drafted already: succeeded)" in again
    assert len(processor_charges(stripe_client)) == 1


def test_run_defaults_to_today_in_the_utilitys_zone(app: Flask, stripe_client: stripe.StripeClient) -> None:
    enrolled(app, stripe_client)
    code, out = cli(app, "autopay", "run")  # the test clock: 2026-11-24 in Chicago
    assert code == 0 and out.startswith("2026-11-24: 0 charged")


def test_run_exits_non_zero_only_when_it_cannot_run(app: Flask) -> None:
    code, out = cli(app, "autopay", "run", "--date", "2026-13-01")
    assert code == 2 and "--date must be a date as YYYY-MM-DD" in out
    app.extensions[EXTENSION_KEY].gateway = None
    code, out = cli(app, "autopay", "run")
    assert code == 2 and "STRIPE_API_KEY is not set" in out


def test_a_decline_is_sent_to_the_member_in_writing_and_kept(
    app: Flask, stripe_client: stripe.StripeClient, mail: SmtpServer
) -> None:
    enrolled(app, stripe_client, DECLINES_AT_CHARGE)
    code, out = cli(app, "autopay", "run", "--date", str(DUE))
    assert code == 0 and "declined $123.45 (declined: the bill is left for the member)" in out
    (notice,) = mail.inbox.messages
    text = notice.get_content()
    assert "was declined" in text and "The bill is still unpaid" in text and "ending in 0341" in text
    assert ACCOUNT not in text and "ending in 4821" in text  # last four only (SECURITY 19b)
    with app.app_context(), current_services().sessions() as session:
        (kept,) = session.scalars(select(AutopayNotice))
        assert kept.kind == "declined" and kept.sent_at is not None
        assert kept.body == text.replace("\r\n", "\n")
        assert kept.to_masked == "m***@example.com"


def test_list_show_and_export(app: Flask, stripe_client: stripe.StripeClient) -> None:
    enrolled(app, stripe_client)
    cli(app, "autopay", "run", "--date", str(DUE))
    code, out = cli(app, "autopay", "list")
    assert code == 0 and ACCOUNT in out and "active" in out and "visa 4242" in out
    assert "1 enrollment(s)" in out
    code, out = cli(app, "autopay", "list", "--status", "cancelled")
    assert code == 0 and "0 enrollment(s)" in out
    code, out = cli(app, "autopay", "show", ACCOUNT)
    assert code == 0, out
    assert "active: card visa 4242, terms 2026-12-01" in out and "via portal" in out
    assert "enrolled via portal by portal" in out
    assert f"due {DUE}: $123.45 succeeded" in out
    code, out = cli(app, "autopay", "export")
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["account_number"] == ACCOUNT and row["autopay"] == "active" and row["method_last4"] == "4242"
    assert row["first_due_after"] == "2026-10-31"


def test_cancel_needs_staff_and_reason_keeps_the_history_and_writes_to_the_member(
    app: Flask, stripe_client: stripe.StripeClient, mail: SmtpServer
) -> None:
    account_id = enrolled(app, stripe_client)
    code, out = cli(app, "autopay", "cancel", ACCOUNT, "--staff", "J. Ortiz")
    assert code == 2 and "--reason" in out
    code, out = cli(app, "autopay", "cancel", ACCOUNT, "--staff", "J. Ortiz", "--reason", "member called")
    assert code == 0 and "Auto Pay cancelled" in out
    assert live(app, account_id) is None
    code, out = cli(app, "autopay", "show", ACCOUNT)
    assert "cancelled (cancelled)" in out and "cancelled via staff by J. Ortiz: member called" in out
    assert "enrolled via portal" in out  # what was agreed is still there
    (notice,) = mail.inbox.messages
    assert "Your Auto Pay is cancelled" in notice.get_content()
    with app.app_context(), current_services().sessions() as session:
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.event == "autopay_cancelled"))
        assert event.actor == "J. Ortiz" and event.os_user == getpass.getuser()
    # Nothing is drafted after a cancellation.
    code, out = cli(app, "autopay", "run", "--date", str(DUE))
    assert not processor_charges(stripe_client)
    code, out = cli(app, "autopay", "cancel", ACCOUNT, "--staff", "J. Ortiz", "--reason", "again")
    assert code == 1 and "has no Auto Pay" in out
    code, out = cli(app, "autopay", "export", "--format", "json")
    (row,) = json.loads(out)
    assert row["autopay"] == "cancelled" and row["reason"] == "cancelled"


def test_payments_export_marks_drafts_and_calls_stats_counts_enrollments(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    enrolled(app, stripe_client)
    cli(app, "autopay", "run", "--date", str(DUE))
    # The test clock does not move: the draft is taken "on" 2026-11-24, local.
    code, out = cli(app, "payments", "export", "--since", "2026-11-24", "--until", "2026-11-24")
    assert code == 0, out
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["channel"] == "autopay" and row["amount"] == "123.45"
    code, out = cli(app, "calls", "stats", "--since", "2026-11-24", "--until", "2026-11-24")
    assert code == 0, out
    assert "enrolled 1, method changed 0, cancelled 0, suspended 0" in out
    assert "now active 1, suspended 0" in out


def test_an_unknown_draft_is_left_for_payments_reconcile(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    from tests.test_exactly_once import faulty

    enrolled(app, stripe_client)
    faulty(app, "timeout_before_charge")
    code, out = cli(app, "autopay", "run", "--date", str(DUE))
    assert code == 0 and "unknown $123.45 (no answer from the processor: left for payments reconcile" in out
    code, out = cli(app, "payments", "reconcile", "--since", "2026-11-24", "--until", "2026-11-24")
    # Reconcile asks the processor about the draft's attempt: it holds no payment, as
    # the ledger says; and no run charged it again.
    assert code == 0 and "checked 1 attempt: 1 match" in out, out
    assert not processor_charges(stripe_client)
