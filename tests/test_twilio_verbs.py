"""Issue 8, points 1 and 3 to 9: what Twilio's own documentation says our TwiML needs,
played by a softphone as strict as Twilio.

- ``<Pay>``: https://www.twilio.com/docs/voice/twiml/pay (languages for card payments:
  en-AU, en-CA, en-GB, en-IN, en-US, es-ES, es-MX, fr-CA, fr-FR, de-DE, it-IT; not es-US;
  ``validCardTypes`` defaults to visa mastercard amex; after ``maxAttempts`` Twilio may go
  on to the next verb; no ``method`` attribute; ``PaymentError``, ``PayErrorCode`` and
  ``ConnectorError`` posted to the action) and its ``<Prompt>`` noun,
  https://www.twilio.com/docs/voice/twiml/pay/prompt (``for`` and ``errorType``).
- ``<Dial action>``: https://www.twilio.com/docs/voice/twiml/dial (``DialCallStatus``
  completed, busy, no-answer, failed, canceled posted to the action when the dial ends).
- ``<Say voice>``: https://www.twilio.com/docs/voice/twiml/say and .../say/text-speech
  (Polly and Google voices, each of one language).
- Signatures: https://www.twilio.com/docs/usage/security (the URL Twilio requested,
  path and query included, signed with the auth token).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - parsing our own app's TwiML in tests
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import stripe
from flask import Flask
from sqlalchemy import Engine, select

from db.models import AuditEvent
from ivr import create_app
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from ivr.softphone import CallTranscript, Dialed, FlaskTransport, Paid, Said, Softphone
from ivr.softphone.pay import ScriptedCards, TwilioPayEmulator
from payments.emulator import LocalStripe
from payments.stripe_gateway import StripeGateway
from tests.fakes import FakeClock
from tests.ledger_checks import VISA, books
from tests.members import PIN, Member, add_members
from tests.twilio_requests import RawCall, signed_post
from tests.twiml_checks import CheckingTransport

CALLER = "+12025550143"
TOKEN = "test-auth-token"
MENU = "Press 1 to pay the full balance."  # the member has no stored card: no one-press offer
MENU_OPTIONS = (
    "Or press 2 for another amount or method, 3 last payment, 4 Auto Pay, 5 another account, "
    "0 member services."
)
# The account is found by caller ID and goes straight to its PIN: the language, then the PIN.
EN, ES = ["1", PIN], ["2", PIN]
PAY_NEW_CARD = ["1", "2"]  # at the menu: pay in full; a new card (none stored), not saved
PAID = "Paid, thank you. Your confirmation number is "
PAGADO = "Pagado, gracias. Su número de confirmación es "
BAD_CARD = "4242424242424241 12/30 123"  # fails Twilio's Luhn check
DISCOVER = "6011111111111117 12/30 123"
DINERS = "3056930009020004 12/30 123"

AppMaker = Callable[..., Flask]


@pytest.fixture
def make_app(
    test_env: dict[str, str], clock: FakeClock, stripe_client: stripe.StripeClient, localstripe: LocalStripe
) -> Iterator[AppMaker]:
    """``make_app(SECUREPAY_X="...")``: the real app on the test's database with these
    settings added, the processor played by localstripe, the clock the test's."""
    engines: list[Engine] = []

    def make(**env: str) -> Flask:
        settings = Settings.from_env({
            **test_env, "STRIPE_API_KEY": "sk_test_securepay", "STRIPE_API_BASE": localstripe.base_url, **env,
        })
        application = create_app(settings)
        services = application.extensions[EXTENSION_KEY]
        services.clock = clock
        services.gateway = StripeGateway(stripe_client)
        engines.append(services.engine)
        return application

    yield make
    for engine in engines:
        engine.dispose()


def phone(
    app: Flask, stripe_client: stripe.StripeClient, *cards: str, public_url: str = "https://ivr.example.test",
    falls_through: bool = False, dial_status: str = "completed",
) -> Softphone:
    pay = TwilioPayEmulator(stripe_client, ScriptedCards(cards), falls_through=falls_through)
    return Softphone(CheckingTransport(FlaskTransport(app)), TOKEN, public_url, pay, dial_status)


def member() -> Member:
    return Member("10004821", phones=[CALLER])


def pay_element(call: CallTranscript) -> ET.Element:
    body = next(e.body for e in call.exchanges if "<Pay " in e.body)
    found = ET.fromstring(body).find("Pay")  # noqa: S314 - our own app's answer
    assert found is not None
    return found


# -- 1. <Pay language> and our own prompts ----------------------------------------------


