"""``securepay payments reconcile`` against a real processor (localstripe): real charges
recorded as the flow records them, then our rows tampered with behind its back."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
import stripe
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from db.payment_reports import AttemptLine
from ivr.services import EXTENSION_KEY, Services
from payments.card_tokenizer import tokenize_card
from payments.cli import payments_group
from payments.emulator import LocalStripe
from payments.gateway import CardDeclined, ChargeResult
from payments.reconcile import ProcessorView, compare
from payments.stripe_gateway import StripeGateway, build_stripe_client
from tests.ledger_factory import Ledger, Recorded, add_account, tamper_attempt, tamper_payment

VISA = "4242424242424242"
DECLINED_ON_CHARGE = "4000000000000341"
AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 09:00 in Chicago, the test clock's day


@pytest.fixture
def services(app: Flask, gateway: StripeGateway) -> Services:
    services: Services = app.extensions[EXTENSION_KEY]
    services.gateway = gateway
    return services


@pytest.fixture
def sessions(services: Services) -> sessionmaker[Session]:
    return services.sessions


@pytest.fixture
def ledger(sessions: sessionmaker[Session]) -> Ledger:
    return Ledger(sessions)


@pytest.fixture
def account(sessions: sessionmaker[Session]) -> int:
    return add_account(sessions, "30048217")


class Charger:
    """Charges real PaymentIntents the way the flow does: the attempt row first, its id
    as the idempotency key, then the processor's answer recorded."""

    def __init__(self, gateway: StripeGateway, client: stripe.StripeClient, ledger: Ledger) -> None:
        self.gateway = gateway
        self.client = client
        self.ledger = ledger

    def charge(self, attempt_id: str, amount_cents: int, card: str = VISA) -> ChargeResult:
        method = tokenize_card(self.client, number=card, exp_month=11, exp_year=2031, cvc="123")
        return self.gateway.charge(
            amount_cents=amount_cents,
            currency="usd",
            payment_method_id=method.processor_id,
            customer_id=None,
            idempotency_key=attempt_id,
            metadata={"attempt_id": attempt_id},
        )

    def pay(self, account_id: int, amount_cents: int) -> Recorded:
        attempt_id = self.ledger.begin_attempt(account_id, amount_cents, at=AT)
        return self.ledger.record_charge(attempt_id, self.charge(attempt_id, amount_cents), at=AT)

    def decline(self, account_id: int, amount_cents: int) -> tuple[str, str]:
        """A charge the processor declines; returns the attempt id and the intent's."""
        attempt_id = self.ledger.begin_attempt(account_id, amount_cents, at=AT)
        with pytest.raises(CardDeclined) as declined:
            self.charge(attempt_id, amount_cents, DECLINED_ON_CHARGE)
        processor_id = declined.value.processor_id
        assert processor_id is not None
        return attempt_id, processor_id


@pytest.fixture
def charger(gateway: StripeGateway, stripe_client: stripe.StripeClient, ledger: Ledger) -> Charger:
    return Charger(gateway, stripe_client, ledger)


def invoke(app: Flask, *args: str) -> tuple[int, list[str]]:
    result = app.test_cli_runner().invoke(payments_group, ["reconcile", *args])
    return result.exit_code, result.output.splitlines()


def test_all_match_exits_0(
    app: Flask, services: Services, charger: Charger, ledger: Ledger, account: int
) -> None:
    charger.pay(account, 12345)
    charger.pay(account, 500)
    declined, intent = charger.decline(account, 7000)
    ledger.settle(declined, "declined", at=AT, processor_id=intent, decline_code="card_declined")
    never_sent = ledger.begin_attempt(account, 800, at=AT)  # the processor was never reached
    ledger.settle(never_sent, "failed", at=AT)

    assert invoke(app) == (
        0,
        ["2026-11-24 (America/Chicago): checked 4 attempts: 4 match, 0 mismatch"],
    )


def test_a_tampered_amount_is_reported(
    app: Flask, services: Services, charger: Charger, account: int, sessions: sessionmaker[Session]
) -> None:
    charger.pay(account, 12345)
    tampered = charger.pay(account, 6000)
    assert tampered.payment_id is not None
    tamper_payment(sessions, tampered.payment_id, amount_cents=600)

    code, lines = invoke(app)

    assert code == 1
    assert lines == [
        f"{tampered.attempt_id} confirmation {tampered.confirmation}: amount: "
        "ours $6.00 / $60.00; processor $60.00",
        "2026-11-24 (America/Chicago): checked 2 attempts: 1 match, 1 mismatch",
    ]


def test_we_say_succeeded_the_processor_declined(
    app: Flask, services: Services, charger: Charger, ledger: Ledger, account: int
) -> None:
    attempt_id, intent = charger.decline(account, 7000)
    recorded = ledger.succeed(attempt_id, intent, at=AT)  # a bug, or a hand edit

    code, lines = invoke(app)

    assert code == 1
    # (localstripe names the charge, ch_..., in a decline; the lookup by our key finds
    # the PaymentIntent, pi_...)
    assert lines[0].startswith(
        f"{attempt_id} confirmation {recorded.confirmation}: status: "
        f"ours succeeded $70.00 as {intent}; processor declined (card_declined) as pi_"
    )
    assert lines[-1].endswith("checked 1 attempt: 0 match, 1 mismatch")


def test_the_processor_succeeded_and_we_have_no_payment(
    app: Flask,
    services: Services,
    charger: Charger,
    ledger: Ledger,
    account: int,
    sessions: sessionmaker[Session],
) -> None:
    attempt_id = ledger.begin_attempt(account, 4200, at=AT)
    result = charger.charge(attempt_id, 4200)
    ledger.settle(attempt_id, "declined", at=AT, processor_id=result.processor_id)
    tamper_attempt(sessions, attempt_id, status="declined")

    code, lines = invoke(app)

    assert code == 1
    assert lines[0] == (
        f"{attempt_id} confirmation -: status: ours attempt declined, no payment; "
        f"processor succeeded $42.00 as {result.processor_id}"
    )


