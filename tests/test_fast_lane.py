"""Contract 2.1-2.5 as changed 2026-12-01: the fast lane. A returning member found by
caller ID, with a stored card, pays the full balance with the PIN and one key; the
offer names the amount, the account's last four and the method's, and `1` charges at
once under the confirm step's exactly-once rules."""

from __future__ import annotations

import pytest
import stripe
from flask import Flask
from werkzeug.test import TestResponse

from ivr.services import current_services
from ivr.softphone import Gathered, Paid, Softphone
from payments.gateway import MethodInfo
from tests.ledger_checks import books, processor_charges
from tests.members import PIN, Member, add_members
from tests.test_exactly_once import at_once
from tests.twilio_requests import RawCall
from tests.wallets import store_card, store_row

CALLER = "+12025550143"
OFFER = "Press 1 to pay 123 dollars and 45 cents on account ending 4 8 2 1 with Visa ending 4 2 4 2."
OFFER_ES = (
    "Oprima 1 para pagar 123 dólares con 45 centavos en la cuenta que termina en 4 8 2 1 "
    "con tarjeta Visa que termina en 4 2 4 2."
)
RECEIVED = "Paid, thank you. Your confirmation number is"


def returning(app: Flask, client: stripe.StripeClient, **kwargs: str) -> str:
    add_members(app, Member("10004821", phones=[CALLER], **kwargs))  # type: ignore[arg-type]
    return store_card(app, client, "10004821")


def at_offer(app: Flask) -> RawCall:
    """A call at the account menu (step 3), its offer said."""
    call = RawCall(app, CALLER)
    call.start()
    call.step(1, "1")
    menu = call.step(2, PIN)
    assert OFFER.encode() in menu.data, menu.data
    return call


def assert_one_charge(app: Flask, client: stripe.StripeClient, pm: str) -> None:
    ledger = books(app)
    (charge,) = processor_charges(client)
    (attempt,) = ledger.attempts
    (payment,) = ledger.payments
    assert attempt.status == "succeeded" and attempt.method_processor_id == pm
    assert payment.processor_id == charge.id and payment.amount_cents == charge.amount == 12345


