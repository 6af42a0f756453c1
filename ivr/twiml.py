"""Renders a flow ``Reply`` as TwiML with the twilio library.

What Twilio's documentation asks of each verb, and where it is done here:

- every URL handed to Twilio is absolute, built on ``SECUREPAY_PUBLIC_URL`` (which may
  carry a path, ``https://coop.example/securepay``): a root-relative URL would be resolved
  against the host alone and lose that path;
- ``<Say>`` speaks en-US or es-US, with the voice the utility chose per language
  (https://www.twilio.com/docs/voice/twiml/say);
- ``<Pay>`` has its own language, one Twilio lists for card payments (es-US is not one:
  Spanish is es-MX or es-ES), our own wording in nested ``<Prompt>``s said by the same
  voice as the rest of the call, ``validCardTypes``, no ``method`` (not an attribute of
  ``<Pay>``), and a ``<Redirect>`` to the same step: after ``maxAttempts`` Twilio may go
  on to the next verb instead of requesting the action
  (https://www.twilio.com/docs/voice/twiml/pay, .../pay/prompt);
- ``<Dial>`` names an ``action``: when member services is busy or does not answer,
  Twilio asks the step again with ``DialCallStatus`` (https://www.twilio.com/docs/voice/twiml/dial).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from twilio.twiml.voice_response import Gather, Pay, Prompt, VoiceResponse

from ivr.flows.reply import Reply, Speech
from ivr.flows.speech import language_tag

STEP_PATH = "/ivr/step"


@dataclass(frozen=True)
class Style:
    """How this deployment's TwiML reads: its public base URL, voices and <Pay> languages."""

    base_url: str
    voices: Mapping[str, str] = field(default_factory=dict)  # "en"/"es" -> Twilio voice
    pay_languages: Mapping[str, str] = field(default_factory=lambda: {"en": "en-US", "es": "es-MX"})

    def step_url(self, step: int) -> str:
        """Where the next request of the call goes; only the step number, never a secret."""
        return f"{self.base_url.rstrip('/')}{STEP_PATH}?n={step}"

    def say(self, parent: VoiceResponse | Gather | Prompt, speech: Speech) -> None:
        voice = self.voices.get(speech.language)
        extra = {"voice": voice} if voice else {}
        parent.say(speech.text, language=language_tag(speech.language), **extra)


def render(reply: Reply, style: Style) -> str:
    response = VoiceResponse()
    for speech in reply.speech:
        style.say(response, speech)
    url = style.step_url(reply.step)
    if reply.gather is not None:
        spec = reply.gather
        gather = response.gather(
            input="dtmf",
            action=url,
            method="POST",
            num_digits=spec.num_digits,
            finish_on_key=spec.finish_on_key,
            timeout=spec.timeout_seconds,
            action_on_empty_result=True if spec.empty_result else None,
        )
        for speech in spec.speech:
            style.say(gather, speech)
        # No input: Twilio falls through to the next verb; the step hears "no input".
        response.redirect(url, method="POST")
    if reply.pay is not None:
        request = reply.pay
        # Tokenize only (no chargeAmount): the card digits go from the caller's keypad to
        # Twilio and the processor; this service receives a PaymentMethod id.
        pay: Pay = response.pay(
            input="dtmf",
            payment_connector=request.connector,
            token_type="payment-method",  # noqa: S106 - a token kind, not a secret
            max_attempts=request.max_attempts,
            timeout=request.timeout_seconds,
            security_code=True,
            postal_code=False,
            valid_card_types=" ".join(request.card_types),
            language=style.pay_languages[request.language],
            action=url,
        )
        for item in request.prompts:
            extra = {"error_type": item.error_type} if item.error_type else {}
            prompt = pay.prompt(for_=item.step, **extra)
            style.say(prompt, item.speech)
        # After maxAttempts Twilio may go on here instead of requesting the action:
        # the step then hears no result and offers the card again.
        response.redirect(url, method="POST")
    if reply.record is not None:
        # Never during <Pay> (SECURITY 16a): its own step, after the terms were read.
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
        # Verbs after a <Dial action> are never reached: the action's answer goes on.
        response.dial(reply.dial.number, action=url, method="POST")
    elif reply.hangup:
        response.hangup()
    return str(response)


def apology(text: str, language: str = "en", style: Style | None = None) -> str:
    """Valid TwiML for any failure: an apology and a hang-up, never an error page."""
    response = VoiceResponse()
    speech = Speech(text, language)
    if style is not None:
        style.say(response, speech)
    else:
        response.say(text, language=language_tag(language))
    response.hangup()
    return str(response)


def empty() -> str:
    return str(VoiceResponse())
