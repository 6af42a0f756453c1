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
    for number in numbers:
        call.emit(Dialed(number))
    call.seconds += DIAL_SECONDS
    action = verb.get("action")
    if action is None:
        # The conversation ends with the caller hanging up: nothing more is requested.
        call.emit(HungUp("caller"))
        return END
    params = {
        "DialCallStatus": "completed",
        "DialCallSid": new_sid("CA"),
        "DialCallDuration": str(DIAL_SECONDS),
    }
    return call.follow(verb.get("method", "POST"), urljoin(url, action), params)


def pay(call: Call, verb: ET.Element, url: str) -> Step:
    try:
        params = call.pay(dict(verb.attrib))
    except WalkStopped as exc:
        return call.fail(str(exc), url)
    call.emit(Paid(params))
    call.seconds += 60
    action = urljoin(url, verb.get("action") or url)
    return call.follow(verb.get("method", "POST"), action, params)


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
