"""The walker: plays TwiML the way Twilio does, posting signed webhooks back to the IVR.

One call = one ``walk()``. It starts with ``POST /ivr/voice`` (CallStatus ``ringing``),
plays each verb of each TwiML document in order, follows ``action`` and ``<Redirect>``
URLs, and ends with the status callback (CallStatus ``completed``), as Twilio does.
Only the verbs SecurePay uses are played; anything else stops the walk with an
``Error`` event, as does a reply that is not 200 ``text/xml`` TwiML, so a test sees the
first thing that went wrong instead of a confusing later symptom.
"""

from __future__ import annotations

import secrets
import uuid
import xml.etree.ElementTree as ET  # noqa: S405 - parses only the IVR's own replies
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode, urljoin, urlsplit

from twilio.request_validator import RequestValidator

from ivr.softphone.keys import HANG_UP, GatherPrompt, KeySource, ScriptedKeys
from ivr.softphone.transcript import (
    CallTranscript,
    Dialed,
    Error,
    Event,
    Exchange,
    Gathered,
    HungUp,
    Paid,
    Paused,
    Played,
    Redirected,
    Rejected,
    Said,
)
from ivr.softphone.transports import HttpReply, Transport, TransportError

DEFAULT_TO_NUMBER: Final = "+12025550199"
MAX_REQUESTS: Final = 500
DIAL_SECONDS: Final = 30
"""Simulated length of a ``<Dial>``ed conversation, for ``CallDuration``."""

PayHandler = Callable[[dict[str, str]], dict[str, str]]
"""Plays Twilio's part in ``<Pay>``: gets the element's attributes, returns the parameters
Twilio would post to its ``action`` (``{"Result": "success", "PaymentToken": "pm_..."}``)."""

Observer = Callable[[Event], None]


class WalkStopped(Exception):
    """Raised by a pay handler (or a key source) to end the walk with an ``Error`` event."""


def no_pay_handler(attributes: dict[str, str]) -> dict[str, str]:
    """The default: SecurePay's card step cannot be walked without saying what Twilio returns."""
    raise WalkStopped("this walker has no <Pay> handler: pass pay=... to walk()")


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class _Next:
    method: str
    url: str
    params: dict[str, str]


class _End:
    """The call is over (hang-up, end of document, or an error already recorded)."""


_END = _End()
_Step = _Next | _End | None  # None: go on with the next verb