def test_a_returning_member_pays_with_the_pin_and_one_key(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    pm = returning(app, stripe_client)
    call = phone.call(CALLER, ["-", PIN, "1"])  # no key at the language prompt
    text = call.said_text()
    assert OFFER in text
    assert RECEIVED in text
    assert "You are about to pay" not in text  # the offer was the confirmation
    assert "To pay with the Visa" not in text  # no method menu
    presses = [e.keys for e in call.events if isinstance(e, Gathered) and e.keys]
    assert presses == [PIN, "1"]
    assert not [e for e in call.events if isinstance(e, Paid)]
    assert_one_charge(app, stripe_client, pm)


def test_the_fast_lane_in_spanish(app: Flask, phone: Softphone, stripe_client: stripe.StripeClient) -> None:
    pm = returning(app, stripe_client, language="es")
    call = phone.call(CALLER, ["-", PIN, "1"])  # a Spanish account: no input keeps Spanish
    text = call.said_text()
    assert OFFER_ES in text
    assert "Pagado, gracias. Su número de confirmación es" in text
    assert_one_charge(app, stripe_client, pm)


def test_the_offer_names_the_method_paid_with_last_else_the_one_stored_last(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    visa = store_card(app, stripe_client, "10004821")
    store_card(app, stripe_client, "10004821", number="5555555555554444")
    first = phone.call(CALLER, ["1", PIN, "9"])
    assert "ending 4 4 4 4." in first.said_text()  # stored last (localstripe: any brand)
    phone.call(CALLER, ["1", PIN, "2", "10#", "1", "1"])  # 10 dollars with the Visa (key 1 of 2)
    assert [a.method_processor_id for a in books(app).attempts] == [visa]
    second = phone.call(CALLER, ["1", PIN])
    assert (
        "Press 1 to pay 113 dollars and 45 cents on account ending 4 8 2 1 with Visa ending 4 2 4 2."
    ) in second.said_text()  # the one this account paid with last


@pytest.mark.parametrize("balance, said", [
    ("0.00", "Your balance is zero. No payment is due."),
    ("-15.50", "You have a credit balance of 15 dollars and 50 cents. No payment is due."),
    ("6000.00", "Your balance is 6,000 dollars, due November 30."),  # over the maximum
    ("0.50", "Your balance is 50 cents, due November 30."),  # under the minimum
])
def test_no_offer_for_nothing_due_or_outside_the_limits(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, balance: str, said: str
) -> None:
    returning(app, stripe_client, balance=balance)
    call = phone.call(CALLER, ["1", PIN, "1"])
    text = call.said_text()
    assert said in text
    assert "with Visa ending 4 2 4 2." not in text
    assert not processor_charges(stripe_client) and not books(app).attempts


def test_with_nothing_due_one_is_not_offered(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client, balance="0.00")
    text = phone.call(CALLER, ["1", PIN]).said_text()
    assert "ress 1" not in text.split("Your balance is zero.")[1]
    assert "Or press 2 for another amount or method" in text


def test_over_the_limit_one_leads_to_the_amount_prompt_not_a_charge(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client, balance="6000.00")
    call = phone.call(CALLER, ["1", PIN, "1"])
    assert "Press 1 to pay the full balance." in call.said_text()
    assert "The largest payment by phone is 5,000 dollars." in call.said_text()
    assert call.last_said().startswith("Enter the amount")


def test_no_offer_with_a_stored_bank_account(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    store_row(app, "10004821", MethodInfo("pm_bank_0001", "bank", "STRIPE TEST BANK", "6789", None, None))
    text = phone.call(CALLER, ["1", PIN]).said_text()
    assert "Press 1 to pay the full balance." in text
    assert "bank account ending 6 7 8 9." not in text


def test_no_offer_with_an_expired_card_or_without_the_processor_customer(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]), Member("20003355", phones=["+12025550166"]))
    store_row(app, "10004821", MethodInfo("pm_expired_01", "card", "visa", "4242", 10, 2026))  # Oct 2026
    store_row(app, "20003355", MethodInfo("pm_nocustomer", "card", "visa", "1881", 12, 2030), customer=None)
    for caller in (CALLER, "+12025550166"):
        text = phone.call(caller, ["1", PIN]).said_text()
        assert "Press 1 to pay the full balance." in text
        assert "ending 4 2 4 2." not in text and "ending 1 8 8 1." not in text


def test_no_offer_when_payments_are_off(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client)
    with app.app_context():
        current_services().gateway = None
    text = phone.call(CALLER, ["1", PIN, "1"]).said_text()
    assert OFFER not in text
    assert "Payments by phone are not available right now." in text


def test_a_replayed_one_press_charges_once(app: Flask, stripe_client: stripe.StripeClient) -> None:
    pm = returning(app, stripe_client)
    call = at_offer(app)
    first = call.step(3, "1")
    again = call.step(3, "1")
    assert RECEIVED.encode() in first.data
    assert again.data == first.data
    assert_one_charge(app, stripe_client, pm)


def test_a_double_press_at_the_same_moment_charges_once(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    pm = returning(app, stripe_client)
    call = at_offer(app)
    bodies = at_once(lambda: call.step(3, "1"), lambda: call.step(3, "1"))
    assert all(RECEIVED.encode() in body for body in bodies)
    assert_one_charge(app, stripe_client, pm)


def test_two_calls_pressing_one_for_one_bill_at_once_charge_it_once(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client)
    first, second = at_offer(app), at_offer(app)

    def press(call: RawCall) -> TestResponse:
        return call.step(3, "1")

    bodies = at_once(lambda: press(first), lambda: press(second))
    assert sum(RECEIVED.encode() in body for body in bodies) == 1
    assert sum(b"Your balance has changed since it was read to you." in body for body in bodies) == 1
    ledger = books(app)
    assert sorted(a.status for a in ledger.attempts) == ["failed", "succeeded"]
    assert len(ledger.payments) == 1 and len(processor_charges(stripe_client)) == 1


def test_a_method_removed_after_the_offer_is_not_charged(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client)
    call = at_offer(app)
    with app.app_context(), current_services().unit_of_work() as uow:
        account = uow.accounts.by_number("10004821")
        assert account is not None
        (method,) = uow.methods.for_account(account.id)
        uow.methods.remove(account.id, method.id)
        uow.commit()
    answer = call.step(3, "1")
    assert b"That payment method is no longer on file. You have not been charged." in answer.data
    assert not books(app).attempts and not processor_charges(stripe_client)


def test_a_card_added_after_the_offer_does_not_change_what_one_charges(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    pm = returning(app, stripe_client)
    call = at_offer(app)
    store_card(app, stripe_client, "10004821", number="5555555555554444")  # stored last, unsaid
    assert RECEIVED.encode() in call.step(3, "1").data
    assert_one_charge(app, stripe_client, pm)


@pytest.mark.parametrize("lang, amount", [
    ("1", "You are about to pay 123 dollars and 45 cents on the account ending in 4 8 2 1"),
    ("2", "Está a punto de pagar 123 dólares con 45 centavos en la cuenta que termina en 4 8 2 1"),
])
def test_pound_alone_at_the_amount_prompt_is_the_full_balance(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, lang: str, amount: str
) -> None:
    returning(app, stripe_client)
    call = phone.call(CALLER, [lang, PIN, "2", "#", "1"])  # the amount, then the Visa (key 1)
    assert amount in call.said_text()
    entry = next(e for e in call.exchanges if "decimal" in e.body)
    assert 'actionOnEmptyResult="true"' in entry.body


def test_no_input_at_the_amount_prompt_is_still_a_miss(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client)
    call = phone.call(CALLER, ["1", PIN, "2", "-", "-", "-"])
    assert call.last_said() == "We did not get a valid entry. Goodbye."
    assert not books(app).attempts
