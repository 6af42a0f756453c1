"""The walker: plays TwiML the way Twilio does, posting signed webhooks back to the IVR.

One call = one ``walk()``. It starts with ``POST /ivr/voice`` (CallStatus ``ringing``),
plays each verb of each TwiML document in order, follows ``action`` and ``<Redirect>``
URLs, and ends with the status callback (CallStatus ``completed``), as Twilio does.
Only the verbs SecurePay uses are played; anything else stops the walk with an
``Error`` event, as does a reply that is not 200 ``text/xml`` TwiML, so a test sees the
first thing that went wrong instead of a confusing later symptom.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET  # noqa: S405 - parses only the IVR's own replies
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import RequestValidator

from ivr.softphone.keys import KeySource, ScriptedKeys
from ivr.softphone.transcript import (
    CallTranscript,
    Error,
    Event,
    Exchange,
    HungUp,
)
from ivr.softphone.transports import HttpReply, Transport, TransportError
from ivr.softphone.verbs import (
    DIAL_STATUSES,
    END,
    VERBS,
    End,
    Next,
    PayHandler,
    WalkStopped,
    new_sid,
    no_pay_handler,
)

DEFAULT_TO_NUMBER: Final = "+12025550199"
MAX_REQUESTS: Final = 500
Observer = Callable[[Event], None]
"""Sees each event as it happens (the terminal printer)."""

__all__ = ["DEFAULT_TO_NUMBER", "MAX_REQUESTS", "Observer", "PayHandler", "Softphone", "WalkStopped", "walk"]


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
    dial_status: str = "completed"

    def emit(self, event: Event) -> None:
        self.transcript.events.append(event)
        if self.observer is not None:
            self.observer(event)

    def fail(self, message: str, url: str | None = None, status: int | None = None) -> End:
        self.emit(Error(message, url, status))
        return END

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

    def fetch(self, step: Next) -> tuple[str, ET.Element] | None:
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
            self.fail(f"the IVR answered {mimetype or 'no content type'}, not text/xml", step.url, 200)
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
        step: Next | None = Next("POST", voice_url, {**self.base, "CallStatus": "ringing"})
        while step is not None:
            document = self.fetch(step)
            if document is None:
                break
            url, root = document
            outcome = self.play(url, root)
            step = outcome if isinstance(outcome, Next) else None
        self.transcript.final_status = self.final_status
        if status_url is not None:
            params = {
                **self.base,
                "CallStatus": self.final_status,
                "CallDuration": str(round(self.seconds) if self.answered else 0),
            }
            reply = self.request("POST", status_url, params)
            if reply is not None and not 200 <= reply.status < 300:
                self.fail(f"the status callback answered HTTP {reply.status}", status_url, reply.status)
        return self.transcript

    def follow(self, method: str, url: str, params: dict[str, str]) -> Next:
        return Next(method.upper(), url, {**self.base, "CallStatus": "in-progress", **params})

    def play(self, url: str, root: ET.Element) -> Next | End:
        for verb in root:
            handler = VERBS.get(verb.tag)
            if handler is None:
                return self.fail(f"<{verb.tag}> is not a verb this walker plays", url)
            if verb.tag != "Reject":
                self.answered = True
            outcome = handler(self, verb, url)
            if outcome is not None:
                return outcome
        self.emit(HungUp("ivr"))  # end of the document: Twilio hangs up
        return END


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
    dial_status: str = "completed",
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
    if dial_status not in DIAL_STATUSES:
        raise ValueError(f"dial_status must be one of {', '.join(DIAL_STATUSES)}, got {dial_status!r}")
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
        dial_status=dial_status,
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
    dial_status: str = "completed"

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
            dial_status=self.dial_status,
        )