@dataclass
class _Walk:
    transport: Transport
    validator: RequestValidator
    public_url: str
    keys: KeySource
    pay: PayHandler
    observer: Observer | None
    max_requests: int
    base: dict[str, str]
    transcript: CallTranscript
    requests: int = 0
    seconds: float = 0.0
    answered: bool = False
    final_status: str = "completed"

    def emit(self, event: Event) -> None:
        self.transcript.events.append(event)
        if self.observer is not None:
            self.observer(event)

    def fail(self, message: str, url: str | None = None, status: int | None = None) -> _End:
        self.emit(Error(message, url, status))
        return _END

    # -- HTTP -------------------------------------------------------------------------

    def _path_of(self, url: str) -> str | None:
        """The path and query the transport sends, or None when ``url`` is not the IVR's."""
        target, base = urlsplit(url), urlsplit(self.public_url)
        prefix = base.path.rstrip("/")
        if (
            target.scheme.lower() != base.scheme.lower()
            or target.netloc.lower() != base.netloc.lower()
            or not (target.path == prefix or target.path.startswith(prefix + "/"))
        ):
            return None
        path = target.path[len(prefix) :] or "/"
        return path + (f"?{target.query}" if target.query else "")

    def request(self, method: str, url: str, params: dict[str, str]) -> HttpReply | None:
        """Sign and send one webhook; record it. None (and an ``Error``) if it failed."""
        path = self._path_of(url)
        if path is None:
            self.fail(f"{url} is not on the IVR's public URL {self.public_url}: not called", url)
            return None
        if method == "GET":
            glue = "&" if "?" in url else "?"
            url, path = url + glue + urlencode(params), path + glue + urlencode(params)
        signed = {} if method == "GET" else params
        headers = {
            "X-Twilio-Signature": str(self.validator.compute_signature(url, signed)),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1 (securepay softphone)",
        }
        try:
            if method == "GET":
                reply = self.transport.get(path, headers)
            else:
                reply = self.transport.post(path, params, headers)
        except TransportError as exc:
            self.transcript.exchanges.append(Exchange(method, url, signed, 0, ""))
            self.fail(f"the IVR could not be reached: {exc}", url)
            return None
        self.transcript.exchanges.append(Exchange(method, url, signed, reply.status, reply.body))
        return reply

    def fetch(self, step: _Next) -> tuple[str, ET.Element] | None:
        """Request a TwiML document: its URL and ``<Response>`` root, or None on an error."""
        if step.method not in ("GET", "POST"):
            self.fail(f"method {step.method!r} is neither GET nor POST", step.url)
            return None
        if self.requests >= self.max_requests:
            self.fail(f"more than {self.max_requests} requests in one call: does the IVR loop?")
            return None
        self.requests += 1
        reply = self.request(step.method, step.url, step.params)
        if reply is None:
            return None
        if reply.status != 200:
            self.fail(f"the IVR answered HTTP {reply.status}", step.url, reply.status)
            return None
        mimetype = reply.content_type.split(";")[0].strip().lower()
        if mimetype != "text/xml":
            self.fail(
                f"the IVR answered {mimetype or 'no content type'}, not text/xml", step.url, 200
            )
            return None
        try:
            # Our own server's output (or a test fixture's), never a third party's.
            root = ET.fromstring(reply.body)  # noqa: S314
        except ET.ParseError as exc:
            self.fail(f"the IVR answered malformed XML: {exc}", step.url, 200)
            return None
        if root.tag != "Response":
            self.fail(f"the TwiML root is <{root.tag}>, not <Response>", step.url, 200)
            return None
        return step.url, root

    # -- the call ---------------------------------------------------------------------

    def run(self, voice_url: str, status_url: str | None) -> CallTranscript:
        step: _Next | None = _Next("POST", voice_url, {**self.base, "CallStatus": "ringing"})
        while step is not None:
            document = self.fetch(step)
            if document is None:
                break
            url, root = document
            outcome = self.play(url, root)
            step = outcome if isinstance(outcome, _Next) else None
        self.transcript.final_status = self.final_status
        if status_url is not None:
            params = {
                **self.base,
                "CallStatus": self.final_status,
                "CallDuration": str(round(self.seconds) if self.answered else 0),
            }
            reply = self.request("POST", status_url, params)
            if reply is not None and not 200 <= reply.status < 300:
                self.fail(
                    f"the status callback answered HTTP {reply.status}", status_url, reply.status
                )
        return self.transcript

    def follow(self, method: str, url: str, params: dict[str, str]) -> _Next:
        return _Next(method.upper(), url, {**self.base, "CallStatus": "in-progress", **params})

    def play(self, url: str, root: ET.Element) -> _Next | _End:
        for verb in root:
            handler = _VERBS.get(verb.tag)
            if handler is None:
                return self.fail(f"<{verb.tag}> is not a verb this walker plays", url)
            if verb.tag != "Reject":
                self.answered = True
            outcome = handler(self, verb, url)
            if outcome is not None:
                return outcome
        self.emit(HungUp("ivr"))  # end of the document: Twilio hangs up
        return _END

    # -- verbs ------------------------------------------------------------------------

    def say(self, verb: ET.Element, url: str) -> _Step:
        text = " ".join("".join(verb.itertext()).split())
        for _ in range(max(1, _int(verb, "loop", 1))):
            self.emit(Said(text, verb.get("language", "en-US")))
            self.seconds += max(1.0, len(text.split()) * 0.4)
        return None

    def play_audio(self, verb: ET.Element, url: str) -> _Step:
        for _ in range(max(1, _int(verb, "loop", 1))):
            self.emit(Played((verb.text or "").strip()))
            self.seconds += 5
        return None

    def pause(self, verb: ET.Element, url: str) -> _Step:
        seconds = _int(verb, "length", 1)
        self.emit(Paused(seconds))
        self.seconds += seconds
        return None

    def gather(self, verb: ET.Element, url: str) -> _Step:
        try:
            num_digits = _optional_int(verb, "numDigits")
            timeout = _int(verb, "timeout", 5)
        except ValueError as exc:
            return self.fail(f"<Gather>: {exc}", url)
        finish = verb.get("finishOnKey", "#")
        if finish not in ("", *"0123456789*#"):
            return self.fail(f"<Gather>: finishOnKey must be one key or empty, got {finish!r}", url)
        action = urljoin(url, verb.get("action") or url)
        for nested in verb:
            if nested.tag not in ("Say", "Play", "Pause"):
                return self.fail(f"<Gather> cannot hold <{nested.tag}>", url)
            _VERBS[nested.tag](self, nested, url)
        keys = self.keys.keys_for(GatherPrompt(num_digits, finish, timeout, action))
        if keys is HANG_UP:
            self.emit(HungUp("caller"))
            return _END
        assert isinstance(keys, str)  # noqa: S101 - narrows the key source's answer
        digits, finished_on = collect_digits(keys, num_digits, finish)
        self.seconds += len(keys) if keys else timeout
        if not digits and verb.get("actionOnEmptyResult") != "true":
            self.emit(Gathered(keys, None, None))
            return None  # Twilio goes on with the verb after the <Gather>
        self.emit(Gathered(keys, digits, action))
        params = {"Digits": digits, "FinishedOnKey": finished_on}
        return self.follow(verb.get("method", "POST"), action, params)

    def redirect(self, verb: ET.Element, url: str) -> _Step:
        target = urljoin(url, (verb.text or "").strip())
        self.emit(Redirected(target))
        return self.follow(verb.get("method", "POST"), target, {})

    def hangup(self, verb: ET.Element, url: str) -> _Step:
        self.emit(HungUp("ivr"))
        return _END

    def reject(self, verb: ET.Element, url: str) -> _Step:
        reason = verb.get("reason", "rejected")
        self.emit(Rejected(reason))
        if not self.answered:  # Twilio never picks up: the call is busy or unanswered
            self.final_status = "busy" if reason == "busy" else "no-answer"
        return _END

    def dial(self, verb: ET.Element, url: str) -> _Step:
        numbers = [(verb.text or "").strip()] if (verb.text or "").strip() else []
        numbers += [(noun.text or "").strip() for noun in verb]
        if not numbers:
            return self.fail("<Dial> names no number", url)
        for number in numbers:
            self.emit(Dialed(number))
        self.seconds += DIAL_SECONDS
        action = verb.get("action")
        if action is None:
            # The conversation ends with the caller hanging up: nothing more is requested.
            self.emit(HungUp("caller"))
            return _END
        params = {
            "DialCallStatus": "completed",
            "DialCallSid": new_sid("CA"),
            "DialCallDuration": str(DIAL_SECONDS),
        }
        return self.follow(verb.get("method", "POST"), urljoin(url, action), params)

    def pay_verb(self, verb: ET.Element, url: str) -> _Step:
        try:
            params = self.pay(dict(verb.attrib))
        except WalkStopped as exc:
            return self.fail(str(exc), url)
        self.emit(Paid(params))
        self.seconds += 60
        action = urljoin(url, verb.get("action") or url)
        return self.follow(verb.get("method", "POST"), action, params)


