"""The real adapter against Stripe's documented errors (issue 8, items 10, 11 and 14).

``tests.stripe_error_server`` answers, over real HTTP, with the bodies Stripe documents
for the cases localstripe cannot produce; the pages are cited there and at each test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe
from flask import Flask

import ivr.flows.charge as charge_flow
from db.payment_reports import AttemptLine
from ivr.services import EXTENSION_KEY
from payments.card_tokenizer import tokenize_card
from payments.emulator import LocalStripe
from payments.gateway import (
    ActionRequired,
    CardDeclined,
    ChargeResult,
    OutcomeUnknown,
    PaymentUnsettled,
    ProcessorUnavailable,
)
from payments.reconcile import reconcile
from payments.stripe_gateway import StripeGateway, build_stripe_client
from tests.ledger_checks import books
from tests.members import PIN, Member, add_members
from tests.stripe_error_server import (
    Scripted,
    StripeErrorServer,
    authentication_required,
    card_declined,
    idempotency_error,
    intent_in,
    key_in_use,
    lock_timeout,
    rate_limited,
    server_error,
    service_unavailable,
    stripe_error_server,
)
from tests.stripe_fixtures import TEST_API_KEY
from tests.twilio_requests import RawCall

CHARGES = ("POST", "/v1/payment_intents")


@pytest.fixture
def errors(localstripe: LocalStripe) -> Iterator[StripeErrorServer]:
    localstripe.flush()
    with stripe_error_server(localstripe.base_url) as server:
        yield server


def _gateway(server: StripeErrorServer, retries: int = 0) -> StripeGateway:
    client = build_stripe_client(TEST_API_KEY, server.base_url, max_network_retries=retries, timeout=2)
    return StripeGateway(client)


def _pm(localstripe: LocalStripe) -> str:
    client = build_stripe_client(TEST_API_KEY, localstripe.base_url, max_network_retries=0)
    card = tokenize_card(client, number="4242424242424242", exp_month=12, exp_year=2031, cvc="123")
    return card.processor_id


def _charge(gateway: StripeGateway, pm: str = "pm_x", key: str = "attempt-1", **kwargs: Any) -> ChargeResult:
    args: dict[str, Any] = {
        "amount_cents": 12345, "currency": "usd", "payment_method_id": pm, "customer_id": None,
        "idempotency_key": key, "metadata": {},
    }
    args.update(kwargs)
    return gateway.charge(**args)


def _charges_at(localstripe: LocalStripe) -> list[stripe.PaymentIntent]:
    client = build_stripe_client(TEST_API_KEY, localstripe.base_url, max_network_retries=0)
    return [pi for pi in client.v1.payment_intents.list({"limit": 100}).data if pi.status == "succeeded"]


# -- 5xx on a write: the outcome is unknown (https://docs.stripe.com/api/idempotent_requests)


@pytest.mark.parametrize("execute", ["none", "before"])
def test_a_500_on_a_charge_is_an_unknown_outcome_whether_or_not_it_executed(
    errors: StripeErrorServer, localstripe: LocalStripe, execute: Any
) -> None:
    # Stripe saves a 500 once execution began and replays it: the answer says nothing
    # about whether the money moved.
    errors.script(*CHARGES, server_error(execute=execute))
    with pytest.raises(OutcomeUnknown):
        _charge(_gateway(errors), _pm(localstripe))


def test_the_library_retry_of_a_500_gets_the_saved_500_and_the_outcome_stays_unknown(
    errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    errors.script(*CHARGES, server_error(execute="before"))
    with pytest.raises(OutcomeUnknown):
        _charge(_gateway(errors, retries=1), _pm(localstripe))
    tries = errors.requests_to(*CHARGES)
    assert [t.answered for t in tries] == [500, 500]  # the retry was answered from the saved result
    assert len({t.idempotency_key for t in tries}) == 1
    assert len(_charges_at(localstripe)) == 1  # the money did move


def test_a_503_on_a_charge_is_an_unknown_outcome(errors: StripeErrorServer) -> None:
    errors.script(*CHARGES, service_unavailable())
    with pytest.raises(OutcomeUnknown):
        _charge(_gateway(errors))


def test_a_500_on_a_read_is_processor_unavailable(errors: StripeErrorServer) -> None:
    errors.script("GET", "/v1/payment_intents/pi_x", server_error())
    with pytest.raises(ProcessorUnavailable):
        _gateway(errors).get_charge("pi_x")


def test_a_500_on_creating_a_customer_is_an_unknown_outcome(errors: StripeErrorServer) -> None:
    errors.script("POST", "/v1/customers", server_error())
    with pytest.raises(OutcomeUnknown):
        _gateway(errors).create_customer("1001", idempotency_key="cus-1001")


def test_an_answered_try_then_a_refused_retry_is_unknown_not_unavailable(
    errors: StripeErrorServer,
) -> None:
    """Item 10: a request that got any HTTP answer was sent, even if the library's retry
    then could not connect."""
    errors.script(*CHARGES, server_error())
    errors.refuse_after = 1
    with pytest.raises(OutcomeUnknown):
        _charge(_gateway(errors, retries=1))
    assert len(errors.requests_to(*CHARGES)) == 1


def test_a_charge_refused_on_every_try_is_processor_unavailable(errors: StripeErrorServer) -> None:
    """Item 11: nothing reached Stripe, so nothing was charged."""
    gateway = _gateway(errors, retries=1)
    errors.stop()
    with pytest.raises(ProcessorUnavailable):
        _charge(gateway)


# -- idempotency answers (https://docs.stripe.com/error-low-level#idempotency) ----------


def test_an_idempotency_error_on_a_charge_is_an_unknown_outcome(errors: StripeErrorServer) -> None:
    # The key was used before with other parameters: that first request may have charged.
    errors.script(*CHARGES, idempotency_error())
    with pytest.raises(OutcomeUnknown):
        _charge(_gateway(errors))


def test_a_key_in_use_is_retried_by_the_library_then_answered_from_the_first_request(
    errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    errors.script(*CHARGES, key_in_use())
    result = _charge(_gateway(errors, retries=1), _pm(localstripe))
    assert result.status == "succeeded"
    assert [t.answered for t in errors.requests_to(*CHARGES)] == [409, 200]


def test_a_key_in_use_without_a_retry_is_an_unknown_outcome(errors: StripeErrorServer) -> None:
    errors.script(*CHARGES, key_in_use())
    with pytest.raises(OutcomeUnknown):
        _charge(_gateway(errors))


# -- 429 (https://docs.stripe.com/error-codes#rate-limit, #lock-timeout) -------------------


def test_a_rate_limit_did_nothing_and_is_processor_unavailable(errors: StripeErrorServer) -> None:
    # The rate limiter runs before the idempotency layer: nothing was executed.
    errors.script(*CHARGES, rate_limited())
    with pytest.raises(ProcessorUnavailable):
        _charge(_gateway(errors))


def test_a_lock_timeout_is_retried_as_stripe_asks_and_charges_once(
    errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    errors.script(*CHARGES, lock_timeout())
    result = _charge(_gateway(errors, retries=1), _pm(localstripe))
    assert result.status == "succeeded"
    assert [t.answered for t in errors.requests_to(*CHARGES)] == [429, 200]
    assert len(_charges_at(localstripe)) == 1


# -- card errors and PaymentIntent states (https://docs.stripe.com/payments/paymentintents/lifecycle)


def test_a_402_card_declined_carries_the_payment_intent_and_the_decline_code(
    errors: StripeErrorServer,
) -> None:
    scripted = card_declined("insufficient_funds")
    errors.script(*CHARGES, scripted)
    with pytest.raises(CardDeclined) as caught:
        _charge(_gateway(errors))
    assert caught.value.code == "insufficient_funds"
    assert caught.value.processor_id == scripted.body["error"]["payment_intent"]["id"]


def test_a_402_authentication_required_is_action_required(errors: StripeErrorServer) -> None:
    errors.script(*CHARGES, authentication_required())
    with pytest.raises(ActionRequired) as caught:
        _charge(_gateway(errors))
    assert caught.value.processor_id is not None and caught.value.processor_id.startswith("pi_")


def test_an_intent_requiring_action_is_action_required(errors: StripeErrorServer) -> None:
    errors.script(*CHARGES, intent_in("requires_action"))
    with pytest.raises(ActionRequired):
        _charge(_gateway(errors))


def test_a_processing_intent_is_accepted_but_not_final(errors: StripeErrorServer) -> None:
    scripted = intent_in("processing")
    errors.script(*CHARGES, scripted)
    result = _charge(_gateway(errors))
    assert result.status == "processing" and result.processor_id == scripted.body["id"]


@pytest.mark.parametrize("status", ["requires_payment_method", "requires_confirmation"])
def test_an_intent_waiting_without_an_error_is_not_a_decline_but_unsettled(
    errors: StripeErrorServer, status: str
) -> None:
    """Item 14: no payment error means nothing was declined; the attempt stays open."""
    scripted = intent_in(status)
    errors.script(*CHARGES, scripted)
    with pytest.raises(PaymentUnsettled) as caught:
        _charge(_gateway(errors))
    assert caught.value.processor_id == scripted.body["id"]
    assert not isinstance(caught.value, CardDeclined)


def test_an_intent_with_a_payment_error_is_still_a_decline(errors: StripeErrorServer) -> None:
    errors.script(*CHARGES, intent_in(
        "requires_payment_method",
        last_payment_error={"type": "card_error", "code": "card_declined", "decline_code": "do_not_honor"},
    ))
    with pytest.raises(CardDeclined) as caught:
        _charge(_gateway(errors))
    assert caught.value.code == "do_not_honor"


# -- the whole call: a 500 on the charge must never lead to a second charge ---------------

CALLER = "+12025550143"
CONFIRM_STEP = 6
PAID = b"Paid, thank you."
NOT_CHARGED = b"You have not been charged."
UNKNOWN = b"We could not confirm your payment. Do not pay again"


def _through(app: Flask, server: StripeErrorServer, retries: int = 1) -> None:
    """The app's processor client goes through ``server``, retrying as production does."""
    client = build_stripe_client(TEST_API_KEY, server.base_url, max_network_retries=retries, timeout=2)
    app.extensions[EXTENSION_KEY].gateway = StripeGateway(client)


