"""What the processor and the ledger hold, read back for assertions."""

from __future__ import annotations

from dataclasses import dataclass

import stripe
from flask import Flask
from sqlalchemy import select

from db.models import Payment, PaymentAttempt, PaymentMethod
from ivr.services import current_services

VISA = "4242424242424242 12/30 123"
DECLINES_AT_CHARGE = "4000000000000341 12/30 123"


@dataclass(frozen=True)
class Books:
    attempts: list[PaymentAttempt]
    payments: list[Payment]
    methods: list[PaymentMethod]


def books(app: Flask) -> Books:
    with app.app_context(), current_services().unit_of_work() as uow:
        session = uow.session
        result = Books(
            attempts=list(session.scalars(select(PaymentAttempt).order_by(PaymentAttempt.created_at))),
            payments=list(session.scalars(select(Payment).order_by(Payment.id))),
            methods=list(session.scalars(select(PaymentMethod).order_by(PaymentMethod.id))),
        )
        session.expunge_all()
        return result


def processor_charges(client: stripe.StripeClient) -> list[stripe.PaymentIntent]:
    """Every PaymentIntent the processor succeeded (the truth about money taken)."""
    intents = client.v1.payment_intents.list(params={"limit": 100})
    return [intent for intent in intents.data if intent.status == "succeeded"]
