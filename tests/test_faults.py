"""Issue 5, item 4: faults, over real sockets, with money counted on both sides.

- The processor: a small HTTP proxy on 127.0.0.1 stands in front of localstripe and
  fails the way Stripe and networks do (a 500, a request that never arrives, an answer
  that never comes back). The real ``StripeGateway`` talks to it over HTTP with a short
  timeout. It also plays Stripe's idempotency: a POST repeated with a key already seen
  gets the first answer again (localstripe ignores keys), so a retry is what it would
  be in production. Each test asserts the processor's record, the ledger and what the
  caller heard.
- The database (PostgreSQL): its connections are terminated between two steps of a call;
  then it is cut off entirely (a TCP proxy in front of it stops), and comes back.
- A gunicorn worker is killed with SIGKILL while confirms are in flight, under load.
- SMTP down during a paid call.

Every wait is bounded; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import pytest
import stripe
import structlog
from flask import Flask
from sqlalchemy import Engine, select, text
from twilio.request_validator import RequestValidator

from db.models import Payment
from ivr import create_app
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from ivr.softphone import GatherPrompt, HttpTransport, KeyPress, TransportError, walk
from ivr.softphone.keys import HANG_UP
from ivr.softphone.pay import ScriptedCards, TwilioPayEmulator
from payments.card_tokenizer import tokenize_card
from payments.emulator import LocalStripe
from payments.stripe_gateway import StripeGateway, build_stripe_client
from tests.conftest import POSTGRES_URL, TEST_ENV
from tests.fakes import FakeClock
from tests.ledger_checks import books, processor_charges
from tests.members import PIN, Member, add_members
from tests.server_process import GunicornServer
from tests.stripe_fixtures import TEST_API_KEY
from tests.twilio_requests import RawCall

CALLER = "+12025550143"
CONFIRM_STEP = 6
PAID = b"Your confirmation number is"
NOT_CHARGED = b"You have not been charged."
UNKNOWN = b"We could not confirm your payment. Do not pay again"
APOLOGY = b"We cannot finish your call right now."
CHARGE_PATH = "/v1/payment_intents"
CLIENT_TIMEOUT = 1.0  # seconds: the processor client's timeout in these tests

postgres_only = pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(POSTGRES_URL is None, reason="SECUREPAY_TEST_POSTGRES_URL is not set"),
            ],
        )
    ],
)


# -- a processor that fails ------------------------------------------------------------

Fault = Literal[
    "forward",
    "500_before",  # answers 500, never forwards: not charged
    "500_after",  # forwards (the charge happens), then answers 500
    "drop_before",  # holds the request past the client's timeout, never forwards, hangs up
    "hold_after",  # forwards (the charge happens), withholds the answer past the timeout
]


@dataclass
class StripeProxy:
    """An HTTP proxy in front of localstripe: one fault per charge request (``POST
    /v1/payment_intents``), in order, then ``forward``; or every request failed with a 500."""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    fail_everything: bool = False
    hold_every_charge: bool = False  # with no fault left: "hold_after" for every charge
    hold_seconds: float = CLIENT_TIMEOUT + 0.5
    charge_keys: list[str] = field(default_factory=list)  # idempotency key of each charge POST
    replayed: int = 0
    holding: dict[int, str] = field(default_factory=dict)  # held now: client port -> path
    _answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StripeProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                proxy._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle(self)

            def do_DELETE(self) -> None:  # noqa: N802
                proxy._handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        serve.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # waits for the request threads (held ones too)
            self._server = None

    def wait_holding(self, count: int, timeout: float) -> list[int]:
        """Wait until ``count`` requests are held at once; the client ports of those held."""
        with self._lock:
            self._lock.wait_for(lambda: len(self.holding) >= count, timeout=timeout)
            return list(self.holding)

    # -- one request -------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(request.path).path
        is_charge = request.command == "POST" and path == CHARGE_PATH
        key = request.headers.get("Idempotency-Key") if request.command == "POST" else None
        if self.fail_everything:
            self._answer(request, 500, _stripe_error())
            return
        fault: Fault = "forward"
        with self._lock:
            if is_charge:
                self.charge_keys.append(key or "")
            earlier = self._answers.get(key) if key else None
            if earlier is not None:
                self.replayed += 1
            elif is_charge and self.faults:
                fault = self.faults.pop(0)
            elif is_charge and self.hold_every_charge:
                fault = "hold_after"
        if earlier is not None:  # Stripe answers a key it has seen with its first answer
            self._answer(request, *earlier)
            return
        if fault == "500_before":
            self._answer(request, 500, _stripe_error())
            return
        if fault == "drop_before":
            self._hold(request)
            request.close_connection = True
            return
        status, answer = self._forward(request, body)
        if key:
            with self._lock:
                self._answers.setdefault(key, (status, answer))
        if fault == "500_after":
            self._answer(request, 500, _stripe_error())
            return
        if fault == "hold_after":
            self._hold(request)
        self._answer(request, status, answer)

    def _hold(self, request: BaseHTTPRequestHandler) -> None:
        port = int(request.client_address[1])
        with self._lock:
            self.holding[port] = request.path
            self._lock.notify_all()
        time.sleep(self.hold_seconds)
        with self._lock:
            self.holding.pop(port, None)

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, bytes]:
        upstream = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=10)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        try:
            conn.request(request.command, request.path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            request.send_header("Connection", "close")
            request.end_headers()
            request.wfile.write(body)
        except OSError:  # the client gave up (timed out, or its worker was killed)
            pass
        request.close_connection = True


def _stripe_error() -> bytes:
    return json.dumps({"error": {"type": "api_error", "message": "An unknown error occurred"}}).encode()


@pytest.fixture
def stripe_proxy(localstripe: LocalStripe) -> Iterator[StripeProxy]:
    proxy = StripeProxy(localstripe.base_url).start()
    yield proxy
    proxy.stop()


def through(app: Flask, proxy: StripeProxy, *, retries: int) -> None:
    """The app's processor client goes through ``proxy`` with a short timeout."""
    client = build_stripe_client(
        TEST_API_KEY, proxy.base_url, max_network_retries=retries, timeout=CLIENT_TIMEOUT
    )
    app.extensions[EXTENSION_KEY].gateway = StripeGateway(client)


