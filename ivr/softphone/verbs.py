"""How each TwiML verb is played, as Twilio plays it.

One function per verb: it records what the caller would hear or do, and says what comes
next: ``None`` (the next verb of the document), ``Next`` (a request to the IVR, whose
reply is the next document) or ``END`` (the call is over).
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET  # noqa: S405 - parses only the IVR's own replies
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urljoin

from ivr.softphone.keys import GatherPrompt, KeySource
from ivr.softphone.transcript import (
    Dialed,
    Event,
    Gathered,
    HungUp,
    Paid,
    Paused,
    Played,
    Redirected,
    Rejected,
    Said,
)

DIAL_SECONDS: Final = 30
"""Simulated length of a ``<Dial>``ed conversation, for ``CallDuration``."""

PayHandler = Callable[[dict[str, str]], dict[str, str]]
"""Plays Twilio's part in ``<Pay>``: gets the element's attributes, returns the parameters
Twilio would post to its ``action`` (``{"Result": "success", "PaymentToken": "pm_..."}``)."""


class WalkStopped(Exception):
    """Raised by a pay handler (or a key source) to end the walk with an ``Error`` event."""


class PayFellThrough(Exception):  # noqa: N818 - an outcome, as Twilio names it
    """Raised by a pay handler when Twilio, after ``maxAttempts``, goes on to the verb after
    the ``<Pay>`` instead of requesting its ``action``
    (https://www.twilio.com/docs/voice/twiml/pay, ``maxAttempts``)."""

    def __init__(self, params: dict[str, str]) -> None:
        super().__init__("the <Pay> ended without requesting its action")
        self.params = params


DIAL_STATUSES: Final = ("completed", "busy", "no-answer", "failed", "canceled")
"""``DialCallStatus`` values a walk may be told to play (https://www.twilio.com/docs/voice/twiml/dial)."""

# <Prompt> inside <Pay> (https://www.twilio.com/docs/voice/twiml/pay/prompt).
PROMPT_STEPS: Final = ("payment-card-number", "expiration-date", "security-code", "postal-code",
                       "bank-routing-number", "bank-account-number", "payment-processing")
PROMPT_ERRORS: Final = ("timeout", "invalid-card-number", "invalid-card-type", "invalid-date",
                        "invalid-security-code", "invalid-postal-code", "input-matching-failed",
                        "invalid-bank-routing-number", "invalid-bank-account-number")
PROMPT_CARD_TYPES: Final = ("visa", "mastercard", "amex", "maestro", "discover", "optima", "jcb",
                            "diners-club", "enroute")

def no_pay_handler(attributes: dict[str, str]) -> dict[str, str]:
    """The default: SecurePay's card step cannot be walked without saying what Twilio returns."""
    raise WalkStopped("this walker has no <Pay> handler: pass pay=... to walk()")


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class Next:
    method: str
    url: str
    params: dict[str, str]


class End:
    """The call is over (hang-up, end of document, or an error already recorded)."""


END = End()
Step = Next | End | None  # None: go on with the next verb


class Call(Protocol):
    """What a verb needs of the call being walked (``walker._Walk`` is one)."""

    seconds: float
    answered: bool
    final_status: str
    dial_status: str

    @property
    def keys(self) -> KeySource: ...

    @property
    def pay(self) -> PayHandler: ...

    def emit(self, event: Event) -> None: ...

    def fail(self, message: str, url: str | None = None, status: int | None = None) -> End: ...

    def follow(self, method: str, url: str, params: dict[str, str]) -> Next: ...


def say(call: Call, verb: ET.Element, url: str) -> Step:
    text = " ".join("".join(verb.itertext()).split())
    for _ in range(max(1, _int(verb, "loop", 1))):
        call.emit(Said(text, verb.get("language", "en-US")))
        call.seconds += max(1.0, len(text.split()) * 0.4)
    return None


def play(call: Call, verb: ET.Element, url: str) -> Step:
    for _ in range(max(1, _int(verb, "loop", 1))):
        call.emit(Played((verb.text or "").strip()))
        call.seconds += 5
    return None


def pause(call: Call, verb: ET.Element, url: str) -> Step:
    seconds = _int(verb, "length", 1)
    call.emit(Paused(seconds))
    call.seconds += seconds
    return None


def gather(call: Call, verb: ET.Element, url: str) -> Step:
    try:
        num_digits = _optional_int(verb, "numDigits")
        timeout = _int(verb, "timeout", 5)
    except ValueError as exc:
        return call.fail(f"<Gather>: {exc}", url)
    finish = verb.get("finishOnKey", "#")
    if finish not in ("", *"0123456789*#"):
        return call.fail(f"<Gather>: finishOnKey must be one key or empty, got {finish!r}", url)
    action = urljoin(url, verb.get("action") or url)
    for nested in verb:
        if nested.tag not in ("Say", "Play", "Pause"):
            return call.fail(f"<Gather> cannot hold <{nested.tag}>", url)
        VERBS[nested.tag](call, nested, url)
    try:
        keys = call.keys.keys_for(GatherPrompt(num_digits, finish, timeout, action))
    except WalkStopped as exc:
        return call.fail(str(exc), url)
    if not isinstance(keys, str):  # HANG_UP
        call.emit(HungUp("caller"))
        return END
    digits, finished_on = collect_digits(keys, num_digits, finish)
    call.seconds += len(keys) if keys else timeout
    if not digits and verb.get("actionOnEmptyResult") != "true":
        call.emit(Gathered(keys, None, None))
        return None  # Twilio goes on with the verb after the <Gather>
    call.emit(Gathered(keys, digits, action))
    params = {"Digits": digits, "FinishedOnKey": finished_on}
    return call.follow(verb.get("method", "POST"), action, params)


def redirect(call: Call, verb: ET.Element, url: str) -> Step:
    target = urljoin(url, (verb.text or "").strip())
    call.emit(Redirected(target))
    return call.follow(verb.get("method", "POST"), target, {})


def hangup(call: Call, verb: ET.Element, url: str) -> Step:
    call.emit(HungUp("ivr"))
    return END


def reject(call: Call, verb: ET.Element, url: str) -> Step:
    reason = verb.get("reason", "rejected")
    call.emit(Rejected(reason))
    if not call.answered:  # Twilio never picks up: the call is busy or unanswered
        call.final_status = "busy" if reason == "busy" else "no-answer"
    return END


def dial(call: Call, verb: ET.Element, url: str) -> Step:
    numbers = [(verb.text or "").strip()] if (verb.text or "").strip() else []
    numbers += [(noun.text or "").strip() for noun in verb]
    if not numbers:
        return call.fail("<Dial> names no number", url)
    status = call.dial_status
    for number in numbers:
        call.emit(Dialed(number, status))
    talked = status == "completed"
    call.seconds += DIAL_SECONDS if talked else _int(verb, "timeout", 30)
    action = verb.get("action")
    if action is None:
        if not talked:  # nobody answered: Twilio goes on with the next verb
            return None
        # The conversation ends with the caller hanging up: nothing more is requested.
        call.emit(HungUp("caller"))
        return END
    params = {
        "DialCallStatus": status,
        "DialCallSid": new_sid("CA"),
        "DialCallDuration": str(DIAL_SECONDS if talked else 0),
    }
    return call.follow(verb.get("method", "POST"), urljoin(url, action), params)


def pay(call: Call, verb: ET.Element, url: str) -> Step:
    if "method" in verb.attrib:
        return call.fail("<Pay> has no method attribute (its action is always POSTed)", url)
    heard = _prompts_heard(call, verb, url)
    if heard is None:
        return END
    for said in heard:
        call.emit(said)
        call.seconds += max(1.0, len(said.text.split()) * 0.4)
    try:
        params = call.pay(dict(verb.attrib))
    except WalkStopped as exc:
        return call.fail(str(exc), url)
    except PayFellThrough as ended:
        call.emit(Paid(ended.params))
        call.seconds += 60
        return None  # Twilio goes on with the verb after the <Pay>
    call.emit(Paid(params))
    call.seconds += 60
    action = urljoin(url, verb.get("action") or url)
    return call.follow("POST", action, params)


def _prompts_heard(call: Call, verb: ET.Element, url: str) -> list[Said] | None:
    """The ``<Prompt>``s of a ``<Pay>``, checked as Twilio documents them; what a caller
    hears on a first attempt that goes well (the prompts without ``errorType`` or
    ``attempt``, in Twilio's order of the steps). None (and an ``Error``) if one is wrong."""
    heard: dict[str, list[Said]] = {}
    for prompt in verb:
        step = prompt.get("for", "")
        problem = None
        if prompt.tag != "Prompt":
            problem = f"<Pay> cannot hold <{prompt.tag}>"
        elif step not in PROMPT_STEPS:
            problem = f"<Prompt for={step!r}> is not a <Pay> step"
        elif not set(prompt.get("errorType", "").split()) <= set(PROMPT_ERRORS):
            problem = f"<Prompt errorType={prompt.get('errorType')!r}> is not a <Pay> error"
        elif not set(prompt.get("cardType", "").split()) <= set(PROMPT_CARD_TYPES):
            problem = f"<Prompt cardType={prompt.get('cardType')!r}> is not a card type"
        elif any(not a.isdigit() or not 1 <= int(a) <= 10 for a in prompt.get("attempt", "").split()):
            problem = f"<Prompt attempt={prompt.get('attempt')!r}> is not 1 to 10"
        elif any(nested.tag not in ("Say", "Play", "Pause") for nested in prompt) or not len(prompt):
            problem = "a <Prompt> holds <Say>, <Play> or <Pause>, and at least one"
        if problem is not None:
            call.fail(problem, url)
            return None
        if "errorType" in prompt.attrib or "attempt" in prompt.attrib or "cardType" in prompt.attrib:
            continue
        heard.setdefault(step, []).extend(
            Said(" ".join("".join(nested.itertext()).split()), nested.get("language", "en-US"))
            for nested in prompt
            if nested.tag == "Say"
        )
    return [said for step in PROMPT_STEPS for said in heard.get(step, [])]


def record(call: Call, verb: ET.Element, url: str) -> Step:
    """Twilio ``<Record>``: the caller speaks, then presses ``#``; Twilio posts the
    recording's sid, URL and duration and the key to the action
    (https://www.twilio.com/docs/voice/twiml/record#attributes-action)."""
    sid = new_sid("RE")
    seconds = 4
    call.seconds += seconds
    action = urljoin(url, verb.get("action") or url)
    params = {
        "RecordingSid": sid,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/{sid}",
        "RecordingDuration": str(seconds),
        "Digits": "#",
    }
    return call.follow(verb.get("method", "POST"), action, params)


VERBS: dict[str, Callable[[Call, ET.Element, str], Step]] = {
    "Say": say,
    "Play": play,
    "Pause": pause,
    "Gather": gather,
    "Redirect": redirect,
    "Hangup": hangup,
    "Reject": reject,
    "Dial": dial,
    "Pay": pay,
    "Record": record,
}


def _optional_int(verb: ET.Element, name: str) -> int | None:
    raw = verb.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a positive whole number, got {raw!r}")
    return int(raw)


def _int(verb: ET.Element, name: str, default: int) -> int:
    raw = verb.get(name)
    return int(raw) if raw is not None and raw.isdigit() else default


def collect_digits(keys: str, num_digits: int | None, finish_on_key: str) -> tuple[str, str]:
    """``(Digits, FinishedOnKey)`` as Twilio posts them for the keys pressed.

    Collection stops at the finish key (not included) or at ``num_digits`` keys; keys
    pressed after that are not part of this gather. The finish key alone is no input.
    """
    digits = ""
    for key in keys:
        if finish_on_key and key == finish_on_key:
            return digits, finish_on_key
        digits += key
        if num_digits is not None and len(digits) >= num_digits:
            break
    return digits, ""
