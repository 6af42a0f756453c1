"""Issue 5, point 5: every answer of every test call is TwiML of the verbs and attributes
we use, checked against ``tests/twiml.xsd`` (Twilio publishes no current schema).

``assert_valid_twiml`` is also used by the hostile-call state machine and the limit
tests. Here: the schema refuses what we must never emit, and whole calls through every
state of the call flow answer only schema-valid TwiML.
"""

from __future__ import annotations

import dataclasses

import pytest
import stripe
import xmlschema
from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent
from ivr.flows.call_flow import CALL_FLOW
from ivr.services import EXTENSION_KEY
from ivr.softphone import FlaskTransport, Softphone
from ivr.softphone.pay import ScriptedCards, TwilioPayEmulator
from payments.gateway import MethodInfo
from tests.conftest import TEST_ENV
from tests.faulty_gateway import FaultyGateway
from tests.ledger_checks import DECLINES_AT_CHARGE, VISA
from tests.members import NEW_PIN, PIN, SSN, Member, add_members
from tests.twiml_checks import CheckingTransport, assert_valid_twiml

# -- the schema itself -----------------------------------------------------------------

# Every URL is absolute, on the public URL, which may carry a path (issue 8, point 3).
STEP3 = "https://coop.example/securepay/ivr/step?n=3"
STEP6 = "https://coop.example/securepay/ivr/step?n=6"
GATHER = (
    f'<Gather action="{STEP3}" finishOnKey="" input="dtmf" method="POST" numDigits="1" '
    'timeout="6"><Say language="en-US">For English, press 1.</Say></Gather>'
    f'<Redirect method="POST">{STEP3}</Redirect>'
)
PAY_ATTRIBUTES = (
    f'action="{STEP6}" input="dtmf" language="en-US" maxAttempts="2" '
    'paymentConnector="Default" postalCode="false" securityCode="true" timeout="10" '
    'tokenType="payment-method" validCardTypes="visa mastercard amex discover"'
)
PROMPTS = (
    '<Prompt for="payment-card-number"><Say language="es-US" voice="Polly.Lupe-Neural">'
    "Ingrese el número de su tarjeta.</Say></Prompt>"
    '<Prompt errorType="invalid-card-type" for="payment-card-number"><Say language="es-US">'
    "Aceptamos Visa.</Say></Prompt>"
)
AFTER_PAY = f'<Redirect method="POST">{STEP6}</Redirect>'
DIAL = f'<Dial action="{STEP6}" method="POST">+12025550100</Dial>'


def _pay(old: str = "", new: str = "", extra: str = "", prompts: str = "", after: str = AFTER_PAY) -> str:
    attributes = PAY_ATTRIBUTES.replace(old, new) if old else PAY_ATTRIBUTES
    return f"<Pay {attributes}{extra}>{prompts}</Pay>{after}"