def at_confirm(app: Flask, client: stripe.StripeClient, caller: str = CALLER) -> RawCall:
    """A call standing at the confirm step, to pay the full balance with a new card
    (tokenized at localstripe directly, as Twilio's <Pay> would)."""
    token = tokenize_card(client, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123")
    call = RawCall(app, caller)
    assert call.start().status_code == 200
    for n, digits in enumerate(["1", PIN, "1", "2"], start=1):
        assert call.step(n, digits).status_code == 200
    response = call.pay(5, token.processor_id)
    assert b"You are about to pay" in response.data, response.data
    return call


def one_charge_recorded(app: Flask, client: stripe.StripeClient) -> None:
    """The processor took the money once, and the ledger says so with the same id."""
    ledger = books(app)
    (charge,) = processor_charges(client)
    (attempt,) = ledger.attempts
    (payment,) = ledger.payments
    assert attempt.status == "succeeded"
    assert payment.processor_id == attempt.processor_id == charge.id
    assert payment.amount_cents == charge.amount == 12345


def nothing_charged(app: Flask, client: stripe.StripeClient, attempt_status: str) -> None:
    ledger = books(app)
    assert [a.status for a in ledger.attempts] == [attempt_status]
    assert not ledger.payments and not processor_charges(client)


# -- the processor answers 500 ---------------------------------------------------------


def test_a_500_is_retried_with_the_same_key_and_charges_once(
    app: Flask, stripe_client: stripe.StripeClient, stripe_proxy: StripeProxy
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    through(app, stripe_proxy, retries=1)
    stripe_proxy.faults = ["500_before"]

    assert PAID in call.step(CONFIRM_STEP, "1").data
    first, retry = stripe_proxy.charge_keys
    assert first == retry == books(app).attempts[0].id  # the attempt id is the key
    one_charge_recorded(app, stripe_client)


def test_a_500_without_a_retry_is_an_unknown_outcome_not_a_not_charged(
    app: Flask, stripe_client: stripe.StripeClient, stripe_proxy: StripeProxy
) -> None:
    # Stripe: a 500's result is indeterminate, and its processing may finish after the
    # lookup (issue 8, item 10). Here it never executed, but the caller cannot be told so.
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    through(app, stripe_proxy, retries=0)
    stripe_proxy.faults = ["500_before"]

    response = call.step(CONFIRM_STEP, "1")
    assert NOT_CHARGED not in response.data and UNKNOWN in response.data
    nothing_charged(app, stripe_client, "unknown")


def test_a_500_after_the_processor_charged_is_found_by_the_lookup(
    app: Flask, stripe_client: stripe.StripeClient, stripe_proxy: StripeProxy
) -> None:
    # Stripe: a 500's result is indeterminate. Here the money was taken.
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    through(app, stripe_proxy, retries=0)
    stripe_proxy.faults = ["500_after"]

    assert PAID in call.step(CONFIRM_STEP, "1").data
    one_charge_recorded(app, stripe_client)


def test_a_processor_failing_every_request_leaves_an_unknown_attempt_and_no_second_try(
    app: Flask, stripe_client: stripe.StripeClient, stripe_proxy: StripeProxy
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    through(app, stripe_proxy, retries=1)
    stripe_proxy.fail_everything = True

    response = call.step(CONFIRM_STEP, "1")
    # Neither charge nor lookup answered: the caller is not told "not charged".
    assert UNKNOWN in response.data and b"<Hangup" in response.data
    nothing_charged(app, stripe_client, "unknown")
    sent = len(stripe_proxy.charge_keys)
    assert b"<Hangup" in call.step(CONFIRM_STEP, "1").data  # the call has ended: a replay
    assert len(stripe_proxy.charge_keys) == sent  # sends nothing to the processor
    nothing_charged(app, stripe_client, "unknown")


# -- the processor times out -----------------------------------------------------------


def test_a_timeout_before_the_charge_reached_the_processor_is_unknown_and_not_charged(
    app: Flask, stripe_client: stripe.StripeClient, stripe_proxy: StripeProxy
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    through(app, stripe_proxy, retries=0)
    stripe_proxy.faults = ["drop_before"]

    started = time.monotonic()
    response = call.step(CONFIRM_STEP, "1")
    assert time.monotonic() - started < 5 * CLIENT_TIMEOUT
    assert UNKNOWN in response.data
    nothing_charged(app, stripe_client, "unknown")


def test_a_timeout_before_the_charge_is_retried_with_the_same_key_and_charges_once(
    app: Flask, stripe_client: stripe.StripeClient, stripe_proxy: StripeProxy
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    through(app, stripe_proxy, retries=1)
    stripe_proxy.faults = ["drop_before"]

    assert PAID in call.step(CONFIRM_STEP, "1").data
    assert len(set(stripe_proxy.charge_keys)) == 1 and len(stripe_proxy.charge_keys) == 2
    one_charge_recorded(app, stripe_client)


def test_a_timeout_after_the_charge_is_resolved_by_the_lookup(
    app: Flask, stripe_client: stripe.StripeClient, stripe_proxy: StripeProxy
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    through(app, stripe_proxy, retries=0)
    stripe_proxy.faults = ["hold_after"]

    assert PAID in call.step(CONFIRM_STEP, "1").data
    assert len(stripe_proxy.charge_keys) == 1
    one_charge_recorded(app, stripe_client)


def test_a_timeout_after_the_charge_is_answered_by_the_retry_with_the_same_key(
    app: Flask, stripe_client: stripe.StripeClient, stripe_proxy: StripeProxy
) -> None:
    # Production's client retries once: the retry carries the same key, and the
    # processor answers it with the first charge instead of charging again.
    add_members(app, Member("10004821", phones=[CALLER]))
    call = at_confirm(app, stripe_client)
    through(app, stripe_proxy, retries=1)
    stripe_proxy.faults = ["hold_after"]

    assert PAID in call.step(CONFIRM_STEP, "1").data
    assert len(stripe_proxy.charge_keys) == 2 and stripe_proxy.replayed == 1
    one_charge_recorded(app, stripe_client)


# -- the database drops, then goes away ------------------------------------------------


@postgres_only
def test_connections_terminated_between_two_steps_are_replaced_and_the_call_goes_on(
    app: Flask, engine: Engine, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = RawCall(app, CALLER)
    call.start()
    assert b"We found the account ending in" in call.step(1, "1").data  # at its PIN step

    with engine.connect() as conn:
        terminated = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )).scalar_one()
    assert terminated >= 1  # the app's pooled connection among them

    response = call.step(2, PIN)  # the call is where it was: at the PIN
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert b"Your balance is" in response.data
    assert b"Your balance is" in call.step(3, "9").data  # and goes on: 9 repeats the menu


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of PostgreSQL: ``stop()`` cuts every connection
    and refuses new ones (the database is down); ``start()`` again on the same port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept, listener)
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


@postgres_only
def test_with_the_database_down_every_webhook_apologizes_and_healthz_is_503(
    engine: Engine, test_env: dict[str, str], clock: FakeClock
) -> None:
    url = engine.url
    relay = TcpProxy(url.port or 5432).start()
    app = create_app(Settings.from_env({
        **test_env,
        "SECUREPAY_DATABASE_URL": url.set(host="127.0.0.1", port=relay.port).render_as_string(False),
    }))
    try:
        add_members(app, Member("10004821", phones=[CALLER]))
        call = RawCall(app, CALLER)
        call.start()
        assert b"Enter your 4-digit PIN." in call.step(1, "1").data
        client = app.test_client()

        relay.stop()  # the database is gone, and its connections with it
        started = time.monotonic()
        answers = [RawCall(app, "+12025550166").start(), call.step(2, PIN), call.status("completed")]
        for response in answers:
            assert response.status_code == 200 and response.mimetype == "text/xml"
            assert response.data.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Response>')
        assert APOLOGY in answers[0].data and APOLOGY in answers[1].data
        assert client.get("/healthz").status_code == 503
        assert time.monotonic() - started < 5  # refused at once: no caller waits on it

        relay.start()  # back, on the same address
        assert client.get("/healthz").status_code == 200
        assert b"Your balance is" in call.step(2, PIN).data  # nothing was lost or half-done
    finally:
        relay.stop()
        app.extensions[EXTENSION_KEY].engine.dispose()


# -- SMTP down -------------------------------------------------------------------------


def test_with_smtp_down_the_payment_is_taken_and_the_receipt_stays_pending(
    test_env: dict[str, str], stripe_client: stripe.StripeClient, localstripe: LocalStripe
) -> None:
    # tests/test_receipts.py proves that send-receipts delivers it once SMTP is back.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    app = create_app(Settings.from_env({
        **test_env, "STRIPE_API_KEY": TEST_API_KEY, "STRIPE_API_BASE": localstripe.base_url,
        "SECUREPAY_SMTP_HOST": "127.0.0.1", "SECUREPAY_SMTP_PORT": str(port),
    }))
    services = app.extensions[EXTENSION_KEY]
    services.gateway = StripeGateway(stripe_client)
    try:
        add_members(app, Member("10004821", phones=[CALLER], email="rivera@example.com"))
        call = at_confirm(app, stripe_client)
        with structlog.testing.capture_logs() as logs:
            assert PAID in call.step(CONFIRM_STEP, "1").data
            services.notifier.wait(timeout=10)
        one_charge_recorded(app, stripe_client)
        receipt_events = [entry["event"] for entry in logs if entry["event"].startswith("receipt_")]
        assert receipt_events == ["receipt_claimed", "receipt_failed"]
        with services.unit_of_work() as uow:
            assert uow.session.scalar(select(Payment.receipt_sent_at)) is None  # pending: retried later
    finally:
        services.notifier.shutdown()
        services.engine.dispose()


# -- a gunicorn worker killed during confirms, under load -------------------------------

CALLS = 10
WORKERS, THREADS = 2, 4


class UpToConfirm:
    """The caller's keys up to the confirm prompt; there the walk stops (the test sends
    the confirm itself, so that it can race it, kill it and replay it)."""

    def __init__(self) -> None:
        self.script = ["1", PIN, "1", "2"]
        self.confirm_url: str | None = None

    def keys_for(self, gather: GatherPrompt) -> KeyPress:
        if self.script:
            return self.script.pop(0)
        self.confirm_url = gather.url
        return HANG_UP


@dataclass
class HttpCall:
    server: GunicornServer
    sid: str
    caller: str
    confirm_path: str

    def confirm(self) -> bytes | None:
        """Press 1 at the confirm prompt; None when no answer came (the worker died)."""
        params = {
            "CallSid": self.sid, "AccountSid": "AC" + "0" * 32, "From": self.caller,
            "To": "+12025550199", "CallStatus": "in-progress", "Digits": "1",
        }
        url = TEST_ENV["SECUREPAY_PUBLIC_URL"] + self.confirm_path
        signature = RequestValidator(TEST_ENV["TWILIO_AUTH_TOKEN"]).compute_signature(url, params)
        try:
            reply = HttpTransport(self.server.base_url, timeout=15).post(
                self.confirm_path, params, {"X-Twilio-Signature": signature}
            )
        except TransportError:
            return None
        assert reply.status == 200 and reply.content_type.startswith("text/xml"), reply
        return reply.body.encode()


def _to_confirm(server: GunicornServer, client: stripe.StripeClient, caller: str) -> HttpCall:
    keys = UpToConfirm()
    transcript = walk(
        HttpTransport(server.base_url, timeout=15),
        auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
        public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"],
        from_number=caller,
        keys=keys,
        pay=TwilioPayEmulator(client, ScriptedCards(["4242424242424242 12/30 123"])),
        status_path=None,  # the call is not over: its confirm comes next
    )
    assert "You are about to pay" in transcript.said_text(), transcript
    assert keys.confirm_url is not None
    path = keys.confirm_url.removeprefix(TEST_ENV["SECUREPAY_PUBLIC_URL"])
    return HttpCall(server, transcript.call_sid, caller, path)


def _process_with_connection_from(port: int, pids: list[int]) -> int:
    """Which of ``pids`` owns the TCP connection whose local port is ``port`` (Linux /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return pid
    raise AssertionError(f"no worker of {pids} has a connection from port {port}")


@postgres_only
def test_a_worker_killed_during_confirms_under_load_loses_no_payment_and_doubles_none(
    app: Flask, test_env: dict[str, str], stripe_client: stripe.StripeClient,
    stripe_proxy: StripeProxy, localstripe: LocalStripe, tmp_path: Path,
) -> None:
    callers = [f"+120255501{n:02d}" for n in range(10, 10 + CALLS)]
    add_members(app, *(Member(f"2000{n:04d}", phones=[caller]) for n, caller in enumerate(callers)))
    env = {**test_env, "STRIPE_API_KEY": TEST_API_KEY, "STRIPE_API_BASE": stripe_proxy.base_url}
    server = GunicornServer(env, log_path=tmp_path / "gunicorn.log", workers=WORKERS, threads=THREADS)
    deadline = time.monotonic() + 50
    with server, ThreadPoolExecutor(max_workers=CALLS) as pool:
        calls = list(pool.map(lambda caller: _to_confirm(server, stripe_client, caller), callers))
        stripe_proxy.hold_seconds = 3.0  # a slow processor: under the app's 4 s timeout
        stripe_proxy.hold_every_charge = True
        original = server.worker_pids()

        first = [pool.submit(call.confirm) for call in calls]
        # Kill the worker whose charge the processor is sitting on: it dies mid-charge.
        held = stripe_proxy.wait_holding(WORKERS, timeout=20)
        assert held, server.log()
        victim = _process_with_connection_from(held[0], original)
        os.kill(victim, signal.SIGKILL)
        answers = [future.result(timeout=max(1.0, deadline - time.monotonic())) for future in first]
        lost = [call for call, answer in zip(calls, answers, strict=True) if answer is None]
        assert lost, "the kill should have cut some confirms off"
        server.wait_for_workers(WORKERS, excluding=original, timeout=max(1.0, deadline - time.monotonic()))

        stripe_proxy.hold_every_charge = False
        replays = list(pool.map(lambda call: call.confirm(), lost))  # Twilio retries, or 1 again
        assert all(answer is not None and PAID in answer for answer in replays), replays
        assert all(PAID in answer for answer in answers if answer is not None)
        log = server.log()
    assert f"(pid:{victim}) was sent SIGKILL" in log

    charges = processor_charges(stripe_client)
    ledger = books(app)
    attempts = {attempt.id: attempt for attempt in ledger.attempts}
    paid = {payment.attempt_id for payment in ledger.payments}
    per_attempt = [str(charge.metadata["attempt_id"]) for charge in charges]
    # None doubled: one processor charge per attempt at most, one attempt per call.
    assert len(per_attempt) == len(set(per_attempt))
    assert len({attempt.call_sid for attempt in ledger.attempts}) == len(ledger.attempts)
    # None lost: each charge has its payment, or an attempt left for reconcile to report.
    for attempt_id in per_attempt:
        assert attempt_id in paid or attempts[attempt_id].status in ("pending", "unknown")
    # And here every call was answered in the end: each paid once, on both sides.
    assert len(charges) == len(ledger.payments) == CALLS
    assert {a.status for a in ledger.attempts} == {"succeeded"}

    cli_env = {**env, "STRIPE_API_BASE": localstripe.base_url, "PATH": os.environ.get("PATH", "")}
    securepay = str(Path(sys.executable).parent / "securepay")
    reconcile = subprocess.run(  # noqa: S603
        [securepay, "payments", "reconcile"], env=cli_env, capture_output=True, text=True, timeout=30
    )
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
    commands = subprocess.run(  # noqa: S603
        [securepay, "--help"], env=cli_env, capture_output=True, text=True, timeout=30, check=True
    ).stdout
    if "audit" in commands.split("Commands:")[-1]:  # the audit trail (issue 4) where it has landed
        verify = subprocess.run(  # noqa: S603
            [securepay, "audit", "verify"], env=cli_env, capture_output=True, text=True, timeout=30
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
