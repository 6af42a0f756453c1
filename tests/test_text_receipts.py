"""Contract 2.7 and 2.11 (changed 2026-12-01): key 3 after a payment texts the receipt.

Through the twilio library's REST client (Messages API), its own HTTP-client hook
pointed at a stand-in for Twilio on 127.0.0.1 (``tests/twilio_messages.py``): the
request checked is the library's real one. Sent after the commit, never holding up the
call, at most once per payment, only to a valid US number; each refusal said plainly
and recorded in the trail; off when ``SECUREPAY_SMS_FROM`` is unset.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe
from flask import Flask
from sqlalchemy import Engine, select

from db.models import AuditEvent
from ivr.logs import configure_logging
from ivr.secret_scan import scan_database, scan_files, scan_text
from ivr.services import EXTENSION_KEY, Services
from ivr.settings import Settings
from ivr.softphone import Softphone
from ivr.softphone.keys import GatherPrompt, KeyPress, ScriptedKeys
from payments.texts import TextReceipts, TwilioTexts
from tests.conftest import TEST_ENV
from tests.ledger_checks import books
from tests.members import PIN, SSN, Member, add_members
from tests.twilio_messages import (
    INVALID_NUMBER,
    NOT_MOBILE,
    OPTED_OUT,
    SERVER_ERROR,
    TOO_MANY,
    UNAVAILABLE,
    Answer,
    FakeMessages,
    LocalTwilioHttpClient,
    fake_messages,
)
from tests.twilio_requests import RawCall
from tests.wallets import store_card

CALLER = "+12025550143"
ACCOUNT_SID = "AC" + "5" * 32
SMS_FROM = "+12025550199"
SERVICE_SID = "MG" + "7" * 32
API_KEY = "SK" + "3" * 32
API_SECRET = "api-key-secret-for-tests"  # noqa: S105 - a test value
PAY_NOW = ["1", PIN, "1"]  # English, the PIN, the one-press offer
TEXT_OFFER = "Press 3 to get it by text message."


@pytest.fixture
def twilio() -> Iterator[FakeMessages]:
    with fake_messages() as fake:
        yield fake


def services_of(app: Flask) -> Services:
    services: Services = app.extensions[EXTENSION_KEY]
    return services


def texts_on(
    app: Flask, fake: FakeMessages, *, sender: str = SMS_FROM, api_key: bool = False
) -> TextReceipts:
    """Texts on, as SECUREPAY_SMS_FROM and TWILIO_ACCOUNT_SID would turn them on, the
    client's HTTP hook pointed at the stand-in."""
    services = services_of(app)
    services.flow_config = dataclasses.replace(services.flow_config, texts_on=True)
    username, password = (API_KEY, API_SECRET) if api_key else (ACCOUNT_SID, TEST_ENV["TWILIO_AUTH_TOKEN"])
    sender_client = TwilioTexts(
        account_sid=ACCOUNT_SID, sender=sender, username=username, password=password,
        http_client=LocalTwilioHttpClient(fake.base_url),
    )
    texter = TextReceipts(sender_client, services.unit_of_work)
    services.texter = texter
    return texter


class WaitingKeys:
    """Scripted keys; before each, the texts under way are let finish (a caller who
    listens a moment), so what the IVR says next can be checked."""

    def __init__(self, keys: list[str], texter: TextReceipts) -> None:
        self._keys = ScriptedKeys(keys)
        self._texter = texter

    def keys_for(self, gather: GatherPrompt) -> KeyPress:
        self._texter.wait()
        return self._keys.keys_for(gather)


def returning(app: Flask, client: stripe.StripeClient, **kwargs: str) -> None:
    add_members(app, Member("10004821", phones=[CALLER], ssn_last4=SSN, **kwargs))  # type: ignore[arg-type]
    store_card(app, client, "10004821")


