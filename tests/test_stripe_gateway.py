"""StripeGateway over real HTTP: against localstripe, and against tiny 127.0.0.1 servers
that fail the way networks and processors fail."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from ivr.secret_scan import appears_alone
from payments.card_tokenizer import tokenize_card
from payments.emulator import LocalStripe
from payments.gateway import (
    ActionRequired,
    CardDeclined,
    ChargeResult,
    InvalidPaymentMethod,
    MethodInfo,
    OutcomeUnknown,
    PaymentError,
    ProcessorRejected,
    ProcessorUnavailable,
)
from payments.stripe_gateway import StripeGateway, build_stripe_client

VISA = "4242424242424242"
DECLINED_ON_ATTACH = "4000000000000002"  # localstripe: declined when attached only
DECLINED_ON_CHARGE = "4000000000000341"  # attaches, declines at charge time
NEEDS_3DS = "4000002500003155"


def _card(client: stripe.StripeClient, number: str = VISA) -> MethodInfo:
    return tokenize_card(client, number=number, exp_month=11, exp_year=2031, cvc="123")


def _charge(gateway: StripeGateway, pm: str, key: str, **kwargs: Any) -> ChargeResult:
    args: dict[str, Any] = {
        "amount_cents": 12345,
        "currency": "usd",
        "payment_method_id": pm,
        "customer_id": None,
        "idempotency_key": key,
        "metadata": {"account": "4821"},
    }
    args.update(kwargs)
    return gateway.charge(**args)


def _assert_no_card_data(exc: PaymentError, number: str) -> None:
    text = f"{exc} {exc!r}"
    assert number not in text
    # Standing alone: the processor's random request id may hold any few digits by chance.
    assert not appears_alone(number[-4:], text)
    assert not appears_alone("123", text)  # the CVC


# -- against localstripe -------------------------------------------------------------------


def test_create_customer_keeps_the_account_number_as_metadata(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    customer_id = gateway.create_customer("00048210", idempotency_key="cust-1")
    assert customer_id.startswith("cus_")
    metadata = stripe_client.v1.customers.retrieve(customer_id).metadata
    assert metadata is not None and metadata["account_number"] == "00048210"


def test_tokenized_visa_attaches_with_brand_last4_and_expiry(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    card = _card(stripe_client)
    info = gateway.attach_method(customer, card.processor_id)
    assert info == MethodInfo(card.processor_id, "card", "visa", "4242", 11, 2031)
    assert gateway.describe_method(card.processor_id) == info
    assert stripe_client.v1.payment_methods.retrieve(card.processor_id).customer == customer


def test_detach_removes_the_method_from_the_customer(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    card = _card(stripe_client)
    gateway.attach_method(customer, card.processor_id)
    gateway.detach_method(card.processor_id)
    assert stripe_client.v1.payment_methods.retrieve(card.processor_id).customer is None


def test_charge_succeeds_and_find_charge_resolves_it_by_attempt_id(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    card = _card(stripe_client)
    gateway.attach_method(customer, card.processor_id)
    other = _charge(gateway, card.processor_id, "attempt-41", customer_id=customer)

    result = _charge(gateway, card.processor_id, "attempt-42", customer_id=customer)

    assert result.status == "succeeded"
    assert result.amount_cents == 12345
    assert result.processor_id.startswith("pi_")
    assert result.charge_id is not None and result.charge_id.startswith("ch_")
    intent = stripe_client.v1.payment_intents.retrieve(result.processor_id)
    assert intent.metadata["attempt_id"] == "attempt-42"
    assert intent.metadata["account"] == "4821"
    assert gateway.find_charge("attempt-42", customer_id=customer) == result
    assert gateway.find_charge("attempt-42", customer_id=None) == result
    assert gateway.find_charge("attempt-41", customer_id=customer) == other
    assert gateway.get_charge(result.processor_id) == result


def test_charge_of_an_unsaved_card_has_no_customer(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    card = _card(stripe_client)
    result = _charge(gateway, card.processor_id, "attempt-7")
    assert result.status == "succeeded"
    assert gateway.find_charge("attempt-7", customer_id=None) == result
    assert stripe_client.v1.payment_methods.retrieve(card.processor_id).customer is None


def test_find_charge_of_an_unknown_key_is_none(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    card = _card(stripe_client)
    _charge(gateway, card.processor_id, "attempt-1")
    assert gateway.find_charge("attempt-never", customer_id=None) is None
    assert gateway.find_charge("attempt-1", customer_id=customer) is None  # not this customer's


def test_card_declined_when_saved_has_a_code_and_no_card_data(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    card = _card(stripe_client, DECLINED_ON_ATTACH)
    with pytest.raises(CardDeclined) as caught:
        gateway.attach_method(customer, card.processor_id)
    assert caught.value.code == "card_declined"
    _assert_no_card_data(caught.value, DECLINED_ON_ATTACH)


def test_card_declined_at_charge_time_and_find_charge_says_declined(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    card = _card(stripe_client, DECLINED_ON_CHARGE)
    gateway.attach_method(customer, card.processor_id)
    with pytest.raises(CardDeclined) as caught:
        _charge(gateway, card.processor_id, "attempt-9", customer_id=customer)
    assert caught.value.code == "card_declined"
    _assert_no_card_data(caught.value, DECLINED_ON_CHARGE)
    # The processor's record of the attempt says the same.
    with pytest.raises(CardDeclined) as found:
        gateway.find_charge("attempt-9", customer_id=customer)
    assert found.value.code == "card_declined"
    assert found.value.processor_id is not None and found.value.processor_id.startswith("pi_")


def test_card_that_needs_authentication_cannot_be_charged_by_phone(
    gateway: StripeGateway, stripe_client: stripe.StripeClient
) -> None:
    card = _card(stripe_client, NEEDS_3DS)
    with pytest.raises(ActionRequired) as caught:
        _charge(gateway, card.processor_id, "attempt-3ds")
    assert caught.value.processor_id is not None and caught.value.processor_id.startswith("pi_")


def test_unknown_payment_method_is_invalid(gateway: StripeGateway) -> None:
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    with pytest.raises(InvalidPaymentMethod):
        gateway.attach_method(customer, "pm_doesnotexist")
    with pytest.raises(InvalidPaymentMethod):
        gateway.describe_method("pm_doesnotexist")
    with pytest.raises(InvalidPaymentMethod):
        _charge(gateway, "pm_doesnotexist", "attempt-x")


def test_refund_in_full_and_in_part(gateway: StripeGateway, stripe_client: stripe.StripeClient) -> None:
    card = _card(stripe_client)
    first = _charge(gateway, card.processor_id, "attempt-r1")
    second = _charge(gateway, card.processor_id, "attempt-r2")

    full = gateway.refund(first.processor_id, amount_cents=None, idempotency_key="refund-1")
    part = gateway.refund(second.processor_id, amount_cents=2000, idempotency_key="refund-2")

    assert full.processor_id.startswith("re_") and full.status == "succeeded"
    assert full.amount_cents == 12345
    assert part.amount_cents == 2000


def test_bad_api_key_is_rejected_without_showing_the_key(localstripe: LocalStripe) -> None:
    localstripe.flush()
    key = "pk_test_notasecretkey42"  # localstripe wants an sk_ key: answers 401
    gateway = StripeGateway(build_stripe_client(key, localstripe.base_url, max_network_retries=0))
    with pytest.raises(ProcessorRejected) as caught:
        gateway.create_customer("1001", idempotency_key="cust-1001")
    assert "HTTP 401" in str(caught.value)
    assert key not in f"{caught.value} {caught.value!r} {gateway!r}"


def test_money_must_be_whole_positive_cents(gateway: StripeGateway) -> None:
    for amount in (0, -5, 12.5, True):
        with pytest.raises(ValueError):
            _charge(gateway, "pm_x", "attempt-v", amount_cents=amount)
    with pytest.raises(ValueError):
        _charge(gateway, "pm_x", "attempt-v", metadata={"attempt_id": "another"})


# -- tiny servers on 127.0.0.1 that fail ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _SilentServer:
    """Accepts connections, reads nothing, answers nothing (a processor that hangs)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = int(self.listener.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self.first_accepted = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)
            self.first_accepted.set()

    def stop_listening(self) -> None:
        # shutdown() wakes the accept() in the thread; close() alone may not.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join()

    def close(self) -> None:
        self.stop_listening()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[_SilentServer]:
    server = _SilentServer()
    yield server
    server.close()


