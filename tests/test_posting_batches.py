"""Issue 11, defect 7: numbered posting batches the billing system takes once.

Each payment is in exactly one batch, recorded in the database; a batch is written again
only with ``--reexport N``; a trailer carries the count and the net sum; ``--out`` writes
0600, all at once; layouts come from a TOML file; refunds and disputes made at the
processor (its dashboard) are lines of their own. Refunds are made in localstripe as the
dashboard would (https://docs.stripe.com/api/refunds/create) and listed back
(https://docs.stripe.com/api/refunds/list); disputes, which localstripe does not have,
come from a fake of our own ``ProcessorAdjustments`` port, shaped as Stripe's dispute
object (https://docs.stripe.com/api/disputes/object: id du_..., amount, payment_intent).
"""

from __future__ import annotations

import csv
import io
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stripe
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import AuditEvent, Payment, PostingAdjustment, PostingBatch
from db.posting_batches import create_batch
from ivr.secret_scan import appears_alone
from ivr.services import EXTENSION_KEY, Services
from payments.cli import payments_group
from payments.gateway import Adjustment
from tests.fakes import FakeClock
from tests.ledger_factory import Ledger, add_account
from tests.members import PIN, SSN

AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 09:00 in Chicago, before the clock's 10:00


def services(app: Flask) -> Services:
    found: Services = app.extensions[EXTENSION_KEY]
    return found


class Payments:
    """Payments written the flow's way, on accounts made once."""

    def __init__(self, app: Flask) -> None:
        self.sessions = services(app).sessions
        self.ledger = Ledger(self.sessions)
        self.rivera = add_account(self.sessions, "30048217")
        self.chen = add_account(self.sessions, "5512")
        self.count = 0

    def take(self, account: int, cents: int, *, at: datetime = AT, processor_id: str | None = None) -> str:
        self.count += 1
        attempt = self.ledger.begin_attempt(account, cents, at=at)
        recorded = self.ledger.succeed(attempt, processor_id or f"pi_test{self.count:04d}", at=at)
        assert recorded.confirmation is not None
        return recorded.confirmation


@pytest.fixture
def taken(app: Flask) -> Payments:
    payments = Payments(app)
    payments.take(payments.rivera, 12345)
    payments.take(payments.chen, 100000, at=AT + timedelta(minutes=5))
    payments.take(payments.rivera, 5, at=AT + timedelta(minutes=9))
    declined = payments.ledger.begin_attempt(payments.chen, 9900, at=AT)
    payments.ledger.settle(
        declined, "declined", at=AT, processor_id="pi_declined", decline_code="do_not_honor"
    )
    return payments