def trail(app: Flask, name: str) -> list[AuditEvent]:
    with app.app_context(), services_of(app).sessions() as session:
        query = select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def test_three_texts_the_receipt_with_the_librarys_real_request(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    returning(app, stripe_client)
    texter = texts_on(app, twilio)
    call = phone.call(CALLER, WaitingKeys([*PAY_NOW, "3", "1"], texter))
    text = call.said_text()
    assert TEXT_OFFER in text
    assert "Sending the text now." in text
    (seen,) = twilio.seen
    assert (seen.method, seen.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    expected = base64.b64encode(f"{ACCOUNT_SID}:{TEST_ENV['TWILIO_AUTH_TOKEN']}".encode()).decode()
    assert seen.authorization == f"Basic {expected}"
    (payment,) = books(app).payments
    assert seen.form == {
        "To": CALLER,
        "From": SMS_FROM,
        "Body": "Test Valley Electric: payment of $123.45 received on account ending 4821, "
                f"confirmation {payment.confirmation}",
    }
    for secret in (PIN, SSN, "4242424242424242", "10004821"):  # no PIN, SSN, card or full number
        assert secret not in seen.form["Body"]
    (sent,) = trail(app, "text_receipt_sent")
    assert sent.call_sid == call.call_sid and sent.detail["message_sid"].startswith("SM")
    assert sent.detail["payment_id"] == payment.id
    # offered no more once sent: the repeat (key 1) does not offer 3 again
    assert text.rsplit("Your confirmation number is", 1)[1].count(TEXT_OFFER) == 0


def test_a_messaging_service_sid_and_an_api_key_are_used_as_configured(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    returning(app, stripe_client)
    texter = texts_on(app, twilio, sender=SERVICE_SID, api_key=True)
    phone.call(CALLER, WaitingKeys([*PAY_NOW, "3", "1"], texter))
    (seen,) = twilio.seen
    assert seen.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert seen.authorization == "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    assert seen.form["MessagingServiceSid"] == SERVICE_SID and "From" not in seen.form


def test_the_receipt_in_spanish(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    returning(app, stripe_client, language="es")
    texter = texts_on(app, twilio)
    call = phone.call(CALLER, WaitingKeys(["-", PIN, "1", "3", "1"], texter))
    assert "Oprima 3 para recibirlo por mensaje de texto." in call.said_text()
    (seen,) = twilio.seen
    assert seen.form["Body"].startswith(
        "Test Valley Electric: pago de $123.45 recibido en la cuenta que termina en 4821, confirmación "
    )


@pytest.mark.parametrize("answer, said, reason", [
    (INVALID_NUMBER, "Your text receipt could not be sent: this number is not a valid number for texts.",
     "invalid_number"),
    (NOT_MOBILE, "Your text receipt could not be sent: this number cannot take texts.", "not_mobile"),
    (OPTED_OUT, "Your text receipt could not be sent: this number has opted out of our texts.", "opted_out"),
    (TOO_MANY, "Your text receipt could not be sent: the text service is busy. Your payment stands.", "busy"),
    (SERVER_ERROR, "Your text receipt could not be sent: the text service is not answering.", "unavailable"),
    (UNAVAILABLE, "Your text receipt could not be sent: the text service is not answering.", "unavailable"),
])
def test_each_refusal_is_said_plainly_and_recorded_in_the_trail(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages,
    answer: Answer, said: str, reason: str,
) -> None:
    returning(app, stripe_client)
    twilio.answers[CALLER] = answer
    texter = texts_on(app, twilio)
    call = phone.call(CALLER, WaitingKeys([*PAY_NOW, "3", "1", "1"], texter))
    text = call.said_text()
    assert text.count(said) == 1  # said once, at the next prompt
    (refused,) = trail(app, "text_receipt_refused")
    assert refused.success is False
    assert (refused.detail["reason"], refused.detail["error_code"], refused.detail["http_status"]) == (
        reason, answer.code, answer.status,
    )
    assert len(books(app).payments) == 1  # the payment stands


def test_a_refusal_heard_at_goodbye_when_the_caller_waits(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    returning(app, stripe_client)
    twilio.answers[CALLER] = OPTED_OUT
    texter = texts_on(app, twilio)
    call = phone.call(CALLER, WaitingKeys([*PAY_NOW, "3", "-"], texter))
    assert call.last_said() == "Thank you for calling. Goodbye."
    assert "this number has opted out of our texts" in call.said_text()


def test_an_unreachable_twilio_is_said_and_recorded(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    returning(app, stripe_client)
    gone = FakeMessages(base_url="http://127.0.0.1:9")  # nothing listens on the discard port
    texter = texts_on(app, gone)
    call = phone.call(CALLER, WaitingKeys([*PAY_NOW, "3", "1"], texter))
    assert "the text service is not answering" in call.said_text()
    (refused,) = trail(app, "text_receipt_refused")
    assert refused.detail["reason"] == "unavailable"


def test_at_most_one_text_per_payment(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    returning(app, stripe_client)
    texter = texts_on(app, twilio)
    call = phone.call(CALLER, WaitingKeys([*PAY_NOW, "3", "3", "3"], texter))
    assert call.said_text().count("The text was already sent.") == 2
    assert len(twilio.seen) == 1


def test_a_replayed_three_sends_one_text(
    app: Flask, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    returning(app, stripe_client)
    texter = texts_on(app, twilio)
    call = RawCall(app, CALLER)
    call.start()
    for n, digits in enumerate(PAY_NOW, start=1):
        call.step(n, digits)
    first, again = call.step(4, "3"), call.step(4, "3")
    texter.wait()
    assert b"Sending the text now." in first.data and first.data == again.data
    assert len(twilio.seen) == 1


def test_the_text_never_holds_up_the_call(
    app: Flask, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    returning(app, stripe_client)
    twilio.delay_seconds = 3.0  # Twilio slow to answer
    texter = texts_on(app, twilio)
    call = RawCall(app, CALLER)
    call.start()
    for n, digits in enumerate(PAY_NOW, start=1):
        call.step(n, digits)
    started = time.monotonic()
    answer = call.step(4, "3")
    assert time.monotonic() - started < 1.5
    assert b"Sending the text now." in answer.data
    texter.wait()
    assert len(twilio.seen) == 1 and trail(app, "text_receipt_sent")


def test_texts_are_off_when_unset(app: Flask, phone: Softphone, stripe_client: stripe.StripeClient) -> None:
    assert services_of(app).texter is None  # the test settings have no SECUREPAY_SMS_FROM
    returning(app, stripe_client)
    call = phone.call(CALLER, [*PAY_NOW, "3"])
    text = call.said_text()
    assert TEXT_OFFER not in text
    assert "That is not an option." in text  # 3 is not offered: a wrong key


def test_no_text_offered_to_a_number_outside_the_us(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, twilio: FakeMessages
) -> None:
    add_members(app, Member("10004821"))  # keyed in by a caller from abroad
    store_card(app, stripe_client, "10004821")
    texter = texts_on(app, twilio)
    call = phone.call("+442079460018", WaitingKeys(["1", "10004821#", PIN, "1", "3"], texter))
    assert "Paid, thank you." in call.said_text()
    assert TEXT_OFFER not in call.said_text()
    assert not twilio.seen


def test_settings_turn_texts_on_and_refuse_a_bad_sender(test_env: dict[str, str]) -> None:
    from ivr import create_app

    on = {**test_env, "SECUREPAY_SMS_FROM": SMS_FROM, "TWILIO_ACCOUNT_SID": ACCOUNT_SID}
    app = create_app(Settings.from_env(on))
    assert isinstance(services_of(app).texter, TextReceipts) and services_of(app).flow_config.texts_on
    keyed = Settings.from_env({**on, "TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET})
    assert API_SECRET not in repr(keyed)
    for bad in ({"SECUREPAY_SMS_FROM": "+442079460018"}, {"TWILIO_ACCOUNT_SID": ""},
                {"TWILIO_API_KEY": API_KEY}):
        with pytest.raises(ValueError, match="SMS_FROM|ACCOUNT_SID|API_KEY"):
            Settings.from_env({**on, **bad})
    services_of(app).engine.dispose()


def test_a_paid_call_with_its_text_leaves_no_secret_in_message_logs_or_rows(
    app: Flask, engine: Engine, phone: Softphone, stripe_client: stripe.StripeClient,
    twilio: FakeMessages, tmp_path: Path,
) -> None:
    returning(app, stripe_client)
    texter = texts_on(app, twilio)
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        call = phone.call(CALLER, WaitingKeys(["1", "1111", "1", PIN, "1", "3", "1"], texter))
    finally:
        configure_logging("console")
    assert call.ok and len(twilio.seen) == 1
    log_file = tmp_path / "securepay.log"
    log_file.write_text(stream.getvalue())
    secrets = [PIN, "1111", SSN, "4242424242424242"]
    assert scan_database(engine, secrets) + scan_files([log_file], secrets) == []
    assert scan_text(twilio.seen[0].form["Body"], "the text", secrets=secrets) == []
