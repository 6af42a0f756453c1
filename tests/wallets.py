"""Stored payment methods for test members, put on file as the portal would: a processor
customer for the account, the card tokenized and attached at localstripe, then a row."""

from __future__ import annotations

from datetime import timedelta

import stripe
from flask import Flask

from ivr.services import Services, current_services
from payments.card_tokenizer import tokenize_card
from payments.gateway import MethodInfo, customer_idempotency_key


def store_card(
    app: Flask,
    client: stripe.StripeClient,
    account_number: str,
    number: str = "4242424242424242",
    exp_month: int = 12,
    exp_year: int = 2030,
) -> str:
    """Attach a test card to the account's processor customer and store it; its pm_ id."""
    with app.app_context():
        services: Services = current_services()
        assert services.gateway is not None
        token = tokenize_card(client, number=number, exp_month=exp_month, exp_year=exp_year, cvc="123")
        with services.unit_of_work() as uow:
            account = uow.accounts.by_number(account_number)
            assert account is not None
            customer = uow.methods.customer_id(account.id)
            if customer is None:
                created = services.gateway.create_customer(
                    account_number, idempotency_key=customer_idempotency_key(account_number)
                )
                customer = uow.methods.set_customer_id(account.id, created)
            info = services.gateway.attach_method(customer, token.processor_id)
            # One second apart, so "the one stored last" is well defined.
            services.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
            uow.methods.add(account.id, info, created_via="portal", now=services.clock.now())
            uow.commit()
        return info.processor_id


def store_row(
    app: Flask, account_number: str, info: MethodInfo, *, customer: str | None = "cus_test"
) -> None:
    """A method row without the processor (for methods the offer must refuse unheard)."""
    with app.app_context():
        services: Services = current_services()
        with services.unit_of_work() as uow:
            account = uow.accounts.by_number(account_number)
            assert account is not None
            if customer is not None and uow.methods.customer_id(account.id) is None:
                uow.methods.set_customer_id(account.id, customer)
            uow.methods.add(account.id, info, created_via="portal", now=services.clock.now())
            uow.commit()
