"""``/metrics`` (issue 13): off unless enabled, never through the proxy, each metric fed by
what really happened (whole calls, forged webhooks, a portal flood), no account number
or phone number in any label, and the database gauges read at scrape time.

Multiprocess mode under a real gunicorn, with a recycled worker, is in
``tests/test_gunicorn_metrics.py``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import stripe
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from db.models import AuditEvent, AutopayNotice
from ivr import create_app
from ivr.metrics import MeteredGateway, observe_trail
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from ivr.softphone import Softphone
from ivr.softphone.walker import walk
from tests.conftest import TEST_ENV
from tests.fakes import FakeClock
from tests.ledger_checks import DECLINES_AT_CHARGE, VISA
from tests.ledger_factory import Ledger, add_account
from tests.members import OTHER_SSN, PIN, SSN, Member, add_members

CALLER = "+12025550143"
OTHER_CALLER = "+12025550166"
ACCOUNT = "10004821"
PORTAL_TOKEN = "metrics-test-portal-token-7d1e"
# What must never be a label value: the account number and its last four, the callers'
# numbers (with and without +1), the PIN.
NEVER_IN_A_LABEL = (ACCOUNT, "4821", "2025550143", "5550143", "0143", "2025550166", "0166", PIN)
LABEL_NAMES = {"step", "status", "outcome", "kind", "reason", "operation", "error", "le", "version", "commit"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def anchor_file(tmp_path: Path) -> Path:
    return tmp_path / "anchors.jsonl"


@pytest.fixture
def test_env(database_url: str, anchor_file: Path) -> dict[str, str]:
    """The conftest's, with metrics on (the ``app`` fixture builds from it)."""
    return {
        **TEST_ENV,
        "SECUREPAY_DATABASE_URL": database_url,
        "SECUREPAY_METRICS": "on",
        "SECUREPAY_PORTAL_TOKEN": PORTAL_TOKEN,
        "SECUREPAY_AUDIT_ANCHOR_FILE": str(anchor_file),
    }


@pytest.fixture
def metered(app: Flask) -> Iterator[Flask]:
    """The app as ``create_app`` wires it with metrics on: the conftest swapped in a
    gateway without retries; meter that one the same way."""
    services = app.extensions[EXTENSION_KEY]
    services.gateway = MeteredGateway(services.gateway)
    yield app


def scrape(app: Flask, **headers: str) -> Samples:
    response = app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def assert_no_member_data_in_labels(samples: Samples) -> None:
    for name, labels in samples:
        for label, text in labels:
            assert label in LABEL_NAMES, f"{name} has an unexpected label {label}"
            if label in ("version", "commit", "le"):
                # The build's own identifiers and bucket bounds: a commit hash may hold any
                # four digits by chance (a flake seen with an SSN's), no member data.
                continue
            assert all(secret not in text for secret in NEVER_IN_A_LABEL), f"{name}{{{label}={text!r}}}"
            assert re.fullmatch(r"[a-z0-9_]{1,40}", text), f"{name}{{{label}={text!r}}}"


def test_metrics_are_off_unless_enabled(test_env: dict[str, str]) -> None:
    env = {key: value for key, value in test_env.items() if key != "SECUREPAY_METRICS"}
    app = create_app(Settings.from_env(env))
    try:
        assert app.test_client().get("/metrics").status_code == 404
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()


def test_metrics_are_never_served_through_the_proxy(metered: Flask) -> None:
    client = metered.test_client()
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    assert client.get("/metrics", headers={"Forwarded": "for=203.0.113.9"}).status_code == 404
    assert client.get("/metrics").status_code == 200


