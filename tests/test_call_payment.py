"""Contract 2.4-2.7 and SECURITY 14-16: paying by phone, branch by branch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import stripe
from flask import Flask

from ivr.services import EXTENSION_KEY
from ivr.softphone import Paid, Softphone
from tests.fakes import FakeClock
from tests.ledger_checks import DECLINES_AT_CHARGE, VISA, books, processor_charges
from tests.members import PIN, Member, add_members

CALLER = "+12025550143"
MENU = "To pay the full balance, press 1."
PayPhone = Callable[..., Softphone]
TO_MENU = ["1", "1", PIN]  # English, the account found by caller ID, the PIN


def member(**kwargs: str) -> Member:
    return Member("10004821", phones=[CALLER], **kwargs)  # type: ignore[arg-type]


def test_paying_the_full_balance_with_a_new_card(
    app: Flask, card_phone: PayPhone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, member())
    call = card_phone(VISA).call(CALLER, [*TO_MENU, "1", "2", "1", "1", "2"])
    text = call.said_text()
    assert "To save this card for future payments, press 1. Otherwise, press 2." in text
    assert (
        "You are about to pay 123 dollars and 45 cents on the account ending in 4 8 2 1 "
        "with the Visa ending in 4 2 4 2. To confirm, press 1. To cancel, press 2."
    ) in text
    ledger = books(app)
    (payment,) = ledger.payments
    assert payment.amount_cents == 12345 and payment.status == "succeeded"
    assert payment.confirmation.isdigit() and len(payment.confirmation) == 10
    spoken = " ".join(payment.confirmation)
    assert text.count(f"Your confirmation number is {spoken}.") == 2  # `1` repeats it
    assert "Your balance is zero. No payment is due." in text  # back at the menu, paid
    (charge,) = processor_charges(stripe_client)
    assert (charge.id, charge.amount) == (payment.processor_id, 12345)
    assert ledger.attempts[0].status == "succeeded" and not ledger.methods
    assert call.said_text().index("Thank you. Your payment") > 0


def test_the_pay_verb_only_tokenizes(app: Flask, card_phone: PayPhone) -> None:
    add_members(app, member())
    call = card_phone(VISA).call(CALLER, [*TO_MENU, "1", "2"])
    pay = next(e for e in call.exchanges if "<Pay " in e.body).body
    assert 'tokenType="payment-method"' in pay and 'maxAttempts="2"' in pay
    assert "chargeAmount" not in pay
    (paid,) = [e for e in call.events if isinstance(e, Paid)]
    assert paid.params["PaymentCardNumber"] == "xxxxxxxxxxxx4242"


def test_paying_another_amount_with_the_star_as_decimal_point(app: Flask, card_phone: PayPhone) -> None:
    add_members(app, member())
    call = card_phone(VISA).call(CALLER, [*TO_MENU, "2", "25*50#", "2", "1"])
    assert "You are about to pay 25 dollars and 50 cents" in call.said_text()
    assert [p.amount_cents for p in books(app).payments] == [2550]
    assert "Your balance is 97 dollars and 95 cents" not in call.said_text()  # not back at menu yet


@pytest.mark.parametrize("keys, said", [
    ("1*2*3#", "I'm sorry, that is not a valid amount."),
    ("0*50#", "The smallest payment we can take by phone is 1 dollar."),
    ("6000#", "The largest payment we can take by phone is 5,000 dollars."),
])
def test_amounts_outside_the_limits_are_said_and_asked_again(
    app: Flask, phone: Softphone, keys: str, said: str
) -> None:
    add_members(app, member())
    call = phone.call(CALLER, [*TO_MENU, "2", keys])
    assert said in call.said_text()
    assert call.last_said().startswith("Please enter the amount you wish to pay")
    assert not books(app).attempts


def test_cancelling_at_the_confirm_step_charges_nothing(
    app: Flask, card_phone: PayPhone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, member())
    call = card_phone(VISA).call(CALLER, [*TO_MENU, "1", "2", "2"])
    text = call.said_text()
    assert "Your payment was cancelled. You have not been charged." in text
    assert text.rindex("Your balance is 123 dollars") > text.index("Your payment was cancelled")
    assert not books(app).attempts and not processor_charges(stripe_client)


def test_a_saved_card_is_offered_on_the_next_call(
    app: Flask, card_phone: PayPhone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, member())
    card_phone(VISA).call(CALLER, [*TO_MENU, "2", "10#", "1", "1"])
    (method,) = books(app).methods
    assert (method.brand, method.last4, method.created_via) == ("visa", "4242", "ivr")
    assert stripe_client.v1.payment_methods.retrieve(method.processor_id).customer is not None

    second = card_phone().call(CALLER, [*TO_MENU, "2", "20#", "1", "1"])
    assert (
        "To pay with the Visa ending in 4 2 4 2, press 1.\n"
        "To use a new card, press 8. To go back, press star."
    ) in second.said_text()
    assert not [e for e in second.events if isinstance(e, Paid)]  # no card typed again
    assert [p.amount_cents for p in books(app).payments] == [1000, 2000]
    assert len(processor_charges(stripe_client)) == 2


def test_a_decline_is_said_without_the_reason_and_offers_another_method(
    app: Flask, card_phone: PayPhone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, member())
    call = card_phone(DECLINES_AT_CHARGE, VISA).call(
        CALLER, [*TO_MENU, "1", "2", "1", "1", "2", "1"]
    )
    text = call.said_text()
    assert "We're sorry, your payment could not be completed with that payment method." in text
    assert "declined" not in text.lower() and "insufficient" not in text.lower()
    ledger = books(app)
    assert [a.status for a in ledger.attempts] == ["declined", "succeeded"]
    assert ledger.attempts[0].decline_code
    assert len(ledger.payments) == 1 and len(processor_charges(stripe_client)) == 1


@pytest.mark.parametrize("card, said", [
    ("4242424242424241 12/30 123", "We were unable to accept that card."),  # fails Luhn twice
    ("timeout", "We were unable to accept that card."),  # Twilio re-asks, then gives up
])
def test_a_card_that_is_not_collected_is_said_plainly_and_offers_another_try(
    app: Flask, card_phone: PayPhone, card: str, said: str
) -> None:
    add_members(app, member())
    call = card_phone(card, card, VISA).call(CALLER, [*TO_MENU, "1", "2", "1", "1"])
    assert said in call.said_text()
    assert "To try again, press 1. To return to the main menu, press 2." in call.said_text()
    assert [p.amount_cents for p in books(app).payments] == [12345]


def test_star_during_card_entry_goes_back(app: Flask, card_phone: PayPhone) -> None:
    add_members(app, member())
    call = card_phone("*").call(CALLER, [*TO_MENU, "1", "2"])
    assert call.last_said().startswith(MENU)


def test_at_most_two_new_cards_per_call(app: Flask, card_phone: PayPhone) -> None:
    add_members(app, member())
    declines = [DECLINES_AT_CHARGE, "4000000000000341 11/31 456"]
    call = card_phone(*declines).call(
        CALLER, [*TO_MENU, "1", "2", "1", "1", "2", "1", "1", "8"]
    )
    assert "We cannot accept another new card on this call." in call.said_text()
    assert len(books(app).attempts) == 2


def test_a_daily_cap_of_declines_per_account_stops_card_payments(
    app: Flask, card_phone: PayPhone, clock: FakeClock
) -> None:
    add_members(app, member())
    for _ in range(2):
        card_phone(DECLINES_AT_CHARGE, DECLINES_AT_CHARGE).call(
            CALLER, [*TO_MENU, "1", "2", "1", "1", "2", "1", "1"]
        )
    assert [a.status for a in books(app).attempts].count("declined") >= 3
    capped = card_phone(VISA).call(CALLER, [*TO_MENU, "1"])
    assert "We are unable to take a card payment for this account by phone right now." in capped.said_text()
    clock.advance(timedelta(hours=25))
    later = card_phone(VISA).call(CALLER, [*TO_MENU, "1", "2", "1"])
    assert "Thank you. Your payment of 123 dollars and 45 cents has been received." in later.said_text()


def test_the_last_payment_is_read_with_its_confirmation_number(
    app: Flask, card_phone: PayPhone, phone: Softphone
) -> None:
    add_members(app, member())
    assert "We have no record of a payment by phone" in phone.call(CALLER, [*TO_MENU, "3"]).said_text()
    card_phone(VISA).call(CALLER, [*TO_MENU, "2", "40#", "2", "1"])
    (payment,) = books(app).payments
    text = phone.call(CALLER, [*TO_MENU, "3"]).said_text()
    assert (
        "Your last payment by phone, of 40 dollars, was received on November 24. "
        f"Its confirmation number is {' '.join(payment.confirmation)}."
    ) in text


def test_a_credit_balance_has_nothing_to_pay_in_full(app: Flask, phone: Softphone) -> None:
    add_members(app, member(balance="-10.00"))
    call = phone.call(CALLER, [*TO_MENU, "1"])
    assert "There is no balance due on your account." in call.said_text()


def test_without_a_processor_payments_are_not_offered(app: Flask, phone: Softphone) -> None:
    app.extensions[EXTENSION_KEY].gateway = None
    add_members(app, member())
    call = phone.call(CALLER, [*TO_MENU, "1"])
    assert "Payments by phone are not available right now." in call.said_text()


def test_paying_in_spanish(app: Flask, card_phone: PayPhone) -> None:
    add_members(app, member())
    call = card_phone(VISA).call(CALLER, ["2", "1", PIN, "1", "2", "1"])
    text = call.said_text()
    assert (
        "Está a punto de pagar 123 dólares con 45 centavos en la cuenta que termina en 4 8 2 1 "
        "con la tarjeta Visa que termina en 4 2 4 2."
    ) in text
    assert "Gracias. Hemos recibido su pago de 123 dólares con 45 centavos." in text
    pay = next(e for e in call.exchanges if "<Pay " in e.body).body
    # <Pay> has its own language (Twilio lists es-MX and es-ES, not es-US); <Say> stays es-US
    assert '<Pay action=' in pay and 'language="es-MX"' in pay and '<Say language="es-US">' in pay


def test_payment_steps_need_a_verified_pin(app: Flask) -> None:
    from tests.twilio_requests import RawCall

    add_members(app, member())
    call = RawCall(app)
    call.start()
    call.step(1, "1")
    call.step(2, "1")  # at the PIN prompt, not verified
    forged = call.step(3, "1")  # a "1" here is a PIN attempt of one digit, not "pay"
    assert b"4 digits" in forged.data
    assert not books(app).attempts


def test_a_card_already_on_file_elsewhere_is_charged_without_being_saved_twice(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    from payments.card_tokenizer import tokenize_card
    from tests.twilio_requests import RawCall

    add_members(app, member(), Member("20003355", phones=["+12025550166"]))
    token = tokenize_card(stripe_client, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123")
    for caller in (CALLER, "+12025550166"):
        call = RawCall(app, caller)
        call.start()
        for n, digits in enumerate(["1", "1", PIN, "1", "1"], start=1):  # ... pay in full, save: 1
            call.step(n, digits)
        assert b"You are about to pay" in call.pay(6, token.processor_id).data
        assert b"has been received" in call.step(7, "1").data
    ledger = books(app)
    assert len(ledger.payments) == 2 and len(ledger.methods) == 1
