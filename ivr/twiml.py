"""Renders a flow ``Reply`` as TwiML with the twilio library."""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

from ivr.flows.reply import Reply
from ivr.flows.speech import language_tag

STEP_PATH = "/ivr/step"


def step_url(step: int) -> str:
    """Where the next request of the call goes; only the step number, never a secret."""
    return f"{STEP_PATH}?n={step}"


def render(reply: Reply) -> str:
    response = VoiceResponse()
    for speech in reply.speech:
        response.say(speech.text, language=language_tag(speech.language))
    if reply.gather is not None:
        spec = reply.gather
        url = step_url(reply.step)
        gather = response.gather(
            input="dtmf",
            action=url,
            method="POST",
            num_digits=spec.num_digits,
            finish_on_key=spec.finish_on_key,
            timeout=spec.timeout_seconds,
        )
        for speech in spec.speech:
            gather.say(speech.text, language=language_tag(speech.language))
        # No input: Twilio falls through to the next verb; the step hears "no input".
        response.redirect(url, method="POST")
    if reply.pay is not None:
        # Tokenize only (no chargeAmount): the card digits go from the caller's keypad to
        # Twilio and the processor; this service receives a PaymentMethod id.
        response.pay(
            input="dtmf",
            payment_connector=reply.pay.connector,
            token_type="payment-method",  # noqa: S106 - a token kind, not a secret
            max_attempts=reply.pay.max_attempts,
            timeout=reply.pay.timeout_seconds,
            security_code=True,
            postal_code=False,
            language=language_tag(reply.pay.language),
            action=step_url(reply.step),
            method="POST",
        )
    if reply.record is not None:
        # Never during <Pay> (SECURITY 16a): its own step, after the terms were read.
        url = step_url(reply.step)
        response.record(
            action=url,
            method="POST",
            max_length=reply.record.max_length_seconds,
            timeout=reply.record.timeout_seconds,
            finish_on_key="#",
            play_beep=True,
        )
        response.redirect(url, method="POST")  # no audio: Twilio goes on here, no input
    if reply.dial is not None:
        response.dial(reply.dial.number)
    if reply.hangup or reply.dial is not None:
        response.hangup()
    return str(response)


def apology(text: str, language: str = "en") -> str:
    """Valid TwiML for any failure: an apology and a hang-up, never an error page."""
    response = VoiceResponse()
    response.say(text, language=language_tag(language))
    response.hangup()
    return str(response)


def empty() -> str:
    return str(VoiceResponse())
