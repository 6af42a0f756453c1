"""Issue 8, items 2 and 13: saving a card the way Stripe wants, and Twilio's ``ProfileId``.

- https://docs.stripe.com/payments/save-during-payment: a card the member saves during
  the payment is charged with the customer and ``setup_future_usage``; Stripe attaches it
  when the payment succeeds (no separate attach). The cardholder is on the line, so not
  ``off_session``; they cannot authenticate by phone, so ``error_on_requires_action``.
- https://www.twilio.com/docs/voice/twiml/pay (Stripe connector): ``ProfileId`` is the
  customer the connector put the method on. It is charged with that customer, and
  saved on it rather than on a second one.

The app's processor client goes through ``tests.stripe_error_server`` (nothing scripted:
it records every request and forwards it to localstripe); ``<Pay>`` tokenizes at
localstripe directly, as Twilio's connector does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe
from flask import Flask

from db.stored_methods import SqlStoredMethods
from ivr.flows.ports import AccountSummary
from ivr.portal.wallet import save_method
from ivr.services import EXTENSION_KEY, current_services
from ivr.softphone import CallTranscript, FlaskTransport, Paid, Softphone
from ivr.softphone.pay import ScriptedCards, TwilioPayEmulator
from payments.card_tokenizer import tokenize_card
from payments.emulator import LocalStripe
from payments.gateway import MandateAcceptance, MethodInfo
from payments.stripe_gateway import StripeGateway, build_stripe_client
from tests.conftest import TEST_ENV
from tests.ledger_checks import VISA, books, processor_charges
from tests.members import PIN, Member, add_members
from tests.stripe_error_server import Scripted, Seen, StripeErrorServer, intent_in, stripe_error_server
from tests.stripe_fixtures import TEST_API_KEY
from tests.twiml_checks import CheckingTransport

CALLER = "+12025550143"
TO_MENU = ["1", "1", PIN]
SAVE_AND_PAY = [*TO_MENU, "2", "10#", "1", "1"]  # $10.00, save the card, confirm
PAY_UNSAVED = [*TO_MENU, "2", "10#", "2", "1"]


@pytest.fixture
def recorder(app: Flask, localstripe: LocalStripe) -> Iterator[StripeErrorServer]:
    localstripe.flush()
    with stripe_error_server(localstripe.base_url) as server:
        client = build_stripe_client(TEST_API_KEY, server.base_url, max_network_retries=0)
        app.extensions[EXTENSION_KEY].gateway = StripeGateway(client)
        yield server


def _phone(app: Flask, client: stripe.StripeClient, *, connector_customer: bool = False) -> Softphone:
    return Softphone(
        CheckingTransport(FlaskTransport(app)),
        auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
        public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"],
        pay=TwilioPayEmulator(client, ScriptedCards([VISA]), connector_customer=connector_customer),
    )


def _profile_id(call: CallTranscript) -> str:
    """The customer ``<Pay>``'s connector posted (``ProfileId``)."""
    (paid,) = [event for event in call.events if isinstance(event, Paid)]
    return paid.params["ProfileId"]


def _charge_request(recorder: StripeErrorServer) -> dict[str, list[str]]:
    (charge,) = recorder.requests_to("POST", "/v1/payment_intents")
    return charge.form


def _attaches(recorder: StripeErrorServer) -> list[Seen]:
    return [s for s in recorder.seen if s.method == "POST" and s.path.endswith("/attach")]


