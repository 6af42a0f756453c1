"""The in-process localstripe: loopback only, no file on disk, clean start and stop."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import stripe

from payments.card_tokenizer import tokenize_card
from payments.emulator import EmulatorError, LocalStripe
from payments.stripe_gateway import StripeGateway, build_stripe_client

STOCK_PICKLE = Path("/tmp/localstripe.pickle")  # noqa: S108 - the path localstripe writes


def _accepts(host: str, port: int, family: socket.AddressFamily = socket.AF_INET) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True


def _pickle_state() -> tuple[int, int] | None:
    try:
        stat = STOCK_PICKLE.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def test_emulator_listens_on_loopback_address_only(localstripe: LocalStripe) -> None:
    assert localstripe.base_url == f"http://127.0.0.1:{localstripe.port}"
    assert _accepts("127.0.0.1", localstripe.port)
    # Another loopback address, and IPv6: a socket bound to every interface would answer.
    assert not _accepts("127.0.0.2", localstripe.port)
    if socket.has_ipv6:
        assert not _accepts("::1", localstripe.port, socket.AF_INET6)


def test_emulator_writes_no_pickle_file(
    localstripe: LocalStripe, stripe_client: stripe.StripeClient
) -> None:
    before = _pickle_state()
    gateway = StripeGateway(stripe_client)
    customer = gateway.create_customer("1001", idempotency_key="cust-1001")
    card = tokenize_card(stripe_client, number="4242424242424242", exp_month=12, exp_year=2031, cvc="123")
    gateway.attach_method(customer, card.processor_id)
    localstripe.flush()
    assert _pickle_state() == before


def test_flush_forgets_everything(localstripe: LocalStripe, stripe_client: stripe.StripeClient) -> None:
    customer = StripeGateway(stripe_client).create_customer("1002", idempotency_key="cust-1002")
    localstripe.flush()
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.customers.retrieve(customer)


def test_stop_closes_the_port_and_ends_the_thread() -> None:
    threads_before = set(threading.enumerate())
    emulator = LocalStripe().start()
    port = emulator.port
    client = build_stripe_client("sk_test_stop", emulator.base_url, max_network_retries=0)
    StripeGateway(client).create_customer("1003", idempotency_key="cust-1003")  # keep-alive open
    emulator.stop()
    assert set(threading.enumerate()) <= threads_before
    assert not _accepts("127.0.0.1", port)
    emulator.stop()  # idempotent
    with pytest.raises(EmulatorError):
        emulator.base_url  # noqa: B018


def test_context_manager_starts_and_stops() -> None:
    with LocalStripe() as emulator:
        port = emulator.port
        assert _accepts("127.0.0.1", port)
    assert not _accepts("127.0.0.1", port)


def test_a_second_start_is_refused(localstripe: LocalStripe) -> None:
    with pytest.raises(EmulatorError):
        localstripe.start()


def test_port_in_use_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            LocalStripe(port=taken.getsockname()[1]).start()

