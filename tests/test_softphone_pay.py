"""The softphone plays Twilio's ``<Pay>`` with the Stripe connector: Twilio's checks and
retries, the parameters it posts to ``action``, and no card digits anywhere but Stripe."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import date
from types import SimpleNamespace

import click
import pytest
import stripe
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from werkzeug.serving import make_server

from ivr.cli.call import call_command
from ivr.secret_scan import appears_alone
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from ivr.softphone import FlaskTransport, Paid, PayFellThrough, Softphone, WalkStopped
from ivr.softphone.pay import (
    Card,
    CardEntry,
    Gesture,
    InteractiveCards,
    PayRequest,
    ScriptedCards,
    TwilioPayEmulator,
    card_type,
    luhn_valid,
)
from payments.card_tokenizer import tokenize_card
from payments.emulator import LocalStripe
from payments.gateway import CardDeclined, MethodInfo
from payments.stripe_gateway import StripeGateway, build_stripe_client
from tests.stripe_fixtures import TEST_API_KEY
from tests.twiml_fixture_app import AUTH_TOKEN, PUBLIC_URL, create_fixture_app, fixture_log

# The <Pay> SecurePay emits (contract 2.6): tokenize only, no postal code, 2 attempts.
SECUREPAY_PAY = {
    "input": "dtmf",
    "paymentConnector": "Stripe_Connector",
    "tokenType": "payment-method",
    "maxAttempts": "2",
    "action": "https://ivr.example.test/ivr/step?n=7",
    "timeout": "10",
    "securityCode": "true",
    "postalCode": "false",
    "language": "en-US",
    "validCardTypes": "visa mastercard amex discover",
}
VISA = "4242424242424242"
CVC = "951"  # found standing alone anywhere (not inside a call SID), it is a leak
GOOD = f"{VISA} 12/30 {CVC}"
TODAY = date(2026, 11, 23)
CALLER = "+12025550123"


def emulator(client: stripe.StripeClient, *entries: str, **kwargs: object) -> TwilioPayEmulator:
    return TwilioPayEmulator(client, ScriptedCards(entries), today=lambda: TODAY, **kwargs)  # type: ignore[arg-type]


class CountingTokenizer:
    """``tokenize_card`` itself, counting the cards it was given (by last four only)."""

    def __init__(self) -> None:
        self.last4s: list[str] = []

    def __call__(self, client: stripe.StripeClient, **card: object) -> MethodInfo:
        self.last4s.append(str(card["number"])[-4:])
        return tokenize_card(client, **card)  # type: ignore[arg-type]


def decline_every_card(client: stripe.StripeClient, **card: object) -> MethodInfo:
    raise CardDeclined("card_declined")


# -- what Twilio posts to action -------------------------------------------------------


def test_a_good_card_posts_a_payment_method_with_the_number_masked(
    stripe_client: stripe.StripeClient,
) -> None:
    params = emulator(stripe_client, GOOD)(SECUREPAY_PAY)

    assert params == {
        "Result": "success",
        "PaymentToken": params["PaymentToken"],
        "PaymentMethod": "credit-card",
        "PaymentCardNumber": "xxxxxxxxxxxx4242",
        "PaymentCardType": "visa",
        "ExpirationDate": "1230",
        "SecurityCode": "***",
    }
    method = stripe_client.v1.payment_methods.retrieve(params["PaymentToken"])
    assert method.id.startswith("pm_") and method.card is not None
    assert (method.card.last4, method.card.exp_month, method.card.exp_year) == ("4242", 12, 2030)


def test_a_postal_code_is_posted_when_the_pay_asks_for_it(stripe_client: stripe.StripeClient) -> None:
    params = emulator(stripe_client, f"{GOOD} 94109")({**SECUREPAY_PAY, "postalCode": "true"})

    assert params["Result"] == "success"
    assert params["PaymentCardPostalCode"] == "94109"


def test_cards_that_decline_at_the_charge_tokenize_fine(stripe_client: stripe.StripeClient) -> None:
    """Stripe's declining test cards are refused when charged (or saved), not at <Pay>:
    the IVR learns of the decline from its own charge, after the confirm step."""
    declining = emulator(stripe_client, "4000000000000341 12/30 123", "4000000000000002 12/30 123")
    first, second = declining(SECUREPAY_PAY), declining(SECUREPAY_PAY)

    assert (first["Result"], second["Result"]) == ("success", "success")
    with pytest.raises(CardDeclined):
        StripeGateway(stripe_client).charge(
            amount_cents=12345,
            currency="usd",
            payment_method_id=first["PaymentToken"],
            customer_id=None,
            idempotency_key="pa_demo_0341",
            metadata={},
        )


# -- Twilio's checks and retries -------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_entry", "error"),
    [
        ("4242424242424241 12/30 123", "invalid-card-number"),  # fails the Luhn check
        ("42424242 12/30 123", "invalid-card-number"),  # too short
        ("3530111333300000 12/30 123", "invalid-card-type"),  # JCB: not in the validCardTypes given
        ("4242424242424242 10/26 123", "invalid-date"),  # expired last month
        ("4242424242424242 13/30 123", "invalid-date"),
        ("4242424242424242 12/30 12", "invalid-security-code"),
        ("378282246310005 12/30 123", "invalid-security-code"),  # Amex has 4 digits
        ("timeout", "input-timeout"),
    ],
)
def test_an_invalid_entry_is_a_failed_attempt_and_twilio_asks_again(
    stripe_client: stripe.StripeClient, bad_entry: str, error: str
) -> None:
    tokenizer = CountingTokenizer()
    retried = emulator(stripe_client, bad_entry, GOOD, tokenize=tokenizer)(SECUREPAY_PAY)
    failed = emulator(stripe_client, bad_entry, bad_entry, tokenize=tokenizer)(SECUREPAY_PAY)

    assert retried["Result"] == "success"
    assert failed == {
        "Result": "too-many-failed-attempts",
        "PaymentMethod": "credit-card",
        "PaymentError": error,
    }
    assert tokenizer.last4s == ["4242"]  # an entry Twilio refuses never reaches Stripe


def test_max_attempts_bounds_the_attempts(stripe_client: stripe.StripeClient) -> None:
    cards = ScriptedCards(["timeout", "timeout", GOOD])
    params = TwilioPayEmulator(stripe_client, cards, today=lambda: TODAY)(SECUREPAY_PAY)

    assert params["Result"] == "too-many-failed-attempts"
    assert cards.remaining == 1  # the third entry belongs to the next <Pay>


def test_one_attempt_when_the_pay_names_none(stripe_client: stripe.StripeClient) -> None:
    attributes = {k: v for k, v in SECUREPAY_PAY.items() if k != "maxAttempts"}

    assert emulator(stripe_client, "timeout", GOOD)(attributes)["Result"] == "too-many-failed-attempts"


def test_valid_card_types_lets_the_ivr_accept_discover(stripe_client: stripe.StripeClient) -> None:
    params = emulator(stripe_client, "6011111111111117 12/30 123")(
        {**SECUREPAY_PAY, "validCardTypes": "visa mastercard amex discover"}
    )

    assert (params["Result"], params["PaymentCardType"]) == ("success", "discover")


def test_without_valid_card_types_twilio_refuses_discover(stripe_client: stripe.StripeClient) -> None:
    # https://www.twilio.com/docs/voice/twiml/pay: validCardTypes defaults to visa mastercard amex
    attributes = {k: v for k, v in SECUREPAY_PAY.items() if k != "validCardTypes"}
    params = emulator(stripe_client, *["6011111111111117 12/30 123"] * 2)(attributes)

    assert (params["Result"], params["PaymentError"]) == ("too-many-failed-attempts", "invalid-card-type")


@pytest.mark.parametrize("language", ["en-US", "es-MX", "es-ES"])
def test_a_language_twilio_lists_is_taken(stripe_client: stripe.StripeClient, language: str) -> None:
    assert emulator(stripe_client, GOOD)({**SECUREPAY_PAY, "language": language})["Result"] == "success"


@pytest.mark.parametrize("language", ["es-US", "es", "en", "pt-BR"])
def test_a_language_twilio_does_not_list_is_a_validation_error(
    stripe_client: stripe.StripeClient, language: str
) -> None:
    # https://www.twilio.com/docs/voice/twiml/pay, language: en-AU, en-CA, en-GB, en-IN,
    # en-US, es-ES, es-MX, fr-CA, fr-FR, de-DE, it-IT for card payments; not es-US.
    tokenizer = CountingTokenizer()
    params = emulator(stripe_client, GOOD, tokenize=tokenizer)({**SECUREPAY_PAY, "language": language})

    assert params["Result"] == "validation-error"
    assert "language" in params["PaymentError"]
    assert tokenizer.last4s == []  # refused before any card is asked for


def test_after_max_attempts_twilio_may_go_on_to_the_next_verb(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(PayFellThrough) as ended:
        emulator(stripe_client, "timeout", "timeout", falls_through=True)(SECUREPAY_PAY)

    assert ended.value.params["Result"] == "too-many-failed-attempts"
    # a card collected is posted to the action as usual
    assert emulator(stripe_client, GOOD, falls_through=True)(SECUREPAY_PAY)["Result"] == "success"


def test_a_processor_decline_is_a_failed_attempt(stripe_client: stripe.StripeClient) -> None:
    params = emulator(stripe_client, GOOD, GOOD, tokenize=decline_every_card)(SECUREPAY_PAY)

    assert params == {
        "Result": "too-many-failed-attempts",
        "PaymentMethod": "credit-card",
        "PaymentError": "card is declined",
    }


def test_an_unreachable_processor_is_a_connector_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = build_stripe_client(TEST_API_KEY, f"http://127.0.0.1:{port}", max_network_retries=0, timeout=2)

    params = emulator(client, GOOD, GOOD)(SECUREPAY_PAY)

    assert params["Result"] == "payment-connector-error"
    assert params["ConnectorError"].startswith("ProcessorUnavailable")


@pytest.mark.parametrize(
    ("entries", "result"),
    [
        (["*", GOOD], "caller-interrupted-with-star"),
        (["hangup", GOOD], "caller-hung-up"),
        (["timeout"], "caller-hung-up"),
    ],
    ids=["star", "hang-up", "no-more-cards"],
)
def test_star_or_a_hang_up_ends_the_pay_at_once(
    stripe_client: stripe.StripeClient, entries: list[str], result: str
) -> None:
    params = emulator(stripe_client, *entries)(SECUREPAY_PAY)

    assert params == {"Result": result, "PaymentMethod": "credit-card"}


@pytest.mark.parametrize(
    ("attributes", "fragment"),
    [({"maxAttempts": "5"}, "maxAttempts"), ({"chargeAmount": "-0.5"}, "chargeAmount")],
)
def test_an_attribute_twilio_refuses_is_a_validation_error(
    stripe_client: stripe.StripeClient, attributes: dict[str, str], fragment: str
) -> None:
    params = emulator(stripe_client, GOOD)({**SECUREPAY_PAY, **attributes})

    assert params["Result"] == "validation-error"
    assert fragment in params["PaymentError"]


@pytest.mark.parametrize(
    "attributes",
    [{"chargeAmount": "123.45"}, {"tokenType": "reusable"}, {"paymentMethod": "ach-debit"}],
    ids=["charge", "stripe-token", "ach"],
)
def test_what_securepay_must_not_ask_of_pay_stops_the_walk(
    stripe_client: stripe.StripeClient, attributes: dict[str, str]
) -> None:
    with pytest.raises(WalkStopped):
        emulator(stripe_client, GOOD)({**SECUREPAY_PAY, **attributes})


def test_twilio_card_checks() -> None:
    assert luhn_valid("4242424242424242") and luhn_valid("378282246310005")
    assert not luhn_valid("4242424242424241") and not luhn_valid("4242x")
    assert card_type("5555555555554444") == "mastercard"
    assert card_type("2223003122003222") == "mastercard"
    assert card_type("378282246310005") == "amex"
    assert card_type("3566002020360505") == "jcb"
    assert card_type("9999999999999995") is None


# -- no card digits anywhere -----------------------------------------------------------


def test_a_walked_pay_keeps_no_card_digits(
    stripe_client: stripe.StripeClient, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_fixture_app()
    cards = ScriptedCards([f"4242424242424241 12/30 {CVC} 94109", f"{GOOD} 94109"])
    pay = TwilioPayEmulator(stripe_client, cards, today=lambda: TODAY)
    phone = Softphone(FlaskTransport(app), auth_token=AUTH_TOKEN, public_url=PUBLIC_URL, pay=pay)

    transcript = phone.call(CALLER, ["4"]).check()

    assert "Payment success, token pm_" in transcript.last_said()
    [paid] = [event for event in transcript.events if isinstance(event, Paid)]
    assert paid.params["PaymentCardNumber"] == "xxxxxxxxxxxx4242"
    assert fixture_log(app).to("/ivr/paid")[0].params["Result"] == "success"
    seen = " ".join(
        [repr(transcript), repr(pay), repr(cards), capsys.readouterr().out, caplog.text]
        + [repr(exchange) for exchange in transcript.exchanges]
    )
    assert VISA not in seen and "424242424242424" not in seen and not appears_alone(CVC, seen)


def test_card_entries_never_show_their_digits() -> None:
    card = Card(VISA, "12/30", CVC)

    assert repr(card) == str(card) == "Card(xxxxxxxxxxxx4242, expiry 12/30)"
    with pytest.raises(ValueError, match="card entry 2") as caught:
        ScriptedCards([GOOD, f"{VISA} {CVC}"])
    assert VISA not in str(caught.value) and not appears_alone(CVC, str(caught.value))


# -- typed at the terminal -------------------------------------------------------------


NO_POSTAL_CODE = PayRequest(postal_code=False)


def _typed(stdin: str, request: PayRequest = NO_POSTAL_CODE) -> tuple[CardEntry, str]:
    entries: list[CardEntry] = []

    @click.command()
    def pay() -> None:
        entries.append(InteractiveCards().card_for(request, 1, None))

    result = CliRunner().invoke(pay, [], input=stdin)
    assert result.exit_code == 0, result.output
    return entries[0], result.output


def test_typed_card_number_and_security_code_are_not_echoed() -> None:
    entry, shown = _typed(f"{VISA}\n12/30\n{CVC}\n")

    assert isinstance(entry, Card)
    assert (entry.number, entry.expiry, entry.cvc) == (VISA, "12/30", CVC)
    assert "Card number" in shown and "12/30" in shown
    assert VISA not in shown and not appears_alone(CVC, shown)


@pytest.mark.parametrize(
    ("stdin", "gesture"),
    [("*\n", Gesture.STAR), (f"{VISA}\n\n", Gesture.TIMEOUT), (f"{VISA}\n", Gesture.HANG_UP)],
    ids=["star", "nothing-typed", "end-of-input"],
)
def test_typed_star_silence_and_hang_up(stdin: str, gesture: Gesture) -> None:
    assert _typed(stdin)[0] is gesture


# -- securepay call --------------------------------------------------------------------


def _in_process(app: Flask, stripe_key: str | None, stripe_base: str | None) -> ScriptInfo:
    settings = Settings(
        pepper=b"x" * 16,
        twilio_auth_token=AUTH_TOKEN,
        public_url=PUBLIC_URL,
        stripe_api_key=stripe_key,
        stripe_api_base=stripe_base,
    )
    app.extensions[EXTENSION_KEY] = SimpleNamespace(settings=settings)
    return ScriptInfo(create_app=lambda: app)


def test_securepay_call_pays_with_the_card_given(localstripe: LocalStripe) -> None:
    app = create_fixture_app()
    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--keys", "4", "--card", f"{GOOD} 94109"],
        obj=_in_process(app, TEST_API_KEY, localstripe.base_url),
    )

    assert result.exit_code == 0, result.output
    assert "<Pay> collected the card:" in result.output
    assert "PaymentCardNumber=xxxxxxxxxxxx4242" in result.output
    assert "IVR (en-US): Payment success, token pm_" in result.output
    assert VISA not in result.output and not appears_alone(CVC, result.output)


def test_securepay_call_without_a_stripe_key_names_the_variable(localstripe: LocalStripe) -> None:
    app = create_fixture_app()
    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--keys", "4", "--card", GOOD],
        obj=_in_process(app, None, None),
    )

    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: STRIPE_API_KEY is not set")
    assert fixture_log(app).to("/ivr/paid") == []


def test_securepay_call_without_a_card_or_a_terminal_says_what_to_pass(localstripe: LocalStripe) -> None:
    app = create_fixture_app()
    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--keys", "4"],
        obj=_in_process(app, TEST_API_KEY, localstripe.base_url),
    )

    assert result.exit_code == 1
    assert "a <Pay> needs a card: pass --card" in result.output


def test_securepay_call_refuses_a_malformed_card_without_repeating_it() -> None:
    app = create_fixture_app()
    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--keys", "4", "--card", f"{VISA} {CVC}"],
        obj=_in_process(app, TEST_API_KEY, None),
    )

    assert result.exit_code == 2
    assert "card entry 1" in result.output
    assert VISA not in result.output and not appears_alone(CVC, result.output)
    assert fixture_log(app).requests == []


@pytest.fixture
def served() -> Iterator[tuple[Flask, str]]:
    app = create_fixture_app(public_url=None)
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_securepay_call_over_http_tokenizes_with_the_environment_key(
    served: tuple[Flask, str], localstripe: LocalStripe
) -> None:
    app, base_url = served
    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--url", base_url, "--keys", "4", "--card", f"{GOOD} 94109"],
        env={
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "STRIPE_API_KEY": TEST_API_KEY,
            "STRIPE_API_BASE": localstripe.base_url,
        },
    )

    assert result.exit_code == 0, result.output
    assert fixture_log(app).to("/ivr/paid")[0].params["PaymentToken"].startswith("pm_")