def test_a_card_saved_during_the_call_is_saved_by_the_payment_itself(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    _phone(app, stripe_client).call(CALLER, SAVE_AND_PAY)

    form = _charge_request(recorder)
    (method,) = books(app).methods
    customer = stripe_client.v1.payment_methods.retrieve(method.processor_id).customer
    assert customer is not None and form["customer"] == [customer]
    assert form["setup_future_usage"] == ["off_session"]
    assert form["error_on_requires_action"] == ["true"]
    assert "off_session" not in form  # the cardholder is on the line
    assert not _attaches(recorder)  # Stripe attached it when the payment succeeded
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == ("visa", "4242", 12, 2030)
    assert len(processor_charges(stripe_client)) == 1


def test_a_card_not_saved_is_charged_without_a_customer_or_future_usage(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    _phone(app, stripe_client).call(CALLER, PAY_UNSAVED)

    form = _charge_request(recorder)
    assert "customer" not in form and "setup_future_usage" not in form and "off_session" not in form
    assert form["error_on_requires_action"] == ["true"]
    assert not books(app).methods and not recorder.requests_to("POST", "/v1/customers")


def test_a_profile_id_is_the_customer_charged_even_when_the_card_is_not_saved(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = _phone(app, stripe_client, connector_customer=True).call(CALLER, PAY_UNSAVED)

    profile = _profile_id(call)
    assert _charge_request(recorder)["customer"] == [profile]
    assert "setup_future_usage" not in _charge_request(recorder)
    assert not books(app).methods
    assert len(processor_charges(stripe_client)) == 1


def test_a_saved_card_with_a_profile_id_makes_that_customer_the_accounts(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = _phone(app, stripe_client, connector_customer=True).call(CALLER, SAVE_AND_PAY)

    profile = _profile_id(call)
    assert not recorder.requests_to("POST", "/v1/customers")  # no second customer
    assert not _attaches(recorder)
    assert _charge_request(recorder)["customer"] == [profile]
    (method,) = books(app).methods
    assert stripe_client.v1.payment_methods.retrieve(method.processor_id).customer == profile
    second = _phone(app, stripe_client).call(CALLER, [*TO_MENU, "2", "20#", "1", "1"])
    assert "To pay with the Visa ending in 4 2 4 2, press 1." in second.said_text()
    assert recorder.requests_to("POST", "/v1/payment_intents")[-1].form["customer"] == [profile]
    assert len(processor_charges(stripe_client)) == 2


def test_a_profile_id_unlike_the_accounts_customer_is_charged_but_not_filed(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    _phone(app, stripe_client).call(CALLER, SAVE_AND_PAY)  # the account gets its customer
    (first,) = books(app).methods

    call = _phone(app, stripe_client, connector_customer=True).call(
        CALLER, [*TO_MENU, "2", "20#", "8", "1", "1"]  # a new card, save it, confirm
    )
    profile = _profile_id(call)
    assert recorder.requests_to("POST", "/v1/payment_intents")[-1].form["customer"] == [profile]
    assert [m.id for m in books(app).methods] == [first.id]  # a card on another customer: not filed
    assert not _attaches(recorder)
    assert len(processor_charges(stripe_client)) == 2


# -- the portal saves through a SetupIntent; a bank account and its mandate ------------------
# https://docs.stripe.com/payments/setup-intents, https://docs.stripe.com/payments/ach-direct-debit


def _setup_intent(status: str, payment_method: dict[str, Any], mandate: str | None) -> Scripted:
    return Scripted(200, {
        "id": "seti_errsrv1", "object": "setup_intent", "status": status, "customer": "cus_bank",
        "mandate": mandate, "payment_method": payment_method, "usage": "off_session",
        "last_setup_error": None,
    }, saved=True)


BANK_PM = {
    "id": "pm_bank1", "object": "payment_method", "type": "us_bank_account", "customer": "cus_bank",
    "us_bank_account": {"bank_name": "STRIPE TEST BANK", "last4": "6789", "account_type": "checking"},
}


def _account(app: Flask) -> AccountSummary:
    with app.app_context(), current_services().unit_of_work() as uow:
        account = uow.accounts.by_number("10004821")
    assert account is not None
    return account


def test_the_portal_saves_a_card_through_a_setup_intent_not_a_bare_attach(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    pm = tokenize_card(stripe_client, number="4242424242424242", exp_month=12, exp_year=2031, cvc="123")
    with app.app_context():
        services = current_services()
        assert services.gateway is not None
        saved = save_method(services, services.gateway, _account(app), pm.processor_id, created_via="portal")

    (setup,) = recorder.requests_to("POST", "/v1/setup_intents")
    assert setup.form["payment_method"] == [pm.processor_id] and setup.form["confirm"] == ["true"]
    assert setup.form["usage"] == ["off_session"]
    assert "mandate_data[customer_acceptance][type]" not in setup.form
    assert not _attaches(recorder)
    customer = stripe_client.v1.payment_methods.retrieve(pm.processor_id).customer
    assert customer is not None and setup.form["customer"] == [customer]
    assert saved.method.mandate_id is None and saved.method.kind == "card"


def test_a_bank_account_saved_with_its_mandate_is_offered_and_debited_under_it(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    with app.app_context(), current_services().unit_of_work() as uow:
        SqlStoredMethods(uow.session).set_customer_id(_account(app).id, "cus_bank")
        uow.commit()
    recorder.script("POST", "/v1/setup_intents", _setup_intent("succeeded", BANK_PM, "mandate_1"))
    acceptance = MandateAcceptance(datetime(2026, 12, 1, 8, 0, tzinfo=UTC), "203.0.113.9", "Mozilla/5.0")
    with app.app_context():
        services = current_services()
        assert services.gateway is not None
        saved = save_method(
            services, services.gateway, _account(app), "pm_bank1", created_via="portal", acceptance=acceptance
        )
    (setup,) = recorder.requests_to("POST", "/v1/setup_intents")
    assert setup.form["mandate_data[customer_acceptance][type]"] == ["online"]
    assert setup.form["mandate_data[customer_acceptance][online][ip_address]"] == ["203.0.113.9"]
    accepted_at = str(int(acceptance.accepted_at.timestamp()))
    assert setup.form["mandate_data[customer_acceptance][accepted_at]"] == [accepted_at]
    assert (saved.method.kind, saved.method.last4, saved.method.mandate_id) == ("bank", "6789", "mandate_1")

    recorder.script("POST", "/v1/payment_intents", intent_in("processing"))
    call = _phone(app, stripe_client).call(CALLER, [*TO_MENU, "2", "10#", "1", "1"])
    assert "ending in 6 7 8 9, press 1." in call.said_text()
    form = _charge_request(recorder)
    assert form["mandate"] == ["mandate_1"] and form["customer"] == ["cus_bank"]
    assert form["payment_method"] == ["pm_bank1"]
    assert [a.status for a in books(app).attempts] == ["processing"]


def test_a_bank_account_without_a_mandate_is_not_offered_by_phone(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    with app.app_context(), current_services().unit_of_work() as uow:
        SqlStoredMethods(uow.session).add(
            _account(app).id, MethodInfo("pm_bank2", "bank", "STRIPE TEST BANK", "6789", None, None),
            created_via="portal", now=datetime(2026, 11, 1, tzinfo=UTC),
        )
        uow.commit()

    call = _phone(app, stripe_client).call(CALLER, [*TO_MENU, "2", "10#", "2", "1"])

    text = call.said_text()
    assert "6 7 8 9" not in text
    assert "To save this card for future payments, press 1." in text  # straight to a new card
    assert len(processor_charges(stripe_client)) == 1
    with app.app_context(), current_services().unit_of_work() as uow:  # still on file for the portal
        on_file = SqlStoredMethods(uow.session).for_account(_account(app).id)
    assert [m.processor_id for m in on_file] == ["pm_bank2"]
