"""What a paying call asks of the ledger and the stored methods, per webhook (issue 12):
the methods, the processor customer and the last paid method in one read per request,
both decline counts in one, the attempt read once per transaction, and no savepoint
(the unique keys decide a replay). Everything else a step sends (the call, the account,
the audit trail) is not counted here."""

from __future__ import annotations

import stripe
from flask import Flask
from sqlalchemy import Engine

from ivr.services import EXTENSION_KEY, Services
from tests.ledger_checks import books, processor_charges
from tests.members import PIN
from tests.test_fast_lane import CALLER, OFFER, RECEIVED, returning
from tests.test_ledger_reads import statements
from tests.twilio_requests import RawCall


def _engine(app: Flask) -> Engine:
    services: Services = app.extensions[EXTENSION_KEY]
    return services.engine


def _touching(sent: list[str], table: str) -> list[str]:
    return [s for s in sent if table in s]


def _on_attempts(sent: list[str]) -> list[str]:
    """Statements on payment_attempts (not the wallet's, whose last paid method reads it)."""
    return [s for s in _touching(sent, "payment_attempts") if "payment_methods" not in s]


def test_the_pin_step_reads_the_wallet_and_the_declines_once(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client)
    call = RawCall(app, CALLER)
    call.start()
    call.step(1, "1")
    with statements(_engine(app)) as sent:
        menu = call.step(2, PIN)
    assert OFFER.encode() in menu.data
    assert len(_touching(sent, "payment_methods")) == 1  # methods, customer, last paid: one read
    declines = [s for s in sent if "count(*)" in s and "payment_attempts" in s]
    assert len(declines) == 1  # the account's and the caller's
    customer_alone = "SELECT accounts.processor_customer_id \nFROM"
    assert not [s for s in sent if s.lstrip().startswith(customer_alone)]


def test_the_one_press_payment_reads_the_attempt_once_per_transaction_and_no_savepoint(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client)
    call = RawCall(app, CALLER)
    call.start()
    call.step(1, "1")
    assert OFFER.encode() in call.step(2, PIN).data
    with statements(_engine(app)) as sent:
        paid = call.step(3, "1")
    assert RECEIVED.encode() in paid.data
    assert not [s for s in sent if "SAVEPOINT" in s]
    attempts = _on_attempts(sent)
    kinds = [s.split()[0].upper() for s in attempts]
    # declines, the insert (first transaction); the read under the lock, the outcome (second)
    assert kinds == ["SELECT", "INSERT", "SELECT", "UPDATE"], "\n".join(s[:90] for s in attempts)
    assert len(_touching(sent, "payment_methods")) == 1
    assert [s.split()[0].upper() for s in _touching(sent, "INTO payments")] == ["INSERT"]
    assert len(processor_charges(stripe_client)) == 1 and len(books(app).payments) == 1


def test_a_typed_amount_with_a_stored_card_reads_the_methods_once_per_step(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    returning(app, stripe_client)
    call = RawCall(app, CALLER)
    call.start()
    call.step(1, "1")
    call.step(2, PIN)
    call.step(3, "2")  # another amount
    with statements(_engine(app)) as amount:
        call.step(4, "10")  # $10 (Twilio strips the #): to the method menu, which says the methods
    with statements(_engine(app)) as method:
        call.step(5, "1")  # the stored Visa: to the confirm screen
    with statements(_engine(app)) as confirm:
        paid = call.step(6, "1")
    assert RECEIVED.encode() in paid.data
    assert len(_touching(amount, "payment_methods")) == 1
    assert len(_touching(method, "payment_methods")) == 1
    assert len(_touching(confirm, "payment_methods")) == 1  # the mandate and customer, second transaction
    assert not [s for s in confirm if "SAVEPOINT" in s]
    kinds = [s.split()[0].upper() for s in _on_attempts(confirm)]
    assert kinds == ["INSERT", "SELECT", "UPDATE"]
    (payment,) = books(app).payments
    assert payment.amount_cents == 1000
