"""A stand-in for Twilio's Messages endpoint on 127.0.0.1, and the twilio client's own
HTTP-client hook pointed at it, so the library's real request can be checked.

Modeled on Twilio's Message resource (POST
``/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded ``To``, ``From`` or
``MessagingServiceSid``, ``Body``; HTTP Basic auth with the Account SID and auth token,
or an API key SID and secret; a 201 with the message's JSON, or an error body
``{"code", "message", "more_info", "status"}``):
https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
and https://www.twilio.com/docs/usage/requests-to-twilio (authentication, errors).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

TWILIO_API = "https://api.twilio.com"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str
    form: dict[str, str]


@dataclass(frozen=True)
class Answer:
    status: int
    code: int | None = None
    message: str = ""


# Twilio's own words for the refusals a caller hears about (https://www.twilio.com/docs/api/errors/NNNNN)
INVALID_NUMBER = Answer(400, 21211, "Invalid 'To' Phone Number")
NOT_MOBILE = Answer(400, 21614, "'To' number is not a valid mobile number")
OPTED_OUT = Answer(400, 21610, "Attempt to send to unsubscribed recipient")
TOO_MANY = Answer(429, 20429, "Too Many Requests")
SERVER_ERROR = Answer(500, 20500, "Internal Server Error")
UNAVAILABLE = Answer(503, 20503, "Service Unavailable")


@dataclass
class FakeMessages:
    """What the stand-in received, and how it answers each ``To`` (201 by default)."""

    base_url: str = ""
    seen: list[Seen] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    delay_seconds: float = 0.0


def _handler(state: FakeMessages) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            state.seen.append(Seen("POST", self.path, self.headers.get("Authorization", ""), form))
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            answer = state.answers.get(form.get("To", ""), Answer(201))
            if answer.status == 201:
                body: dict[str, Any] = {
                    "sid": "SM" + uuid.uuid4().hex, "status": "queued", "to": form.get("To"),
                    "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
                    "body": form.get("Body"), "error_code": None,
                }
            else:
                body = {
                    "code": answer.code, "message": answer.message, "status": answer.status,
                    "more_info": f"https://www.twilio.com/docs/errors/{answer.code}",
                }
            data = json.dumps(body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            return None

    return Handler


@contextmanager
def fake_messages() -> Iterator[FakeMessages]:
    """The stand-in, listening on a free port of 127.0.0.1 for the test's length."""
    state = FakeMessages()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class LocalTwilioHttpClient(TwilioHttpClient):
    """The library's own transport, sending what it would send to api.twilio.com to the
    stand-in instead: the request the test sees is the library's real one."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=5)
        self._base_url = base_url

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> Response:
        assert url.startswith(TWILIO_API), url
        return super().request(method, self._base_url + url[len(TWILIO_API):], *args, **kwargs)