def export(app: Flask, *args: str) -> tuple[int, str, str]:
    result = app.test_cli_runner().invoke(payments_group, ["export", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def batch_ids(app: Flask) -> list[int | None]:
    with services(app).sessions() as session:
        return list(session.scalars(select(Payment.batch_id).order_by(Payment.id)))


def count(app: Flask, model: type[PostingBatch] | type[PostingAdjustment]) -> int:
    with services(app).sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


HEADER = ["record_type", "batch", "date", "account_number", "amount", "confirmation", "processor_id",
          "kind", "channel", "method_brand", "method_last4"]


def test_a_batch_posts_each_payment_once_with_a_trailer(app: Flask, taken: Payments) -> None:
    code, out, err = export(app, "--batch")

    assert code == 0, err
    lines = rows(out)
    assert lines[0] == HEADER
    assert [line[:5] for line in lines[1:-1]] == [
        ["P", "1", "2026-11-24", "30048217", "123.45"],
        ["P", "1", "2026-11-24", "5512", "1000.00"],
        ["P", "1", "2026-11-24", "30048217", "0.05"],
    ]
    assert lines[-1] == ["T", "1", "3", "1123.50"]  # the trailer: batch, count, net sum
    assert "batch 1: 3 line(s), net 1123.50, written" in err
    assert batch_ids(app) == [1, 1, 1]

    # Again: nothing new, nothing written, no batch made.
    code, out, err = export(app, "--batch")
    assert (code, out) == (0, "") and "nothing to post" in err
    assert count(app, PostingBatch) == 1

    taken.take(taken.chen, 2500, at=AT + timedelta(minutes=30))
    code, out, _ = export(app, "--batch")
    assert code == 0
    assert [line[:5] for line in rows(out)[1:]] == [
        ["P", "2", "2026-11-24", "5512", "25.00"], ["T", "2", "1", "25.00"],
    ]
    assert batch_ids(app) == [1, 1, 1, 2]


def test_reexport_writes_the_same_batch_and_says_so_in_the_trail(app: Flask, taken: Payments) -> None:
    _, first, _ = export(app, "--batch")

    code, again, err = export(app, "--reexport", "1")

    assert code == 0 and again == first
    assert "batch 1: 3 line(s), net 1123.50, written again (export 2)" in err
    with services(app).sessions() as session:
        batch = session.get(PostingBatch, 1)
        assert batch is not None and batch.exports == 2
        named = AuditEvent.event.like("posting_batch_%")
        trail = select(AuditEvent.event).where(named).order_by(AuditEvent.id)  # the order written
        events = list(session.scalars(trail))
    assert events == ["posting_batch_created", "posting_batch_reexported"]
    assert export(app, "--reexport", "9")[0] == 2
    assert export(app, "--batch", "--reexport", "1")[0] == 2


def test_out_is_written_0600_whole_and_never_over_another_file(
    app: Flask, taken: Payments, tmp_path: Path
) -> None:
    tmp_path = tmp_path / "posting"
    tmp_path.mkdir()
    target = tmp_path / "batch-0001.csv"

    code, out, _ = export(app, "--batch", "--out", str(target))

    assert code == 0 and out == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert rows(target.read_text())[-1] == ["T", "1", "3", "1123.50"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["batch-0001.csv"]  # no temporary left

    taken.take(taken.chen, 2500)
    code, _, err = export(app, "--batch", "--out", str(target))
    assert code == 2 and "already exists" in err and "nothing posted" in err
    assert batch_ids(app)[-1] is None  # the new payment waits for the next batch
    assert export(app, "--reexport", "1", "--out", str(tmp_path / "again.csv"))[0] == 0
    assert (tmp_path / "again.csv").read_text() == target.read_text()


FIXED = '''
format = "fixed"
line_end = "crlf"
date_format = "%m%d%Y"
amount_format = "cents"
[record_types]
payment = "10"
trailer = "99"
[[columns]]
field = "record_type"
width = 2
[[columns]]
field = "account_number"
width = 10
align = "right"
pad = "0"
[[columns]]
field = "date"
width = 8
[[columns]]
field = "amount"
width = 9
align = "right"
pad = "0"
[[trailer]]
field = "record_type"
width = 2
[[trailer]]
field = "count"
width = 6
align = "right"
pad = "0"
[[trailer]]
field = "total"
width = 12
align = "right"
pad = "0"
'''


def test_a_fixed_width_layout_from_toml(app: Flask, taken: Payments, tmp_path: Path) -> None:
    layout = tmp_path / "layout.toml"
    layout.write_text(FIXED)
    target = tmp_path / "batch.txt"

    code, _, err = export(app, "--batch", "--layout", str(layout), "--out", str(target))

    assert code == 0, err
    assert target.read_bytes().decode().split("\r\n") == [
        "10003004821711242026000012345",  # type, account (zero-padded), MMDDYYYY, cents
        "10000000551211242026000100000",
        "10003004821711242026000000005",
        "99000003000000112350",  # trailer: type, count, net sum in cents
        "",
    ]


@pytest.mark.parametrize("text, message", [
    ("format = 'xml'", "format must be csv or fixed"),
    ("[[columns]]\nfield = 'pin'\n[[trailer]]\nfield = 'count'", "field must be one of"),
    ("format = 'fixed'\n[[columns]]\nfield = 'amount'\n[[trailer]]\nfield = 'count'", "needs a width"),
    ("colour = 'red'", "unknown key(s): colour"),
    ("[[columns]\n", "not a TOML file"),
])
def test_a_bad_layout_is_one_line_and_nothing_is_posted(
    app: Flask, taken: Payments, tmp_path: Path, text: str, message: str
) -> None:
    layout = tmp_path / "layout.toml"
    layout.write_text(text)

    code, out, err = export(app, "--batch", "--layout", str(layout))

    assert code == 2 and out == "" and message in err and err.count("\n") == 1, err
    assert count(app, PostingBatch) == 0 and batch_ids(app) == [None, None, None]


def test_a_value_wider_than_its_column_posts_nothing(app: Flask, taken: Payments, tmp_path: Path) -> None:
    layout = tmp_path / "layout.toml"
    layout.write_text(FIXED.replace("width = 10", "width = 6"))

    code, _, err = export(app, "--batch", "--layout", str(layout))

    assert code == 2 and "account_number of 8 characters is wider than its 6 columns" in err
    assert "30048217" not in err
    assert count(app, PostingBatch) == 0 and batch_ids(app) == [None, None, None]


def test_a_refund_made_in_the_dashboard_is_a_line_of_its_own_and_posted_once(
    app: Flask, clock: FakeClock, stripe_client: stripe.StripeClient
) -> None:
    clock.current = datetime.now(UTC)  # localstripe stamps refunds with the real time
    intent = stripe_client.v1.payment_intents.create({
        "amount": 5000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
    })
    payments = Payments(app)
    confirmation = payments.take(payments.rivera, 5000, at=clock.current - timedelta(minutes=5),
                                 processor_id=intent.id)
    stripe_client.v1.refunds.create({"payment_intent": intent.id, "amount": 1250})  # in the dashboard
    clock.advance(timedelta(minutes=1))

    code, out, err = export(app, "--batch")

    assert code == 0, err
    lines = rows(out)
    assert [(line[0], line[4], line[5], line[7]) for line in lines[1:-1]] == [
        ("P", "50.00", confirmation, "payment"), ("R", "-12.50", confirmation, "refund"),
    ]
    assert lines[-2][6].startswith("re_") and lines[-1] == ["T", "1", "2", "37.50"]

    payments.take(payments.chen, 700, at=clock.current)
    clock.advance(timedelta(minutes=1))
    _, out, _ = export(app, "--batch")
    assert [line[0] for line in rows(out)[1:]] == ["P", "T"]  # the refund is not posted twice
    assert count(app, PostingAdjustment) == 1


class Disputes:
    """A fake of our ``ProcessorAdjustments`` port: the disputes the processor holds."""

    def __init__(self, *held: Adjustment) -> None:
        self.held = held

    def adjustments(self, since: datetime, until: datetime) -> list[Adjustment]:
        return [a for a in self.held if since <= a.created_at < until]


def test_a_dispute_is_a_negative_line_and_other_merchants_adjustments_are_left_out(
    app: Flask, taken: Payments, clock: FakeClock
) -> None:
    services(app).gateway = Disputes(  # type: ignore[assignment]
        Adjustment("dispute", "du_1Mt", "pi_test0002", 100000, AT + timedelta(minutes=20), "needs_response"),
        Adjustment("refund", "re_other", "pi_not_ours", 999, AT + timedelta(minutes=21), "succeeded"),
    )

    code, out, err = export(app, "--batch")

    assert code == 0, err
    lines = rows(out)
    dispute = lines[-2]
    assert (dispute[0], dispute[3], dispute[4], dispute[6]) == ("D", "5512", "-1000.00", "du_1Mt")
    assert len(lines) == 6 and lines[-1] == ["T", "1", "4", "123.50"]


def test_without_the_processor_nothing_is_posted(app: Flask, taken: Payments) -> None:
    services(app).gateway = None
    code, _, err = export(app, "--batch")
    assert code == 2 and "STRIPE_API_KEY is not set" in err
    assert count(app, PostingBatch) == 0


def test_two_batches_at_once_share_no_payment(app: Flask) -> None:
    payments = Payments(app)
    for n in range(30):
        payments.take(payments.rivera if n % 2 else payments.chen, 100 + n, at=AT + timedelta(seconds=n))
    sessions: sessionmaker[Session] = services(app).sessions
    start = threading.Barrier(2)
    made: list[int | None] = []

    def batch() -> None:
        with sessions() as session:
            start.wait(timeout=10)
            result = create_batch(session, AT + timedelta(hours=1))
            session.commit()
            made.append(None if result is None else result.count)

    threads = [threading.Thread(target=batch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(n or 0 for n in made) == 30
    assert None not in batch_ids(app)


def test_a_batch_file_holds_no_secret(app: Flask, taken: Payments) -> None:
    _, out, _ = export(app, "--batch")
    for secret in (PIN, SSN):
        assert not appears_alone(secret, out)
    assert "4242" in out  # the method's last four is what may be shown