def test_calls_payments_pin_failures_lockouts_and_forgeries_are_counted_without_member_data(
    metered: Flask,
    card_phone: Callable[..., Softphone],
    phone: Softphone,
    stripe_client: stripe.StripeClient,
) -> None:
    add_members(metered, Member(ACCOUNT, phones=[CALLER]))
    before = scrape(metered)

    # One wrong PIN, then the right one; a declined card, then a Visa that pays $123.45.
    paid = card_phone(DECLINES_AT_CHARGE, VISA).call(
        CALLER, ["1", "1", "9999", "1", PIN, "1", "2", "1", "1", "2", "1"]
    )
    assert "Your confirmation number is" in paid.said_text()
    # Five more wrong entries over two calls: the account locks.
    phone.call(CALLER, ["1", "1", "1111", "1", "2222", "1", "3333"])
    phone.call(OTHER_CALLER, ["1", f"{ACCOUNT}#", "4444", "1", "5555"])
    # A forged webhook, unsigned.
    forged = metered.test_client().post("/ivr/voice", data={"CallSid": "CA" + "0" * 32, "From": CALLER})
    assert forged.status_code == 403
    # Made-up paths are one label, not one each.
    for n in range(3):
        assert metered.test_client().post(f"/ivr/made-up-{n}").status_code == 404

    after = scrape(metered)
    assert grew(before, after, "securepay_payments_total", outcome="succeeded") == 1
    assert grew(before, after, "securepay_payments_total", outcome="declined") == 1
    assert grew(before, after, "securepay_payment_cents_total", outcome="succeeded") == 12345
    # 1 + 3 + 1 mismatches: the fifth in 24 hours locked the account, and the entry after
    # it was refused as locked.
    assert grew(before, after, "securepay_credential_failures_total", kind="pin", reason="mismatch") == 5
    assert grew(before, after, "securepay_credential_failures_total", kind="pin", reason="locked") == 1
    assert grew(before, after, "securepay_lockouts_total") == 1
    assert grew(before, after, "securepay_signature_rejections_total", reason="missing") == 1
    # Webhook latency by the state the call was in, and the HTTP status.
    webhooks = "securepay_webhook_duration_seconds_count"
    assert grew(before, after, webhooks, step="voice", status="200") == 3
    assert grew(before, after, webhooks, step="voice", status="403") == 1
    assert grew(before, after, webhooks, step="pin_entry", status="200") >= 7
    assert grew(before, after, webhooks, step="confirm", status="200") == 2
    assert grew(before, after, webhooks, step="unknown", status="404") == 3
    # The processor: every charge timed (the declined one and the paid one).
    assert grew(before, after, "securepay_processor_duration_seconds_count", operation="charge") == 2
    assert_no_member_data_in_labels(after)


def test_ssn_failures_are_counted_apart_from_pin_failures(metered: Flask, phone: Softphone) -> None:
    add_members(metered, Member(ACCOUNT, phones=[CALLER]))
    before = scrape(metered)
    phone.call(CALLER, ["1", "1", "9999", "2", OTHER_SSN])  # wrong PIN, "forgot", wrong SSN
    after = scrape(metered)
    assert grew(before, after, "securepay_credential_failures_total", kind="pin", reason="mismatch") == 1
    assert grew(before, after, "securepay_credential_failures_total", kind="ssn", reason="mismatch") == 1
    for (_, labels) in after:
        assert all(SSN not in text and OTHER_SSN not in text for name, text in labels if name != "commit")


def test_text_receipts_are_counted_by_outcome_from_the_trail(metered: Flask) -> None:
    """The text sender writes its outcome to the trail once Twilio answered; the metric
    counts those events: sent, or Twilio's refusal as its reason (never the number)."""
    before = scrape(metered)
    observe_trail([
        SimpleNamespace(event="text_receipt_sent", detail={"payment_id": 1, "reason": "sent"}),
        SimpleNamespace(event="text_receipt_refused", detail={"payment_id": 2, "reason": "opted_out"}),
        SimpleNamespace(event="text_receipt_refused", detail={"reason": "+12025550143"}),
    ])
    after = scrape(metered)
    assert grew(before, after, "securepay_texts_total", outcome="sent") == 1
    assert grew(before, after, "securepay_texts_total", outcome="opted_out") == 1
    assert grew(before, after, "securepay_texts_total", outcome="other") == 1  # not a label of ours
    assert_no_member_data_in_labels(after)