def test_a_spanish_caller_can_enter_a_new_card(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    # Twilio answers validation-error for <Pay language="es-US">: the card step failed.
    app = make_app()
    add_members(app, member())
    call = phone(app, stripe_client, VISA).call(CALLER, [*ES, *PAY_NEW_CARD, "1"])
    text = call.said_text()
    assert "Está a punto de pagar 123 dólares con 45 centavos en la cuenta que termina en 4 8 2 1" in text
    assert PAGADO in text
    assert pay_element(call).get("language") == "es-MX"
    # <Say> stays on es-US, the card step's prompts included: one dialect for the call.
    card_number = "Por favor, ingrese el número de su tarjeta, seguido de la tecla numeral."
    assert Said(card_number, "es-US") in call.events
    assert {e.language for e in call.events if isinstance(e, Said)} == {"en-US", "es-US"}


def test_spanish_pay_may_use_es_es(make_app: AppMaker, stripe_client: stripe.StripeClient) -> None:
    app = make_app(SECUREPAY_PAY_LANGUAGE_ES="es-ES")
    add_members(app, member())
    call = phone(app, stripe_client, VISA).call(CALLER, [*ES, *PAY_NEW_CARD, "1"])
    assert pay_element(call).get("language") == "es-ES"
    assert PAGADO in call.said_text()


def test_english_pay_stays_en_us(make_app: AppMaker, stripe_client: stripe.StripeClient) -> None:
    app = make_app()
    add_members(app, member())
    call = phone(app, stripe_client, VISA).call(CALLER, [*EN, *PAY_NEW_CARD])
    assert pay_element(call).get("language") == "en-US"


def test_the_card_step_is_said_in_our_words_and_voice(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app(SECUREPAY_VOICE_ES="Polly.Lupe-Neural")
    add_members(app, member())
    call = phone(app, stripe_client, VISA).call(CALLER, [*ES, *PAY_NEW_CARD])
    pay = pay_element(call)
    prompts = {(p.get("for"), p.get("errorType")): p for p in pay.findall("Prompt")}
    assert set(prompts) == {
        ("payment-card-number", None), ("payment-card-number", "timeout"),
        ("payment-card-number", "invalid-card-number"), ("payment-card-number", "invalid-card-type"),
        ("expiration-date", None), ("expiration-date", "timeout"), ("expiration-date", "invalid-date"),
        ("security-code", None), ("security-code", "timeout"), ("security-code", "invalid-security-code"),
        ("payment-processing", None),
    }
    says = [say for prompt in prompts.values() for say in prompt.findall("Say")]
    assert {(s.get("language"), s.get("voice")) for s in says} == {("es-US", "Polly.Lupe-Neural")}
    card_type = prompts[("payment-card-number", "invalid-card-type")].findtext("Say")
    assert card_type is not None and card_type.startswith(
        "Aceptamos Visa, Mastercard, American Express y Discover."
    )
    # What the caller hears through the card step (a first attempt that goes well):
    heard = [e.text for e in call.events if isinstance(e, Said)]
    start = heard.index("Por favor, ingrese el número de su tarjeta, seguido de la tecla numeral.")
    assert heard[start:start + 4] == [
        "Por favor, ingrese el número de su tarjeta, seguido de la tecla numeral.",
        "Por favor, ingrese la fecha de vencimiento: dos dígitos para el mes "
        "y luego dos dígitos para el año.",
        "Por favor, ingrese el código de seguridad de la tarjeta.",
        "Gracias. Por favor, espere mientras verificamos su tarjeta.",
    ]


# -- 3. absolute action URLs on a public URL with a path --------------------------------


def test_a_public_url_with_a_path_works_through_every_step(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    public = "https://coop.example/securepay"
    app = make_app(SECUREPAY_PUBLIC_URL=public)
    add_members(app, member())
    cards = phone(app, stripe_client, VISA, public_url=public)
    call = cards.call(CALLER, [*EN, *PAY_NEW_CARD, "1"])
    assert call.ok, call.events[-3:]
    text = call.said_text()
    assert "You are about to pay 123 dollars and 45 cents on the account ending in 4 8 2 1" in text
    assert PAID in text
    urls = [e.url for e in call.exchanges]
    assert len(urls) > 5 and all(url.startswith(public + "/ivr/") for url in urls)
    assert all(e.status == 200 for e in call.exchanges)  # every signature checked out


def test_the_step_urls_are_absolute_without_a_public_url(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app(SECUREPAY_PUBLIC_URL="")
    add_members(app, member())
    # Signed for the URL the app itself sees (the transport's base URL).
    transport = CheckingTransport(FlaskTransport(app, base_url="http://127.0.0.1:5000"))
    call = Softphone(transport, TOKEN, "http://127.0.0.1:5000").call(CALLER, EN)
    assert MENU in call.said_text()
    assert all(e.url.startswith("http://127.0.0.1:5000/ivr/") for e in call.exchanges)


# -- 4. a <Redirect> after <Pay> ---------------------------------------------------------


def test_a_pay_that_goes_on_after_max_attempts_lands_in_the_card_retry(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app()
    add_members(app, member())
    cards = phone(app, stripe_client, BAD_CARD, BAD_CARD, VISA, falls_through=True)
    call = cards.call(CALLER, [*EN, *PAY_NEW_CARD, "1", "1"])
    text = call.said_text()
    # Twilio went on to the <Redirect> after <Pay>: the card retry, then the card again.
    assert "That card was not accepted.\nPress 1 to try again, 2 for the menu." in text
    assert PAID in text
    assert [e.params["Result"] for e in call.events if isinstance(e, Paid)] == [
        "too-many-failed-attempts", "success",
    ]


# -- 5. the card types Twilio takes ------------------------------------------------------


def test_discover_is_taken_by_default_and_named(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app()
    add_members(app, member())
    call = phone(app, stripe_client, DISCOVER).call(CALLER, [*EN, *PAY_NEW_CARD])
    assert pay_element(call).get("validCardTypes") == "visa mastercard amex discover"
    assert "with the Discover ending in 1 1 1 7. To confirm, press 1." in call.said_text()


def test_diners_club_when_the_utility_takes_it_is_named(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app(SECUREPAY_CARD_TYPES="visa diners-club")
    add_members(app, member())
    call = phone(app, stripe_client, DINERS).call(CALLER, [*ES, *PAY_NEW_CARD])
    assert pay_element(call).get("validCardTypes") == "visa diners-club"
    assert "con la tarjeta Diners Club que termina en 0 0 0 4." in call.said_text()


def test_a_card_type_the_utility_does_not_take_is_refused_by_twilio(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app(SECUREPAY_CARD_TYPES="visa mastercard")
    add_members(app, member())
    call = phone(app, stripe_client, DISCOVER, DISCOVER).call(CALLER, [*EN, *PAY_NEW_CARD])
    assert "That card was not accepted." in call.said_text()
    assert not books(app).attempts


# -- 6. why a card failed, in the trail --------------------------------------------------


def test_why_a_card_was_not_collected_is_in_the_trail(make_app: AppMaker) -> None:
    app = make_app()
    add_members(app, member())
    call = RawCall(app)
    call.start()
    for n, keys in enumerate([*EN, "1", "2"], start=1):
        call.step(n, keys)
    failed = {
        **call.base, "CallStatus": "in-progress", "Result": "payment-connector-error",
        "PaymentError": "Payment connector failed", "PayErrorCode": "64015",
        "ConnectorError": "Stripe_Connector: No such customer",
    }
    assert b"We cannot take cards right now." in signed_post(app, "/ivr/step?n=5", failed).data
    with app.app_context(), app.extensions[EXTENSION_KEY].unit_of_work() as uow:
        (detail,) = uow.session.scalars(
            select(AuditEvent.detail).where(AuditEvent.event == "card_not_collected")
        )
    assert detail["result"] == "payment-connector-error"
    assert detail["payment_error"] == "Payment connector failed"
    assert detail["pay_error_code"] == "64015"
    assert detail["connector_error"] == "Stripe_Connector: No such customer"


def test_a_pay_twilio_refuses_says_why_in_the_trail(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    # Twilio refuses an attribute it does not know with validation-error (here a card type
    # that is not Twilio's, put past the settings' own check).
    app = make_app()
    services = app.extensions[EXTENSION_KEY]
    services.flow_config = replace(services.flow_config, card_types=("visa", "diners"))
    add_members(app, member())
    pay = TwilioPayEmulator(stripe_client, ScriptedCards([VISA]))
    # (not through the schema check, which refuses the attribute first)
    Softphone(FlaskTransport(app), TOKEN, "https://ivr.example.test", pay).call(
        CALLER, [*EN, *PAY_NEW_CARD]
    )
    with app.app_context(), services.unit_of_work() as uow:
        details = list(uow.session.scalars(
            select(AuditEvent.detail).where(AuditEvent.event == "card_not_collected")
        ))
    assert [d["result"] for d in details] == ["validation-error"]
    assert "validCardTypes" in details[0]["payment_error"]


# -- 7. <Dial action>: member services busy or not answering -----------------------------


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed"])
def test_member_services_not_taking_the_call_brings_the_menu_back(
    make_app: AppMaker, stripe_client: stripe.StripeClient, status: str
) -> None:
    app = make_app()
    add_members(app, member())
    call = phone(app, stripe_client, dial_status=status).call(CALLER, [*EN, "0"])
    assert Dialed("+12025550100", status) in call.events
    after_dial = call.events[call.events.index(Dialed("+12025550100", status)):]
    heard = [e.text for e in after_dial if isinstance(e, Said)]
    # The hours and the number (contract 2.8, issue 9 item 6), then the menu again.
    assert heard[0] == (
        "Member services could not take your call. Hours are Monday through Friday, "
        "from 8 AM to 5 PM. The number is 2 0 2, 5 5 5, 0 1 0 0."
    )
    assert heard[-2:] == [MENU, MENU_OPTIONS]
    assert call.hung_up_by == "caller"  # the keys ran out at the menu: nothing ended the call


def test_member_services_not_answering_in_spanish(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app()
    add_members(app, member())
    call = phone(app, stripe_client, dial_status="no-answer").call(CALLER, [*ES, "0"])
    assert (
        "Servicio al socio no pudo atender su llamada. El horario es de lunes a viernes, "
        "de 8:00 a 17:00. El número es 2 0 2, 5 5 5, 0 1 0 0."
    ) in call.said_text()


def test_a_held_transfer_ends_the_call_as_transferred(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app()
    add_members(app, member())
    call = phone(app, stripe_client).call(CALLER, [*EN, "0"])
    dial = ET.fromstring(next(e.body for e in call.exchanges if "<Dial" in e.body)).find("Dial")  # noqa: S314
    assert dial is not None and dial.get("action", "").startswith("https://ivr.example.test/ivr/step?n=")
    assert call.last_said() == "Thank you for calling. Goodbye."
    with app.app_context(), app.extensions[EXTENSION_KEY].unit_of_work() as uow:
        outcomes = list(uow.session.scalars(
            select(AuditEvent.detail).where(AuditEvent.event == "call_ended")
        ))
    assert [o["outcome"] for o in outcomes] == ["transferred"]


def test_a_caller_who_hangs_up_during_the_transfer_is_transferred(make_app: AppMaker) -> None:
    app = make_app()
    add_members(app, member())
    call = RawCall(app)
    call.start()
    for n, keys in enumerate([*EN, "0"], start=1):
        call.step(n, keys)
    call.status("completed")  # before Twilio requested the <Dial action>
    with app.app_context(), app.extensions[EXTENSION_KEY].unit_of_work() as uow:
        (ended,) = uow.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "call_ended"))
    assert ended["outcome"] == "transferred"


# -- 8. voices ---------------------------------------------------------------------------


def test_the_voices_chosen_say_every_prompt(
    make_app: AppMaker, stripe_client: stripe.StripeClient
) -> None:
    app = make_app(SECUREPAY_VOICE_EN="Polly.Joanna-Neural", SECUREPAY_VOICE_ES="Polly.Lupe-Neural")
    add_members(app, member())
    call = phone(app, stripe_client).call(CALLER, EN)
    voices = {
        (say.get("language"), say.get("voice"))
        for e in call.exchanges
        for say in ET.fromstring(e.body).iter("Say")  # noqa: S314
    }
    assert voices == {("en-US", "Polly.Joanna-Neural"), ("es-US", "Polly.Lupe-Neural")}


# -- 9. token rotation -------------------------------------------------------------------


def test_the_previous_token_is_accepted_while_rotating(make_app: AppMaker) -> None:
    app = make_app(TWILIO_AUTH_TOKEN="new-token-after-rotation", TWILIO_AUTH_TOKEN_PREVIOUS=TOKEN)
    params = {**RawCall(app).base, "CallStatus": "ringing"}
    assert signed_post(app, "/ivr/voice", params, token=TOKEN).status_code == 200
    params = {**RawCall(app).base, "CallStatus": "ringing"}
    assert signed_post(app, "/ivr/voice", params, token="new-token-after-rotation").status_code == 200
    params = {**RawCall(app).base, "CallStatus": "ringing"}
    assert signed_post(app, "/ivr/voice", params, token="some-other-token").status_code == 403


def test_without_a_previous_token_the_old_one_is_refused(make_app: AppMaker) -> None:
    app = make_app(TWILIO_AUTH_TOKEN="new-token-after-rotation")
    params = {**RawCall(app).base, "CallStatus": "ringing"}
    assert signed_post(app, "/ivr/voice", params, token=TOKEN).status_code == 403