def _at_confirm(app: Flask, localstripe: LocalStripe, *, save: bool = False) -> RawCall:
    """A call at the confirm step, paying the full balance with a new card (not saved
    unless ``save``)."""
    call = RawCall(app, CALLER)
    assert call.start().status_code == 200
    # language, PIN (the one account Call Capture found), full balance, save or not
    for n, digits in enumerate(["1", PIN, "1", "1" if save else "2"], start=1):
        assert call.step(n, digits).status_code == 200
    response = call.pay(5, _pm(localstripe))
    assert b"You are about to pay" in response.data, response.data
    return call


def test_a_500_on_the_charge_is_not_told_as_not_charged_and_no_second_charge_follows(
    app: Flask, errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    """Item 10. Stripe's 500 is indeterminate: here the charge went on being processed
    after the front end answered 500 (https://docs.stripe.com/error-low-level#server-errors),
    so the in-call lookup cannot see it yet. Before the fix the member heard "you have
    not been charged", went back to the menu and paid again under a new key: two charges.
    """
    add_members(app, Member("10004821", phones=[CALLER]))
    call = _at_confirm(app, localstripe)
    _through(app, errors)
    errors.script(*CHARGES, server_error(execute="later"))

    response = call.step(CONFIRM_STEP, "1")

    assert NOT_CHARGED not in response.data
    assert UNKNOWN in response.data and b"<Hangup" in response.data
    (attempt,) = books(app).attempts
    assert attempt.status == "unknown"
    # What the member would do next, had they been sent back to the menu: pay again.
    again = call.step(CONFIRM_STEP + 1, "1")
    assert b"<Hangup" in again.data and b"<Pay" not in again.data  # the call has ended
    errors.release()  # Stripe finishes the first charge
    assert len(_charges_at(localstripe)) == 1
    assert len(errors.requests_to(*CHARGES)) == 2  # one try and the library's retry, one key
    assert {t.idempotency_key for t in errors.requests_to(*CHARGES)} == {attempt.id}


def test_a_charge_that_never_reached_stripe_is_not_charged_and_the_menu_comes_back(
    app: Flask, errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    """Item 11: connection refused on every try, and the lookup refused too. The gateway
    knows nothing reached Stripe: "not charged", the attempt failed, the menu again."""
    add_members(app, Member("10004821", phones=[CALLER]))
    call = _at_confirm(app, localstripe)
    _through(app, errors)
    errors.stop()

    response = call.step(CONFIRM_STEP, "1")

    assert b"We could not process your payment. You have not been charged." in response.data
    assert b"<Hangup" not in response.data and b"<Gather" in response.data  # the menu
    (attempt,) = books(app).attempts
    assert attempt.status == "failed"
    assert not _charges_at(localstripe)


def test_a_charge_left_waiting_by_stripe_stays_unsettled_with_its_payment_intent(
    app: Flask, errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    """Item 14: ``requires_payment_method`` without an error is not a decline."""
    add_members(app, Member("10004821", phones=[CALLER]))
    call = _at_confirm(app, localstripe)
    _through(app, errors)
    scripted = intent_in("requires_payment_method")
    errors.script(*CHARGES, scripted)

    response = call.step(CONFIRM_STEP, "1")

    assert b"declined" not in response.data.lower()
    (attempt,) = books(app).attempts
    assert attempt.status == "unknown"
    assert attempt.processor_id == scripted.body["id"]


def test_a_failed_customer_create_lets_the_payment_go_on_unsaved(
    app: Flask, errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    """Item 14: the member asked to save the card, Stripe failed to make the customer."""
    add_members(app, Member("10004821", phones=[CALLER]))
    call = _at_confirm(app, localstripe, save=True)
    _through(app, errors, retries=0)
    errors.script("POST", "/v1/customers", server_error())

    assert PAID in call.step(CONFIRM_STEP, "1").data
    ledger = books(app)
    assert [a.status for a in ledger.attempts] == ["succeeded"] and not ledger.methods
    assert len(_charges_at(localstripe)) == 1


# -- what the adapter refuses to send (https://docs.stripe.com/metadata, /currencies) --------


@pytest.mark.parametrize("metadata", [
    {f"k{n}": "v" for n in range(50)},  # 51 with attempt_id
    {"k" * 41: "v"},
    {"a[b]": "v"},
    {"note": "x" * 501},
])
def test_metadata_beyond_stripes_limits_is_refused_before_sending(
    errors: StripeErrorServer, metadata: dict[str, str]
) -> None:
    with pytest.raises(ValueError) as caught:
        _charge(_gateway(errors), metadata=metadata)
    assert "x" * 20 not in str(caught.value)  # a value is never quoted
    assert not errors.seen


@pytest.mark.parametrize("cents", [49, 100_000_000])
def test_an_amount_stripe_cannot_charge_is_refused_before_sending(
    errors: StripeErrorServer, cents: int
) -> None:
    with pytest.raises(ValueError):
        _charge(_gateway(errors), amount_cents=cents)
    assert not errors.seen


# -- item 12: the in-call lookup, the confirm step's deadline, reconcile's odd lines --------


def test_the_in_call_lookup_is_one_page_listed_since_the_attempt_for_the_customer(
    errors: StripeErrorServer,
) -> None:
    """Search lags writes by up to a minute (https://docs.stripe.com/search): the in-call
    lookup lists (``created[gte]``, ``customer``; https://docs.stripe.com/api/payment_intents/list)
    one page, and never searches."""
    since = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert _gateway(errors).find_charge("attempt-1", customer_id="cus_1", since=since) is None
    (seen,) = errors.seen
    assert (seen.method, seen.path) == ("GET", "/v1/payment_intents")
    assert seen.query["created[gte]"] == [str(int(since.timestamp()) - 300)]
    assert seen.query["customer"] == ["cus_1"] and seen.query["limit"] == ["100"]


def test_a_charge_made_seconds_ago_is_found_by_the_in_call_lookup(
    errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    gateway = _gateway(errors)
    customer = gateway.create_customer("1001", idempotency_key="cus-1001")
    pm = _pm(localstripe)
    gateway.attach_method(customer, pm)
    made = _charge(gateway, pm, key="attempt-7", customer_id=customer)
    _charge(gateway, pm, key="attempt-8", customer_id=customer)
    since = datetime.now(UTC)
    assert gateway.find_charge("attempt-7", customer_id=customer, since=since) == made
    assert gateway.find_charge("attempt-7", customer_id=None, since=since) == made
    assert gateway.find_charge("attempt-9", customer_id=customer, since=since) is None
    assert not [s for s in errors.seen if s.path.endswith("/search")]


def test_a_500_after_the_charge_is_resolved_in_the_call_by_the_listing(
    app: Flask, errors: StripeErrorServer, localstripe: LocalStripe
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = _at_confirm(app, localstripe)
    _through(app, errors)
    errors.script(*CHARGES, server_error(execute="before"))

    assert PAID in call.step(CONFIRM_STEP, "1").data
    (lookup,) = errors.requests_to("GET", "/v1/payment_intents")
    assert "created[gte]" in lookup.query
    assert not [s for s in errors.seen if s.path.endswith("/search")]
    assert len(_charges_at(localstripe)) == 1


def test_a_confirm_step_against_a_hanging_processor_ends_within_its_deadline(
    app: Flask, localstripe: LocalStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 12: customer, charge, retries and lookup fit the step's processor deadline,
    whatever each call's timeouts add up to (here: 2 tries x 2 s read, a pause, then a
    lookup of 2 tries x 2 s, about 9 s without the deadline)."""
    add_members(app, Member("10004821", phones=[CALLER]))
    call = _at_confirm(app, localstripe)
    monkeypatch.setattr(charge_flow, "CONFIRM_PROCESSOR_SECONDS", 3.0)
    with _hanging_server() as port:
        url = f"http://127.0.0.1:{port}"
        client = build_stripe_client(TEST_API_KEY, url, max_network_retries=1, timeout=2)
        app.extensions[EXTENSION_KEY].gateway = StripeGateway(client)
        started = time.monotonic()
        response = call.step(CONFIRM_STEP, "1")
        elapsed = time.monotonic() - started
    assert UNKNOWN in response.data
    assert elapsed < 3.0 + 1.0, elapsed


@contextmanager
def _hanging_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


def _reconcile_line(**fields: Any) -> AttemptLine:
    base: dict[str, Any] = {
        "attempt_id": "attempt-1", "created_at": datetime(2026, 12, 1, tzinfo=UTC),
        "account_number": "10004821",
        "customer_id": None, "amount_cents": 12345, "status": "unknown", "processor_id": None,
        "payment_id": None, "payment_amount_cents": None, "payment_status": None, "confirmation": None,
    }
    base.update(fields)
    return AttemptLine(**base)


def test_reconcile_reports_an_odd_payment_intent_and_a_refused_search_as_lines(
    errors: StripeErrorServer,
) -> None:
    """One odd PaymentIntent or a refused search is a reported line, never an aborted run."""
    errors.script("GET", "/v1/payment_intents/pi_odd", intent_in("requires_capture"))
    refused = Scripted(400, {"error": {"type": "invalid_request_error", "message": "Search is unavailable"}})
    errors.script("GET", "/v1/payment_intents/search", refused)
    lines = [
        _reconcile_line(attempt_id="attempt-odd", processor_id="pi_odd"),
        _reconcile_line(attempt_id="attempt-unsearched"),
        _reconcile_line(attempt_id="attempt-absent"),  # no search refusal left: absent, unpaid: fine
    ]

    report = reconcile(lines, _gateway(errors))

    assert report.checked == 3
    by_attempt = {m.attempt_id: m for m in report.mismatches}
    assert set(by_attempt) == {"attempt-odd", "attempt-unsearched"}
    assert "requires_capture" in by_attempt["attempt-odd"].theirs
    assert "search was refused" in by_attempt["attempt-unsearched"].theirs
