"""Members enrolled in Auto Pay with real cards at localstripe, and the draft run."""

from __future__ import annotations

from datetime import date

import stripe
from flask import Flask

from db.autopay import SqlAutopay
from db.stored_methods import StoredMethod
from ivr.portal import wallet
from ivr.services import current_services
from payments.autopay import RunReport, limits_from, run_drafts
from payments.autopay_notices import wording_from
from payments.autopay_terms import TERMS_VERSION, EnrollmentView
from payments.card_tokenizer import tokenize_card
from tests.ledger_checks import VISA

DUE = date(2026, 11, 30)  # the test members' due date (tests.members.Member)
BEFORE = date(2026, 10, 31)  # an earlier bill: enrolled then, the November bill is covered


def save_card(app: Flask, client: stripe.StripeClient, account_number: str, card: str = VISA) -> StoredMethod:
    """A card tokenized at localstripe and saved on the account, as the portal does."""
    number, expiry, cvc = card.split()
    month, year = expiry.split("/")
    token = tokenize_card(client, number=number, exp_month=int(month), exp_year=2000 + int(year), cvc=cvc)
    with app.app_context():
        services = current_services()
        with services.unit_of_work() as uow:
            account = uow.accounts.by_number(account_number)
        assert account is not None and services.gateway is not None
        gateway = services.gateway
        saved = wallet.save_method(services, gateway, account, token.processor_id, created_via="portal")
        return saved.method


def enroll(
    app: Flask, method: StoredMethod, *, first_due_after: date = BEFORE, channel: str = "portal"
) -> EnrollmentView:
    with app.app_context():
        services = current_services()
        with services.unit_of_work() as uow:
            enrollment = SqlAutopay(uow.session).enroll(
                method.account_id, method, channel="portal" if channel == "portal" else "staff",
                actor=channel, terms_version=TERMS_VERSION, first_due_after=first_due_after,
                now=services.clock.now(),
            )
            uow.commit()
    return enrollment


def run(app: Flask, day: date = DUE) -> RunReport:
    """One draft run, as ``securepay autopay run --date day`` makes it."""
    with app.app_context():
        services = current_services()
        assert services.gateway is not None
        return run_drafts(
            services.sessions, services.gateway, services.clock, day=day,
            limits=limits_from(services.settings), wording=wording_from(services.settings),
        )


def live(app: Flask, account_id: int) -> EnrollmentView | None:
    with app.app_context(), current_services().unit_of_work() as uow:
        return SqlAutopay(uow.session).live(account_id)