def test_portal_429s_are_counted(metered: Flask) -> None:
    before = scrape(metered)
    client = metered.test_client()
    wrong = {"Authorization": "Bearer wrong"}
    path = f"/api/v1/accounts/{ACCOUNT}/phones"
    statuses = [client.get(path, headers=wrong).status_code for _ in range(50)]
    refused = statuses.count(429)
    assert refused >= 5
    assert grew(before, scrape(metered), "securepay_portal_rate_limited_total") == refused


def test_database_gauges_are_read_at_scrape_time(
    metered: Flask, phone: Softphone, clock: FakeClock, anchor_file: Path
) -> None:
    add_members(metered, Member(ACCOUNT, phones=[CALLER]))
    empty = scrape(metered)
    assert value(empty, "securepay_database_up") == 1
    assert value(empty, "securepay_calls_in_progress") == 0
    assert value(empty, "securepay_audit_head_seq") == 0
    assert ("securepay_audit_last_anchor_age_seconds", ()) not in empty  # no anchor yet

    # A call still going: Twilio has sent no status callback yet.
    walk(
        phone.transport,
        auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
        public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"],
        from_number=CALLER,
        keys=["1", "1", PIN],
        status_path=None,
    )
    anchor_file.write_text(
        json.dumps({"at": (clock.now() - timedelta(minutes=90)).isoformat(), "count": 1,
                    "head_hash": "0" * 64, "head_seq": 1}) + "\n"
    )  # fmt: skip
    services = metered.extensions[EXTENSION_KEY]
    services.sealer.wait_sealed()  # the web worker's sealer, moments after each commit
    with services.sessions() as session:
        head = session.scalar(select(func.max(AuditEvent.seq)))
    now = scrape(metered)
    assert value(now, "securepay_calls_in_progress") == 1
    assert value(now, "securepay_audit_head_seq") == head > 0
    assert value(now, "securepay_audit_unsealed") == 0
    assert value(now, "securepay_audit_last_anchor_age_seconds") == 90 * 60
    assert value(now, "securepay_receipts_pending") == 0
    # Receipts pending: payments of the last 7 days to an account with an address, unsent.
    ledger = Ledger(services.sessions)
    with_email = add_account(services.sessions, "30048217", email="maria.rivera@example.com")
    without = add_account(services.sessions, "30048218")
    ledger.pay(with_email, 5000, at=clock.now())
    ledger.pay(with_email, 6000, at=clock.now() - timedelta(days=8))  # too old to send now
    ledger.pay(without, 7000, at=clock.now())
    assert value(scrape(metered), "securepay_receipts_pending") == 1
    # Texts pending: Auto Pay's texted notices of the last 7 days that Twilio has not taken.
    assert value(scrape(metered), "securepay_texts_pending") == 0
    with services.sessions() as session:
        notices = [("text", False, 0), ("text", True, 0), ("text", False, 8), ("email", False, 0)]
        for medium, sent, age in notices:  # one text waits; sent, too old, or mail: not texts pending
            session.add(AutopayNotice(
                account_id=with_email, kind="enrolled", medium=medium, to_masked="+1******0143",
                subject="", body="Auto Pay", created_at=clock.now() - timedelta(days=age),
                sent_at=clock.now() if sent else None,
            ))
        session.commit()
    assert value(scrape(metered), "securepay_texts_pending") == 1

    clock.advance(timedelta(hours=2))  # no step for two hours: no longer in progress
    later = scrape(metered)
    assert value(later, "securepay_calls_in_progress") == 0
    assert value(later, "securepay_audit_last_anchor_age_seconds") == 210 * 60


def test_the_build_is_a_metric(metered: Flask) -> None:
    from ivr.version import build

    samples = scrape(metered)
    running = build()
    labels = (("commit", running.commit or "unknown"), ("version", running.version))
    assert samples[("securepay_build_info", labels)] == 1


def test_with_metrics_on_create_app_meters_the_processor(test_env: dict[str, str]) -> None:
    app = create_app(Settings.from_env({**test_env, "STRIPE_API_KEY": "sk_test_x"}))
    try:
        assert isinstance(app.extensions[EXTENSION_KEY].gateway, MeteredGateway)
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()