_VERBS: dict[str, Callable[[_Walk, ET.Element, str], _Step]] = {
    "Say": _Walk.say,
    "Play": _Walk.play_audio,
    "Pause": _Walk.pause,
    "Gather": _Walk.gather,
    "Redirect": _Walk.redirect,
    "Hangup": _Walk.hangup,
    "Reject": _Walk.reject,
    "Dial": _Walk.dial,
    "Pay": _Walk.pay_verb,
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


def walk(
    transport: Transport,
    *,
    auth_token: str,
    public_url: str,
    from_number: str,
    keys: KeySource | Sequence[str],
    to_number: str = DEFAULT_TO_NUMBER,
    call_sid: str | None = None,
    pay: PayHandler = no_pay_handler,
    observer: Observer | None = None,
    voice_path: str = "/ivr/voice",
    status_path: str | None = "/ivr/status",
    max_requests: int = MAX_REQUESTS,
) -> CallTranscript:
    """Place one simulated inbound call to the IVR behind ``transport`` and play it out.

    ``public_url`` is the IVR's public base URL (``SECUREPAY_PUBLIC_URL``): every request
    is signed for ``public_url + path + query`` with ``auth_token``, exactly as Twilio
    signs it. ``keys`` answers each ``<Gather>`` (a list is a ``ScriptedKeys``).
    ``observer`` sees each event as it happens (the terminal printer). Problems with the
    IVR's replies are recorded in the transcript, never raised: check ``transcript.ok``.
    """
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ValueError(f"public_url must be an http(s) base URL, got {public_url!r}")
    if call_sid is None:
        call_sid = new_sid("CA")
    elif len(call_sid) != 34 or not call_sid.startswith("CA") or not _is_hex(call_sid[2:]):
        raise ValueError(f"a CallSid is CA and 32 lowercase hex digits, got {call_sid!r}")
    public_url = public_url.rstrip("/")
    base = {
        "CallSid": call_sid,
        "AccountSid": new_sid("AC"),
        "From": from_number,
        "To": to_number,
        "Caller": from_number,
        "Called": to_number,
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    walker = _Walk(
        transport=transport,
        validator=RequestValidator(auth_token),
        public_url=public_url,
        keys=keys if not isinstance(keys, Sequence) else ScriptedKeys(keys),
        pay=pay,
        observer=observer,
        max_requests=max_requests,
        base=base,
        transcript=CallTranscript(call_sid),
    )
    status_url = None if status_path is None else public_url + status_path
    return walker.run(public_url + voice_path, status_url)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class Softphone:
    """A walker bound to one IVR, for test fixtures: ``phone.call("+1...", keys=[...])``."""

    transport: Transport
    auth_token: str
    public_url: str
    pay: PayHandler = no_pay_handler

    def call(
        self,
        from_number: str,
        keys: KeySource | Sequence[str] = (),
        *,
        to_number: str = DEFAULT_TO_NUMBER,
        call_sid: str | None = None,
        observer: Observer | None = None,
    ) -> CallTranscript:
        return walk(
            self.transport,
            auth_token=self.auth_token,
            public_url=self.public_url,
            from_number=from_number,
            keys=keys,
            to_number=to_number,
            call_sid=call_sid,
            pay=self.pay,
            observer=observer,
        )