def test_an_attempt_left_unknown_whose_charge_went_through_is_reported(
    app: Flask, services: Services, charger: Charger, ledger: Ledger, account: int
) -> None:
    unknown = ledger.begin_attempt(account, 9100, at=AT)
    result = charger.charge(unknown, 9100)  # the answer was lost: a timeout, a crash
    ledger.settle(unknown, "unknown", at=AT)
    pending_never_sent = ledger.begin_attempt(account, 300, at=AT)  # never reached it

    code, lines = invoke(app)

    assert code == 1
    assert lines == [
        f"{unknown} confirmation -: status: ours attempt unknown, no payment; "
        f"processor succeeded $91.00 as {result.processor_id}",
        "2026-11-24 (America/Chicago): checked 2 attempts: 1 match, 1 mismatch",
    ]
    assert pending_never_sent not in "\n".join(lines)


def test_a_payment_the_processor_does_not_have_is_reported(
    app: Flask, services: Services, ledger: Ledger, account: int
) -> None:
    recorded = ledger.pay(account, 2500, at=AT, processor_id="pi_neverexisted0001")

    code, lines = invoke(app)

    assert code == 1
    assert lines[0] == (
        f"{recorded.attempt_id} confirmation {recorded.confirmation}: missing_at_processor: "
        "ours succeeded $25.00 as pi_neverexisted0001; processor has no such payment"
    )


def test_only_the_window_is_compared(app: Flask, services: Services, ledger: Ledger, account: int) -> None:
    ledger.pay(account, 2500, at=datetime(2026, 11, 20, 15, 0, tzinfo=UTC), processor_id="pi_elsewhere0001")

    assert invoke(app) == (0, ["2026-11-24 (America/Chicago): checked 0 attempts: 0 match, 0 mismatch"])
    code, _ = invoke(app, "--since", "2026-11-20")
    assert code == 1


def test_an_unreachable_processor_exits_2(
    app: Flask, services: Services, ledger: Ledger, account: int
) -> None:
    ledger.pay(account, 2500, at=AT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    services.gateway = StripeGateway(
        build_stripe_client("sk_test_x", f"http://127.0.0.1:{port}", max_network_retries=0)
    )

    code, lines = invoke(app)

    assert code == 2
    assert lines == [
        "Error: the payment processor is unreachable, nothing compared: "
        "the payment processor could not be reached"
    ]


def test_without_a_processor_key_it_cannot_run(app: Flask, services: Services) -> None:
    services.gateway = None
    assert invoke(app) == (2, ["Error: STRIPE_API_KEY is not set: the payment processor cannot be asked"])


def test_bad_dates_exit_2(app: Flask, services: Services) -> None:
    assert invoke(app, "--until", "yesterday") == (
        2,
        ["Error: --until must be a date as YYYY-MM-DD, got 'yesterday'"],
    )


def test_help_says_it_reports_and_does_not_fix(app: Flask) -> None:
    result = app.test_cli_runner().invoke(payments_group, ["reconcile", "--help"])
    text = " ".join(result.output.split())
    assert "The processor's answer is the truth. This command only REPORTS: it changes nothing" in text
    assert "0 all match, 1 some mismatch, 2 the processor could not be asked" in text


def test_a_refused_key_exits_2_without_showing_it(
    app: Flask, services: Services, charger: Charger, account: int, localstripe: LocalStripe
) -> None:
    charger.pay(account, 2500)
    key = "pk_test_notasecretkey42"  # localstripe wants an sk_ key: answers 401
    services.gateway = StripeGateway(build_stripe_client(key, localstripe.base_url, max_network_retries=0))

    code, lines = invoke(app)

    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("Error: the processor refused the lookup of pa_")
    assert "HTTP 401" in lines[0] and key not in lines[0]


# --- the comparison on its own (settling bank debits, a wrong id) ---------------------------


def _line(**changes: object) -> AttemptLine:
    fields: dict[str, object] = {
        "attempt_id": "pa_1",
        "created_at": AT,
        "account_number": "30048217",
        "customer_id": None,
        "amount_cents": 5000,
        "status": "processing",
        "processor_id": "pi_ours",
        "payment_id": 7,
        "payment_amount_cents": 5000,
        "payment_status": "processing",
        "confirmation": "1234567890",
    }
    fields.update(changes)
    return AttemptLine(**fields)  # type: ignore[arg-type]


def _result(status: str, processor_id: str = "pi_ours", amount_cents: int = 5000) -> ChargeResult:
    return ChargeResult(status=status, processor_id=processor_id, charge_id=None, amount_cents=amount_cents)  # type: ignore[arg-type]


def test_a_settling_debit_matches_until_the_processor_says_succeeded() -> None:
    assert compare(_line(), ProcessorView.of_charge(_result("processing"))) == []
    [mismatch] = compare(_line(), ProcessorView.of_charge(_result("succeeded")))
    assert (mismatch.kind, mismatch.ours, mismatch.theirs) == (
        "status",
        "processing $50.00 as pi_ours",
        "succeeded $50.00 as pi_ours",
    )


def test_a_payment_recorded_under_another_intent_is_reported() -> None:
    [mismatch] = compare(
        _line(status="succeeded", payment_status="succeeded"),
        ProcessorView.of_charge(_result("succeeded", "pi_x")),
    )
    assert (mismatch.kind, mismatch.ours, mismatch.theirs) == ("processor_id", "pi_ours", "pi_x")
