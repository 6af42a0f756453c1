"""Issue 10, point 3: where the text receipt is on (``SECUREPAY_SMS_FROM``), every Auto
Pay enrollment, change and cancellation also sends the terms by text, and the notices
table keeps what was sent (medium ``text``, the number masked).

Through the twilio library's REST client, its HTTP-client hook pointed at a stand-in for
Twilio's Messages API on 127.0.0.1 (``tests/twilio_messages.py``; Twilio's Message
resource: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource).
A text carries no PIN, SSN digit, card data or full account number (SECURITY 19b).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
import stripe
from flask import Flask
from sqlalchemy import select

from db.models import AutopayNotice
from ivr.services import EXTENSION_KEY, Services
from ivr.softphone import Softphone
from payments.autopay_notices import AutopayNotices, write_notice
from payments.autopay_terms import Wording
from payments.texts import TwilioTexts
from tests.autopay_setup import enroll, live, save_card
from tests.conftest import TEST_ENV
from tests.ledger_checks import VISA
from tests.members import PIN, SSN, Member, add_members
from tests.twilio_messages import OPTED_OUT, FakeMessages, LocalTwilioHttpClient, fake_messages

PayPhone = Callable[..., Softphone]
CALLER = "+12025550143"
OTHER = "+12025550188"
ACCOUNT = "10004821"
ACCOUNT_SID = "AC" + "5" * 32
SMS_FROM = "+12025550199"
EN = ["1", PIN]
MASTERCARD = "5555555555554444 12/30 123"


@pytest.fixture
def twilio() -> Iterator[FakeMessages]:
    with fake_messages() as fake:
        yield fake


def texts_on(app: Flask, fake: FakeMessages) -> AutopayNotices:
    """Texts on, as SECUREPAY_SMS_FROM and TWILIO_ACCOUNT_SID turn them on; the notices'
    Twilio sender pointed at the stand-in (no SMTP host: the e-mails stay pending)."""
    services: Services = app.extensions[EXTENSION_KEY]
    services.flow_config = dataclasses.replace(services.flow_config, texts_on=True)
    sender = TwilioTexts(
        account_sid=ACCOUNT_SID, sender=SMS_FROM, username=ACCOUNT_SID,
        password=TEST_ENV["TWILIO_AUTH_TOKEN"], http_client=LocalTwilioHttpClient(fake.base_url),
    )
    notices = AutopayNotices(services.sessions, None, services.clock, sender)
    services.autopay_notices = notices
    return notices


def notices(app: Flask) -> list[AutopayNotice]:
    services: Services = app.extensions[EXTENSION_KEY]
    with app.app_context(), services.sessions() as session:
        found = list(session.scalars(select(AutopayNotice).order_by(AutopayNotice.id)))
        session.expunge_all()
        return found


def member() -> Member:
    return Member(ACCOUNT, phones=[CALLER], email="maria.rivera@example.com", ssn_last4=SSN)


def test_enrolling_changing_and_cancelling_by_phone_text_the_terms(
    app: Flask, card_phone: PayPhone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    (account_id,) = add_members(app, member())
    save_card(app, stripe_client, ACCOUNT)
    sender = texts_on(app, twilio)
    card_phone().call(CALLER, [*EN, "4", "1", "1", "1", "2"])  # enroll with the stored Visa
    sender.wait(10)
    card_phone(MASTERCARD).call(CALLER, [*EN, "4", "1", "8", "1"])  # change to a new card
    sender.wait(10)
    card_phone().call(CALLER, [*EN, "4", "2", "1"])  # cancel
    sender.wait(10)
    assert live(app, account_id) is None

    assert [(seen.path, seen.form["To"], seen.form["From"]) for seen in twilio.seen] == [
        (f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", CALLER, SMS_FROM)
    ] * 3
    enrolled, changed, cancelled = (seen.form["Body"] for seen in twilio.seen)
    assert enrolled.startswith("Test Valley Electric: your Auto Pay terms\n")
    assert "These are the terms you agreed to:" in enrolled
    assert "to charge the full balance of each bill on its due date" in enrolled
    assert "to your Visa ending in 4242" in enrolled and "account ending in 4821" in enrolled
    assert "starting with the first bill due after November 30, 2026" in enrolled
    assert "call member services at" in enrolled
    assert changed.startswith("Test Valley Electric: your Auto Pay payment method changed\n")
    assert "ending in 4444" in changed
    assert cancelled.startswith("Test Valley Electric: your Auto Pay is cancelled\n")
    assert "no further bill will be charged" in cancelled
    for body in (enrolled, changed, cancelled):
        for secret in (ACCOUNT, PIN, SSN, "4242424242424242", "5555555555554444"):
            assert secret not in body

    kept = notices(app)  # the trail: each change by e-mail (no SMTP here: pending) and by text
    assert [(n.kind, n.medium) for n in kept] == [
        ("enrolled", "email"), ("enrolled", "text"),
        ("method_changed", "email"), ("method_changed", "text"),
        ("cancelled", "email"), ("cancelled", "text"),
    ]
    texts = [n for n in kept if n.medium == "text"]
    assert all(n.to_masked == "+1******0143" and n.sent_at is not None and n.failure is None for n in texts)
    assert [f"{n.subject}\n{n.body}".rstrip() for n in texts] == [enrolled, changed, cancelled]
    assert all(n.sent_at is None for n in kept if n.medium == "email")


def test_no_text_when_the_text_receipt_is_off(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, member())
    save_card(app, stripe_client, ACCOUNT)
    phone.call(CALLER, [*EN, "4", "1", "1", "1", "2"])
    assert [n.medium for n in notices(app)] == ["email"]


def test_a_refused_text_is_kept_pending_with_why_and_the_email_still_written(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    add_members(app, member())
    save_card(app, stripe_client, ACCOUNT)
    sender = texts_on(app, twilio)
    twilio.answers[CALLER] = OPTED_OUT  # the member texted STOP
    phone.call(CALLER, [*EN, "4", "1", "1", "1", "2"])
    sender.wait(10)
    email, text = notices(app)
    assert (email.medium, text.medium) == ("email", "text")
    assert text.sent_at is None and text.failure == "text opted_out (Twilio error 21610)"
    assert len(twilio.seen) == 1


def test_a_portal_or_staff_change_texts_the_oldest_number_on_file(
    app: Flask, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    # Whatever the channel (here the staff's or the portal's: no caller), the account's
    # oldest number on file that is a valid US one.
    (account_id,) = add_members(app, Member(ACCOUNT, phones=[OTHER, CALLER], email=""))
    method = save_card(app, stripe_client, ACCOUNT, VISA)
    enrollment = enroll(app, method)
    sender = texts_on(app, twilio)
    services: Services = app.extensions[EXTENSION_KEY]
    wording = Wording("Test Valley Electric", "+12025550100", texts=True)
    with app.app_context(), services.unit_of_work() as uow:
        ids = write_notice(uow.session, "cancelled", enrollment, wording=wording, now=services.clock.now())
        uow.commit()
    assert len(ids) == 1  # no e-mail address on file: the text alone
    assert sender.deliver(list(ids)) == 1
    (seen,) = twilio.seen
    assert seen.form["To"] == OTHER and ACCOUNT not in seen.form["Body"]
    (kept,) = notices(app)
    assert (kept.medium, kept.to_masked, kept.account_id) == ("text", "+1******0188", account_id)
    assert sender.deliver(list(ids)) == 0  # sent once: a second delivery sends nothing
    assert len(twilio.seen) == 1
