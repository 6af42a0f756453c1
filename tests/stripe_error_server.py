"""A Stripe error server on 127.0.0.1: what localstripe cannot produce, as Stripe documents it.

It stands in front of localstripe and answers the real adapter (the official library,
over real HTTP) with the error bodies and behaviours of Stripe's own pages, for one
request after another as a test scripts them; anything unscripted goes to localstripe.

- https://docs.stripe.com/api/idempotent_requests: for API v1, Stripe saves the status
  code and body of the first request made with an idempotency key *after endpoint
  execution begins*, and answers every retry with that key with it, ``500`` errors
  included. Results are not saved for a request refused before execution: the rate
  limiter runs before the idempotency layer (a ``429``), a request that conflicts with
  one still executing (``409 idempotency_key_in_use``), a key reused with other
  parameters (``400 idempotency_error``). localstripe ignores keys: this server plays
  the idempotency layer for every POST that passes through it.
- https://docs.stripe.com/error-low-level (server errors: the result of a ``500`` is
  indeterminate; the request may or may not have been executed) and
  https://docs.stripe.com/error-codes (``idempotency_key_in_use``, ``rate_limit``,
  ``lock_timeout``, ``card_declined``).
- https://docs.stripe.com/api/errors: an error is ``{"error": {"type", "code",
  "decline_code", "message", "param", "payment_intent", ...}}``; a card error on a
  request involving a PaymentIntent carries the PaymentIntent.

A scripted answer can also be *executed later*: answered now with a ``500`` and handed
to localstripe only when the test calls ``release()``, as a charge whose processing
went on after Stripe's front end gave up (the indeterminate 500).

Every request is recorded (method, path, query, form fields, idempotency key) so that a
test can check what the adapter sent. Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Execution = Literal["none", "before", "later"]


@dataclass(frozen=True)
class Scripted:
    """One answer. ``execute``: ``none`` (refused before execution, localstripe never
    hears of it), ``before`` (localstripe executes it, then this answer is given instead
    of its own), ``later`` (answered now, executed on ``release()``). ``saved``: Stripe
    saves it under the idempotency key (execution began) and replays it to retries."""

    status: int
    body: Mapping[str, Any]
    execute: Execution = "none"
    saved: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


def _error(
    status: int, headers: Mapping[str, str] | None = None, **error: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    return status, {"error": error}, dict(headers or {})


# -- the documented errors -----------------------------------------------------------------


def server_error(execute: Execution = "none") -> Scripted:
    """500 ``api_error``: saved under the key once execution began, replayed to retries."""
    status, body, headers = _error(500, type="api_error", message="An unknown error occurred")
    return Scripted(status, body, execute=execute, saved=execute != "none", headers=headers)


def service_unavailable() -> Scripted:
    """503: Stripe's front end could not take the request (saved: the outcome is Stripe's
    to state, and a retry must not execute it twice)."""
    status, body, headers = _error(503, type="api_error", message="Service temporarily unavailable")
    return Scripted(status, body, saved=True, headers=headers)


def key_in_use() -> Scripted:
    """409 ``idempotency_key_in_use``: a request with this key is still executing."""
    status, body, headers = _error(
        409,
        type="invalid_request_error",
        code="idempotency_key_in_use",
        message="There is currently another in-progress request using this Idempotent Key",
    )
    return Scripted(status, body, headers=headers)


def idempotency_error() -> Scripted:
    """400 ``idempotency_error``: the key was used before with other parameters (the first
    request with the key may well have charged)."""
    status, body, headers = _error(
        400,
        type="idempotency_error",
        message="Keys for idempotent requests can only be used with the same parameters they were "
        "first used with",
    )
    return Scripted(status, body, headers=headers)


def rate_limited() -> Scripted:
    """429 ``rate_limit``: refused before the idempotency layer; nothing was done."""
    status, body, headers = _error(
        429, type="invalid_request_error", code="rate_limit", message="Too many requests"
    )
    return Scripted(status, body, headers=headers)


def lock_timeout() -> Scripted:
    """429 ``lock_timeout``: the object is locked by another request; Stripe asks for a
    retry (``Stripe-Should-Retry: true``)."""
    status, body, headers = _error(
        429,
        {"Stripe-Should-Retry": "true"},
        type="invalid_request_error",
        code="lock_timeout",
        message="This object cannot be accessed right now because another API request or Stripe "
        "process is currently accessing it",
    )
    return Scripted(status, body, headers=headers)


def _intent(
    status: str, *, last_payment_error: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    created = int(time.time())
    intent_id = f"pi_errsrv{created}{threading.get_ident() % 10_000:04d}{_counter()}"
    intent: dict[str, Any] = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 12345,
        "currency": "usd",
        "created": created,
        "customer": None,
        "latest_charge": None,
        "metadata": {},
        "status": status,
        "last_payment_error": last_payment_error,
        "next_action": None,
    }
    intent.update(extra)
    return intent


_count = 0
_count_lock = threading.Lock()


def _counter() -> int:
    global _count
    with _count_lock:
        _count += 1
        return _count


def card_declined(decline_code: str = "insufficient_funds", *, code: str = "card_declined") -> Scripted:
    """402 ``card_error`` carrying the PaymentIntent, as a confirm that was declined."""
    error = {
        "type": "card_error", "code": code, "decline_code": decline_code,
        "message": "Your card was declined.",
    }
    intent = _intent("requires_payment_method", last_payment_error=error)
    status, body, headers = _error(402, payment_intent=intent, **error)
    return Scripted(status, body, saved=True, headers=headers)


def authentication_required() -> Scripted:
    """402 ``authentication_required``: with ``error_on_requires_action`` Stripe fails the
    attempt instead of leaving it in ``requires_action``."""
    return card_declined("authentication_required", code="authentication_required")


def intent_in(status: str, **extra: Any) -> Scripted:
    """200 with a PaymentIntent in ``status`` (``requires_action``, ``processing``,
    ``requires_payment_method`` without an error, ``requires_confirmation``)."""
    if status == "requires_action":
        extra.setdefault("next_action", {"type": "use_stripe_sdk", "use_stripe_sdk": {}})
    return Scripted(200, _intent(status, **extra), saved=True)


# -- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    idempotency_key: str | None
    answered: int


@dataclass
class StripeErrorServer:
    """Scripted answers per ``(method, path)``, in order; then localstripe's own."""

    upstream: str
    scripts: dict[tuple[str, str], list[Scripted]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    refuse_after: int | None = None  # stop listening after this many answers
    _saved: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    _later: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, method: str, path: str, *answers: Scripted) -> None:
        with self._lock:
            self.scripts.setdefault((method, path), []).extend(answers)

    def requests_to(self, method: str, path: str) -> list[Seen]:
        return [seen for seen in self.seen if (seen.method, seen.path) == (method, path)]

    def release(self) -> None:
        """Execute the requests answered before being executed (``execute="later"``)."""
        with self._lock:
            later, self._later = self._later, []
        for method, path, body, headers in later:
            self._forward(method, path, body, headers)

    def start(self) -> StripeErrorServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                outer._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                outer._handle(self)

            def do_DELETE(self) -> None:  # noqa: N802
                outer._handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- one request -------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        split = urllib.parse.urlsplit(request.path)
        method, path = request.command, split.path
        key = request.headers.get("Idempotency-Key") if method == "POST" else None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        with self._lock:
            saved = self._saved.get(key) if key else None
            queue = self.scripts.get((method, path))
            scripted = queue.pop(0) if saved is None and queue else None
        if saved is not None:
            status, answer, extra = saved
            self._record(request, method, path, split.query, body, key, status)
            self._answer(request, status, answer, {**extra, "Idempotent-Replayed": "true"})
            return
        if scripted is None:
            status, answer = self._forward(request.command, request.path, body, headers)
            extra: dict[str, str] = {}
        else:
            if scripted.execute == "before":
                self._forward(request.command, request.path, body, headers)
            elif scripted.execute == "later":
                with self._lock:
                    self._later.append((request.command, request.path, body, headers))
            status, extra = scripted.status, dict(scripted.headers)
            answer = json.dumps(scripted.body).encode()
        if key and (scripted is None or scripted.saved):
            with self._lock:
                self._saved.setdefault(key, (status, answer, extra))
        self._record(request, method, path, split.query, body, key, status)
        self._answer(request, status, answer, extra)
        if self.refuse_after is not None and len(self.seen) >= self.refuse_after:
            self._stop_listening()

    def _stop_listening(self) -> None:
        """Close the listening socket: the next connection is refused (nothing reaches us)."""
        server = self._server
        if server is not None:
            server.shutdown()  # from a request thread: serve_forever runs in another
            server.socket.close()

    def _record(
        self, request: BaseHTTPRequestHandler, method: str, path: str, query: str, body: bytes,
        key: str | None, status: int,
    ) -> None:
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True) if method == "POST" else {}
        seen = Seen(method, path, urllib.parse.parse_qs(query, keep_blank_values=True), form, key, status)
        with self._lock:
            self.seen.append(seen)

    def _forward(
        self, method: str, target: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        upstream = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=10)
        try:
            conn.request(method, target, body=body or None, headers=dict(headers))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    @staticmethod
    def _answer(
        request: BaseHTTPRequestHandler, status: int, body: bytes, headers: Mapping[str, str]
    ) -> None:
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            request.send_header("Request-Id", f"req_errsrv{_counter()}")
            for name, value in headers.items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(body)
        except OSError:  # the client gave up
            pass


@contextmanager
def stripe_error_server(upstream: str) -> Iterator[StripeErrorServer]:
    server = StripeErrorServer(upstream).start()
    try:
        yield server
    finally:
        server.stop()