def _doc(inner: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'


@pytest.mark.parametrize("inner", [
    "",
    GATHER,
    '<Say language="es-US">Gracias.</Say><Hangup />',
    '<Say language="en-US">Please enter your card.</Say>' + _pay(),
    _pay('language="en-US"', 'language="es-MX"', prompts=PROMPTS),
    _pay('language="en-US"', 'language="es-ES"'),
    '<Say language="en-US">Transferring.</Say>' + DIAL,
    GATHER.replace('finishOnKey=""', 'finishOnKey="#"').replace('numDigits="1" ', ""),
    GATHER.replace("https://coop.example/securepay", "http://127.0.0.1:5000"),
    '<Say language="en-US" voice="Polly.Joanna-Neural">Hi.</Say><Hangup />',
    '<Say language="es-US" voice="Google.es-US-Neural2-A">Hola.</Say><Hangup />',
])
def test_the_schema_accepts_what_we_emit(inner: str) -> None:
    assert_valid_twiml(_doc(inner))


@pytest.mark.parametrize("inner, why", [
    ('<Play>https://example.test/a.mp3</Play>', "a verb we never use"),
    ('<Say language="fr-FR">Bonjour.</Say>', "a language we do not speak"),
    ('<Say language="en-US" voice="alice">Hi.</Say>', "a basic voice, unfit for production"),
    ('<Say language="en-US" loop="2">Hi.</Say>', "an attribute we never set"),
    ('<Say language="en-US"> </Say>', "nothing said"),
    (GATHER.replace('input="dtmf"', 'input="dtmf speech"'), "speech input"),
    (GATHER.replace('numDigits="1"', 'numDigits="0"'), "zero digits"),
    (GATHER.replace('finishOnKey=""', 'finishOnKey="*"'), "star as the finish key"),
    (GATHER.replace(f'action="{STEP3}" ', ""), "a Gather without an action loops"),
    (GATHER.replace('method="POST" numDigits', 'method="GET" numDigits'), "GET puts keys in URLs"),
    (GATHER.replace(f'action="{STEP3}"', f'action="{STEP3}&amp;pin=0473"'), "a secret in a URL"),
    (GATHER.replace(f"{STEP3}</Redirect>", "https://evil.test/</Redirect>"), "a foreign redirect"),
    (GATHER.replace("https://coop.example/securepay", ""), "a root-relative URL loses the path"),
    (GATHER.split("<Redirect")[0], "a Gather with nowhere to fall through"),
    (_pay(extra=' chargeAmount="12.34"'), "a charge amount: <Pay> only tokenizes"),
    (_pay("payment-method", "reusable"), "another token type"),
    (_pay('maxAttempts="2"', 'maxAttempts="3"'), "a third card try"),
    (_pay('postalCode="false"', 'postalCode="true"'), "the postal code asked"),
    (_pay(extra=' statusCallback="/ivr/pay"'), "an attribute we never set"),
    # https://www.twilio.com/docs/voice/twiml/pay: no method attribute; card languages
    # en-AU, en-CA, en-GB, en-IN, en-US, es-ES, es-MX, fr-CA, fr-FR, de-DE, it-IT.
    (_pay(extra=' method="POST"'), "method is not an attribute of <Pay>"),
    (_pay('language="en-US"', 'language="es-US"'), "es-US is not a <Pay> language"),
    (_pay('validCardTypes="visa mastercard amex discover"', 'validCardTypes="visa diners"'),
     "not a Twilio card type"),
    (_pay(' validCardTypes="visa mastercard amex discover"', ""), "Twilio's default refuses Discover"),
    (_pay(after=""), "after maxAttempts Twilio may go on: nothing to catch the caller"),
    # https://www.twilio.com/docs/voice/twiml/pay/prompt: for and errorType values
    (_pay(prompts='<Prompt for="card-number"><Say language="en-US">Card.</Say></Prompt>'),
     "not a <Pay> step"),
    (_pay(prompts='<Prompt for="expiration-date" errorType="expired">'
                  '<Say language="en-US">Date.</Say></Prompt>'), "not a <Pay> error type"),
    (_pay(prompts='<Prompt for="expiration-date" />'), "a prompt that says nothing"),
    ('<Dial>member services</Dial>', "not a number"),
    ("<Dial>+12025550100</Dial><Hangup />", "a Dial without an action: busy ends the call"),
    (DIAL + "<Hangup />", "a verb after a <Dial action> is never reached"),
    ('<Hangup /><Say language="en-US">Too late.</Say>', "speech after the hang-up"),
])
def test_the_schema_refuses_what_we_must_never_emit(inner: str, why: str) -> None:
    with pytest.raises((xmlschema.XMLSchemaValidationError, AssertionError)):
        assert_valid_twiml(_doc(inner))


def test_a_non_xml_answer_is_refused() -> None:
    with pytest.raises(AssertionError):
        assert_valid_twiml("<html>500</html>", "text/html")


# -- whole calls through every state ---------------------------------------------------


CALLER = "+12025550143"
STRANGER = "+12025550177"
SHARED = "+12025550188"

# (caller, keys, cards): each script ends where the keys run out (the caller hangs up).
SCRIPTS: list[tuple[str, list[str], tuple[str, ...]]] = [
    # found by caller ID, full balance, new card not saved, confirmation repeated, goodbye
    (CALLER, ["1", PIN, "1", "2", "1", "1", ""], (VISA,)),
    # two accounts on one number, keyed instead, back with *, three wrong PINs
    (SHARED, ["1", "9", "*", "1", "1111", "1", "2222", "1", "3333"], ()),
    # an unknown caller keys three malformed account numbers
    (STRANGER, ["1", "12#", "12#", "12#"], ()),
    # three timeouts at the found account
    (CALLER, ["", "", "", ""], ()),
    # no PIN and no SSN on file, called from elsewhere: referred to member services
    (STRANGER, ["1", "10009999#", "0"], ()),
    # (paid in full above) a card that fails Twilio's checks twice: try again is offered
    (CALLER, ["1", PIN, "2", "10#", "2", "2"], ("4242424242424241 12/30 123",) * 2),
    # Auto Pay (issue 10): enroll with a new card, terms repeated, agreed, the current bill
    # not paid now; then change to the stored card, agree; then cancel, keep, cancel
    (SHARED, ["1", "1", PIN, "4", "1", "9", "1", "2", "4", "1", "1", "1", "4", "2", "2", "2", "1"],
     (VISA,)),
    # Auto Pay with a card that fails Twilio's checks twice: try again is offered
    (SHARED, ["1", "2", PIN, "4", "1", "2"], ("4242424242424241 12/30 123",) * 2),
    # (last: the PIN changes) Spanish, keyed, wrong PIN, forgot it, SSN, new PIN, another
    # amount, card saved with the payment, back to the menu, another amount, a new card
    # (the saved one is offered) declined at the charge, another method, back, transfer.
    # (A card declined at the charge is not saved: Stripe saves it with the payment.)
    (STRANGER, ["2", "10004821#", "1111", "2", SSN, NEW_PIN, NEW_PIN, "2", "25*50#", "1", "1",
                "2", "2", "10#", "8", "2", "1", "1", "*", "0"], (VISA, DECLINES_AT_CHARGE)),
]


def test_whole_calls_through_every_state_answer_only_valid_twiml(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(
        app,
        Member("10004821", phones=[CALLER]),
        Member("10005555", phones=[SHARED]),
        Member("10006666", phones=[SHARED]),
        Member("10009999", phones=[SHARED], pin=None, ssn_last4=""),
    )
    transport = CheckingTransport(FlaskTransport(app))

    def softphone(*cards: str) -> Softphone:
        return Softphone(
            transport, TEST_ENV["TWILIO_AUTH_TOKEN"], TEST_ENV["SECUREPAY_PUBLIC_URL"],
            TwilioPayEmulator(stripe_client, ScriptedCards(cards)),
        )

    for caller, keys, cards in SCRIPTS:
        softphone(*cards).call(caller, keys)
    services = app.extensions[EXTENSION_KEY]
    # Auto Pay with a bank account, its spoken authorization taken by <Record>. (The
    # portal saves a bank account with its mandate; one without is not offered by phone.)
    services.flow_config = dataclasses.replace(services.flow_config, autopay_record_consent=True)
    with app.app_context(), services.unit_of_work() as uow:
        bank = MethodInfo(
            "pm_bank_6789", "bank", "STRIPE TEST BANK", "6789", None, None, mandate_id="mandate_1"
        )
        account = uow.accounts.by_number("10006666")
        assert account is not None
        uow.methods.add(account.id, bank, created_via="portal", now=services.clock.now())
        uow.commit()
    softphone().call(SHARED, ["1", "2", PIN, "4", "1", "1", "1"])
    # The processor times out before charging: the outcome is unknown, the call ends.
    services.gateway = FaultyGateway(services.gateway, ["timeout_before_charge"])
    softphone(VISA).call(CALLER, ["1", NEW_PIN, "2", "10#", "8", "2", "1"])

    with app.app_context(), services.unit_of_work() as uow:
        details = uow.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "state_entered"))
        reached = {CALL_FLOW.start} | {str(detail["to_state"]) for detail in details}
    assert reached == set(CALL_FLOW.states), reached ^ set(CALL_FLOW.states)

