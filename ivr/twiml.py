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

A reply is built once per *shape* (the same verbs, attributes, step and languages: all
but the words said) and kept as a template with a marker where each text goes; each
later reply of that shape is the template with its own texts, escaped as ElementTree
escapes them (``&``, ``<``, ``>``), filled in. The bytes are those the library would
write for that reply (tests/test_twiml_templates.py renders both ways and compares).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from twilio.twiml.voice_response import Gather, Pay, Prompt, VoiceResponse

from ivr.flows import reply as replies
from ivr.flows.reply import PayPrompt, PayRequest, Reply, Speech
from ivr.flows.speech import language_tag

STEP_PATH = "/ivr/step"
# Where text number N goes in a template: private-use characters, which neither the
# library nor ElementTree escapes, and no step URL or attribute holds.
_MARK = "\ue000{}\ue001"
_MARKS = re.compile("\ue000([0-9]+)\ue001")
_TEMPLATES_KEPT = 1024  # shapes per style: states times step numbers seen; then start over

# A template: the fixed fragments, and between each two the number of the text that goes there.
Template = tuple[tuple[str, ...], tuple[int, ...]]


@dataclass(frozen=True)
class Style:
    """How this deployment's TwiML reads: its public base URL, voices and <Pay> languages."""

    base_url: str
    voices: Mapping[str, str] = field(default_factory=dict)  # "en"/"es" -> Twilio voice
    pay_languages: Mapping[str, str] = field(default_factory=lambda: {"en": "en-US", "es": "es-MX"})
    templates: dict[Reply, Template] = field(default_factory=dict, compare=False, repr=False)

    def step_url(self, step: int) -> str:
        """Where the next request of the call goes; only the step number, never a secret."""
        return f"{self.base_url.rstrip('/')}{STEP_PATH}?n={step}"

    def say(self, parent: VoiceResponse | Gather | Prompt, speech: Speech) -> None:
        voice = self.voices.get(speech.language)
        extra = {"voice": voice} if voice else {}
        parent.say(speech.text, language=language_tag(speech.language), **extra)


def render(reply: Reply, style: Style) -> str:
    """The TwiML of ``reply``: its shape's template (built on first use) with its texts."""
    texts: list[str] = []
    shape = _shape(reply, texts)
    template = style.templates.get(shape)
    if template is None:
        template = _template(build(shape, style))
        if len(style.templates) >= _TEMPLATES_KEPT:
            style.templates.clear()
        style.templates[shape] = template
    fragments, slots = template
    parts = [fragments[0]]
    for slot, fragment in zip(slots, fragments[1:], strict=True):
        parts.append(_escape_text(texts[slot]))
        parts.append(fragment)
    return "".join(parts)


def _shape(reply: Reply, texts: list[str]) -> Reply:
    """``reply`` with each text said replaced by its marker; the texts go to ``texts``.

    An empty text stays empty: the library writes ``<Say ... />`` for it, not a pair of
    tags around nothing. Every field of the reply's parts is carried over (built field
    by field: ``dataclasses.replace`` would cost more than the rest of ``render``;
    tests/test_twiml_templates.py fails when a part gains a field not carried here).
    """

    def mark(speech: Speech) -> Speech:
        if not speech.text:
            return speech
        texts.append(speech.text)
        return Speech(_MARK.format(len(texts) - 1), speech.language)

    gather, pay = reply.gather, reply.pay
    return Reply(
        step=reply.step,
        speech=tuple(mark(speech) for speech in reply.speech),
        gather=None
        if gather is None
        else replies.Gather(
            speech=tuple(mark(speech) for speech in gather.speech),
            num_digits=gather.num_digits,
            finish_on_key=gather.finish_on_key,
            timeout_seconds=gather.timeout_seconds,
            empty_result=gather.empty_result,
        ),
        pay=None
        if pay is None
        else PayRequest(
            connector=pay.connector,
            max_attempts=pay.max_attempts,
            timeout_seconds=pay.timeout_seconds,
            language=pay.language,
            card_types=pay.card_types,
            prompts=tuple(PayPrompt(p.step, mark(p.speech), p.error_type) for p in pay.prompts),
        ),
        record=reply.record,
        dial=reply.dial,
        hangup=reply.hangup,
    )


def _template(xml: str) -> Template:
    pieces = _MARKS.split(xml)
    return tuple(pieces[0::2]), tuple(int(number) for number in pieces[1::2])


def _escape_text(text: str) -> str:
    """As ElementTree escapes an element's text."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def build(reply: Reply, style: Style) -> str:
    """``reply`` as TwiML, built by the twilio library (what ``render`` keeps as templates)."""
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


@cache
def empty() -> str:
    return str(VoiceResponse())
