"""Issue 3, point 5: one confirmation, one charge, one ledger row, whatever repeats.

Every case asserts both the processor's record (localstripe's PaymentIntents) and the
ledger. localstripe ignores idempotency keys, so these prove that our ledger, not the
processor, prevents double charges.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import stripe
from flask import Flask
from werkzeug.test import TestResponse

from ivr.services import EXTENSION_KEY
from payments.card_tokenizer import tokenize_card
from tests.faulty_gateway import Fault, FaultyGateway
from tests.ledger_checks import books, processor_charges
from tests.members import PIN, Member, add_members
from tests.twilio_requests import RawCall

CALLER = "+12025550143"
RECEIVED = b"Your confirmation number is"


class ConfirmingCall(RawCall):
    """A call standing at a step where `1` charges: ``call.press_one()``."""

    charge_step = 0

    def press_one(self) -> TestResponse:
        return self.step(self.charge_step, "1")


def at_confirm(app: Flask, client: stripe.StripeClient, caller: str = CALLER) -> ConfirmingCall:
    """A call standing at the confirm step to pay the full balance with a new card (the
    account found by caller ID, or keyed in by another caller)."""
    token = tokenize_card(client, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123")
    call = ConfirmingCall(app, caller)
    call.start()
    keys = ["1", PIN, "1", "2"] if caller == CALLER else ["1", "10004821", PIN, "1", "2"]
    for n, digits in enumerate(keys, start=1):
        assert call.step(n, digits).status_code == 200
    response = call.pay(len(keys) + 1, token.processor_id)
    assert b"You are about to pay" in response.data, response.data
    call.charge_step = len(keys) + 2
    return call


def at_once(*requests: Callable[[], TestResponse]) -> list[bytes]:
    """Send the requests at the same moment, one thread each; their answers' bodies."""
    barrier = threading.Barrier(len(requests))
    bodies: list[bytes] = []

    def send(request: Callable[[], TestResponse]) -> None:
        barrier.wait()
        bodies.append(request().data)

    threads = [threading.Thread(target=send, args=(request,)) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(bodies) == len(requests)
    return bodies


def faulty(app: Flask, *faults: Fault) -> FaultyGateway:
    services = app.extensions[EXTENSION_KEY]
    wrapper = FaultyGateway(services.gateway, list(faults))
    services.gateway = wrapper
    return wrapper


def assert_one_charge(app: Flask, client: stripe.StripeClient) -> None:
    ledger = books(app)
    (charge,) = processor_charges(client)
    (attempt,) = ledger.attempts
    (payment,) = ledger.payments
    assert attempt.status == "succeeded"
    assert payment.processor_id == attempt.processor_id == charge.id
    assert payment.amount_cents == charge.amount == 12345


def test_a_replayed_confirm_charges_once(app: Flask, stripe_client: stripe.StripeClient) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    first = call.press_one()
    again = call.press_one()
    assert RECEIVED in first.data
    assert again.data == first.data  # the replay hears where the call is, nothing more
    assert_one_charge(app, stripe_client)


def test_a_double_key_press_at_the_same_moment_charges_once(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    bodies = at_once(lambda: call.press_one(), lambda: call.press_one())
    assert all(RECEIVED in body for body in bodies)
    assert_one_charge(app, stripe_client)


def test_two_calls_paying_one_bill_at_once_charge_it_once(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    first, second = at_confirm(app, stripe_client), at_confirm(app, stripe_client, "+12025550166")
    bodies = at_once(first.press_one, second.press_one)
    assert sum(RECEIVED in body for body in bodies) == 1
    assert sum(b"Your balance has changed since it was read to you." in body for body in bodies) == 1
    ledger = books(app)
    assert sorted(a.status for a in ledger.attempts) == ["failed", "succeeded"]
    assert len(ledger.payments) == 1 and len(processor_charges(stripe_client)) == 1


def test_a_timeout_after_the_charge_went_through_is_resolved_by_lookup(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    gateway = faulty(app, "timeout_after_charge")
    assert RECEIVED in call.press_one().data
    assert gateway.charges_sent == 1
    assert_one_charge(app, stripe_client)


def test_a_timeout_before_the_charge_is_recorded_as_unknown_and_not_retried(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    faulty(app, "timeout_before_charge")
    response = call.press_one()
    assert b"We could not confirm your payment. Do not pay again" in response.data
    assert b"<Hangup" in response.data
    ledger = books(app)
    assert [a.status for a in ledger.attempts] == ["unknown"]
    assert not ledger.payments and not processor_charges(stripe_client)


def test_an_unreachable_processor_charges_nothing_and_says_so(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    faulty(app, "unavailable")
    response = call.press_one()
    assert b"We could not process your payment. You have not been charged." in response.data
    assert [a.status for a in books(app).attempts] == ["failed"]
    assert not processor_charges(stripe_client)


def test_a_worker_crash_before_the_charge_leaves_an_attempt_the_retry_completes(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    faulty(app, "crash_before_charge")
    crashed = call.press_one()
    assert b"<Hangup" in crashed.data  # an apology, as valid TwiML
    assert [a.status for a in books(app).attempts] == ["pending"]  # written before the processor
    retried = call.press_one()
    assert RECEIVED in retried.data
    assert_one_charge(app, stripe_client)


def test_a_worker_crash_after_the_charge_is_found_not_charged_again(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    gateway = faulty(app, "crash_after_charge")
    call.press_one()
    assert len(processor_charges(stripe_client)) == 1 and not books(app).payments
    retried = call.press_one()
    assert RECEIVED in retried.data
    assert gateway.charges_sent == 1  # found at the processor, not charged again
    assert_one_charge(app, stripe_client)