@dataclass
class _Recorded:
    method: str
    path: str
    idempotency_key: str | None


@dataclass
class _ProxyState:
    upstream_port: int
    fail_next: int = 0  # answer this many requests with a 500 before forwarding
    requests: list[_Recorded] = field(default_factory=list)


class _ProxyHandler(BaseHTTPRequestHandler):
    """Records each request, then answers 500 or forwards it to localstripe."""

    server: _ProxyServer

    def _handle(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state.requests.append(
            _Recorded(self.command, self.path, self.headers.get("Idempotency-Key"))
        )
        if state.fail_next > 0:
            state.fail_next -= 1
            self._answer(500, json.dumps({"error": {"type": "api_error"}}).encode())
            return
        upstream = http.client.HTTPConnection("127.0.0.1", state.upstream_port, timeout=5)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            self._answer(response.status, response.read())
        finally:
            upstream.close()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _ProxyState) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.state = state


@pytest.fixture
def proxy(localstripe: LocalStripe) -> Iterator[tuple[_ProxyState, str]]:
    localstripe.flush()
    state = _ProxyState(upstream_port=localstripe.port)
    server = _ProxyServer(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_nothing_listening_is_processor_unavailable() -> None:
    client = build_stripe_client("sk_test_x", f"http://127.0.0.1:{_free_port()}", max_network_retries=0)
    with pytest.raises(ProcessorUnavailable):
        _charge(StripeGateway(client), "pm_x", "attempt-1")


def test_no_answer_after_sending_a_charge_is_outcome_unknown(silent_server: _SilentServer) -> None:
    client = build_stripe_client(
        "sk_test_x", f"http://127.0.0.1:{silent_server.port}", max_network_retries=0, timeout=0.5
    )
    with pytest.raises(OutcomeUnknown):
        _charge(StripeGateway(client), "pm_x", "attempt-1")


def test_no_answer_to_a_read_is_processor_unavailable(silent_server: _SilentServer) -> None:
    client = build_stripe_client(
        "sk_test_x", f"http://127.0.0.1:{silent_server.port}", max_network_retries=0, timeout=0.5
    )
    with pytest.raises(ProcessorUnavailable):
        StripeGateway(client).get_charge("pi_x")


def test_a_retry_that_cannot_connect_does_not_hide_an_earlier_unanswered_try(
    silent_server: _SilentServer,
) -> None:
    """First try sent and unanswered, the retry refused: the charge may still exist."""
    client = build_stripe_client(
        "sk_test_x", f"http://127.0.0.1:{silent_server.port}", max_network_retries=1, timeout=0.5
    )

    def refuse_after_first_try() -> None:
        if silent_server.first_accepted.wait(5):
            silent_server.stop_listening()

    closer = threading.Thread(target=refuse_after_first_try)
    closer.start()
    try:
        with pytest.raises(OutcomeUnknown):
            _charge(StripeGateway(client), "pm_x", "attempt-1")
    finally:
        closer.join()


def test_http_500_on_a_charge_is_outcome_unknown(proxy: tuple[_ProxyState, str]) -> None:
    # https://docs.stripe.com/api/idempotent_requests: a 500 is saved once execution
    # began; it says nothing of whether the charge happened (issue 8, item 10).
    state, url = proxy
    state.fail_next = 1
    client = build_stripe_client("sk_test_x", url, max_network_retries=0)
    with pytest.raises(OutcomeUnknown):
        _charge(StripeGateway(client), "pm_x", "attempt-1")


def test_every_create_sends_our_idempotency_key(proxy: tuple[_ProxyState, str]) -> None:
    state, url = proxy
    client = build_stripe_client("sk_test_x", url, max_network_retries=0)
    gateway = StripeGateway(client)
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    card = _card(client)
    gateway.attach_method(customer, card.processor_id)
    result = _charge(gateway, card.processor_id, "attempt-42", customer_id=customer)
    gateway.refund(result.processor_id, amount_cents=None, idempotency_key="refund-42")

    keys = {(r.method, r.path): r.idempotency_key for r in state.requests}
    assert keys[("POST", "/v1/customers")] == "cust-1001"
    assert keys[("POST", "/v1/payment_intents")] == "attempt-42"
    assert keys[("POST", "/v1/refunds")] == "refund-42"


def test_library_retry_after_a_500_reuses_the_key_and_charges_once(
    proxy: tuple[_ProxyState, str], stripe_client: stripe.StripeClient
) -> None:
    state, url = proxy
    card = _card(stripe_client)
    state.fail_next = 1
    client = build_stripe_client("sk_test_x", url, max_network_retries=1)

    result = _charge(StripeGateway(client), card.processor_id, "attempt-42")

    tries = [r for r in state.requests if (r.method, r.path) == ("POST", "/v1/payment_intents")]
    assert [r.idempotency_key for r in tries] == ["attempt-42", "attempt-42"]
    assert result.status == "succeeded"
    assert len(stripe_client.v1.payment_intents.list().data) == 1
