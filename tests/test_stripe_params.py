"""Every request the adapter makes, checked against stripe-python's own typed parameters.

stripe-python ships, for the API version it pins (``stripe.api_version``), one
``TypedDict`` per endpoint (``stripe.params.PaymentIntentCreateParams``, ...): the keys
that endpoint takes, their types and which are required. localstripe accepts what it
knows and ignores or refuses the rest in its own way, so a parameter Stripe would refuse
(an unknown key, a wrong type, a missing field) can pass every other test. Here the
requests are recorded on the wire (``tests.stripe_error_server``, forwarding to
localstripe), decoded from Stripe's form encoding (``a[b]=c``, ``a[0]=c``), and checked
against those types, for every route the adapter uses.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin, get_type_hints

import pytest
import stripe
from flask import Flask
from stripe import params as sp

from payments.card_tokenizer import tokenize_card
from payments.emulator import LocalStripe
from payments.gateway import MandateAcceptance
from payments.stripe_gateway import StripeGateway, build_stripe_client
from tests.stripe_error_server import Seen, StripeErrorServer, stripe_error_server
from tests.stripe_fixtures import TEST_API_KEY

_ID = r"[A-Za-z0-9_]+"
# (method, path pattern) -> the parameters stripe-python types for that endpoint.
ROUTES: list[tuple[str, re.Pattern[str], type]] = [
    ("POST", re.compile(r"/v1/customers"), sp.CustomerCreateParams),
    ("POST", re.compile(r"/v1/payment_methods"), sp.PaymentMethodCreateParams),
    ("POST", re.compile(rf"/v1/payment_methods/{_ID}/attach"), sp.PaymentMethodAttachParams),
    ("POST", re.compile(rf"/v1/payment_methods/{_ID}/detach"), sp.PaymentMethodDetachParams),
    ("GET", re.compile(rf"/v1/payment_methods/{_ID}"), sp.PaymentMethodRetrieveParams),
    ("POST", re.compile(r"/v1/payment_intents"), sp.PaymentIntentCreateParams),
    ("GET", re.compile(r"/v1/payment_intents"), sp.PaymentIntentListParams),
    ("GET", re.compile(r"/v1/payment_intents/search"), sp.PaymentIntentSearchParams),
    ("GET", re.compile(rf"/v1/payment_intents/{_ID}"), sp.PaymentIntentRetrieveParams),
    ("POST", re.compile(r"/v1/refunds"), sp.RefundCreateParams),
    ("POST", re.compile(r"/v1/setup_intents"), sp.SetupIntentCreateParams),
]
# Keys of stripe.RequestOptions: the library's own options, never sent as parameters.
_OPTIONS = set(stripe.RequestOptions.__annotations__)
# Names RequestOptions annotates with but imports for type checkers only.
_LOCALS: dict[str, Any] = {"StripeContext": object, "Mapping": Mapping}


def _hints(typed: type) -> dict[str, Any]:
    return get_type_hints(typed, localns=_LOCALS, include_extras=True)


# -- decoding Stripe's form encoding ---------------------------------------------------------


def decode(fields: Mapping[str, list[str]]) -> dict[str, Any]:
    """``{"metadata[a]": ["1"], "expand[0]": ["x"]}`` -> ``{"metadata": {"a": "1"}, "expand": ["x"]}``."""
    tree: dict[str, Any] = {}
    for name, values in fields.items():
        (value,) = values
        head, _, rest = name.partition("[")
        parts = [head, *re.findall(r"([^\[\]]*)\]", "[" + rest)] if rest else [head]
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(tree)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    decoded = {key: _lists(value) for key, value in node.items()}
    if decoded and all(key.isdigit() for key in decoded):
        return [decoded[key] for key in sorted(decoded, key=int)]
    return decoded


# -- checking against the typed parameters -------------------------------------------------


def violations(params: Mapping[str, Any], typed: type, path: str = "") -> list[str]:
    """What in ``params`` the TypedDict ``typed`` does not allow: unknown keys, values of
    the wrong type, required keys missing."""
    hints = _hints(typed)
    found = [f"{path}{key}: not a parameter" for key in params if key not in hints or key in _OPTIONS]
    found += [f"{path}{key}: required, missing" for key in typed.__required_keys__ - set(params) - _OPTIONS]
    for key, value in params.items():
        if key in hints and key not in _OPTIONS:
            found += _value(value, hints[key], f"{path}{key}")
    return found


def _value(value: Any, hint: Any, path: str) -> list[str]:
    origin = get_origin(hint)
    if origin in (Required, NotRequired):
        return _value(value, get_args(hint)[0], path)
    if hint is Any:
        return []
    if origin in (Union, types.UnionType):
        tries = [_value(value, option, path) for option in get_args(hint)]
        return [] if any(not t for t in tries) else [f"{path}: {value!r} is none of {hint}"]
    if origin is Literal:
        allowed = [str(a) for a in get_args(hint)]
        return [] if value in allowed else [f"{path}: {value!r} not in {allowed}"]
    if _is_typeddict(hint):
        return violations(value, hint, f"{path}.") if isinstance(value, dict) else [f"{path}: not an object"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        (item,) = get_args(hint)
        return [v for n, element in enumerate(value) for v in _value(element, item, f"{path}[{n}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: not a map"]
        _, item = get_args(hint)
        return [v for name, element in value.items() for v in _value(element, item, f"{path}[{name}]")]
    if hint is bool:
        return [] if value in ("true", "false") else [f"{path}: {value!r} is not a boolean"]
    if hint is int:
        whole = isinstance(value, str) and re.fullmatch(r"-?\d+", value)
        return [] if whole else [f"{path}: {value!r} is not an int"]
    if hint is str:
        return [] if isinstance(value, str) else [f"{path}: not a string"]
    if hint is type(None):
        return [] if value == "" else [f"{path}: {value!r} is not empty"]
    return [f"{path}: cannot check {hint!r}"]


def _is_typeddict(hint: Any) -> bool:
    # stripe-python's TypedDicts are typing_extensions' (which typing.is_typeddict misses).
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__required_keys__")


def route_of(seen: Seen) -> type:
    for method, pattern, typed in ROUTES:
        if seen.method == method and pattern.fullmatch(seen.path):
            return typed
    raise AssertionError(f"the adapter called {seen.method} {seen.path}, which no route here types")


def check_all(server: StripeErrorServer) -> None:
    assert server.seen
    problems = []
    for seen in server.seen:
        fields = seen.form if seen.method == "POST" else seen.query
        problems += [f"{seen.method} {seen.path}: {p}" for p in violations(decode(fields), route_of(seen))]
    assert not problems, "\n".join(problems)


# -- the checker itself can fail -----------------------------------------------------------


def test_the_checker_finds_an_unknown_key_a_wrong_type_and_a_missing_field() -> None:
    bad = decode({
        "currency": ["usd"],  # amount missing
        "payment_method_types[0]": ["card"],  # not a parameter of this API version
        "confirm": ["yes"],
        "setup_future_usage": ["sometimes"],
        "metadata[attempt_id]": ["a-1"],
        "created[gte]": ["1"],
    })
    found = violations(bad, sp.PaymentIntentCreateParams)
    assert "amount: required, missing" in found
    assert "payment_method_types: not a parameter" in found
    assert "created: not a parameter" in found
    assert any(p.startswith("confirm:") for p in found)
    assert not [p for p in found if p.startswith(("metadata", "currency"))]
    listed = violations(decode({"created[gte]": ["12"], "customer": ["cus_1"], "limit": ["ten"]}),
                        sp.PaymentIntentListParams)
    assert listed == ["limit: 'ten' is not an int"]


def test_decode_reads_stripes_nested_form_encoding() -> None:
    assert decode({"a[b][c]": ["1"], "l[1]": ["y"], "l[0]": ["x"], "k": ["v"]}) == {
        "a": {"b": {"c": "1"}}, "l": ["x", "y"], "k": "v",
    }


# -- every request the adapter makes -------------------------------------------------------


@pytest.fixture
def recorder(localstripe: LocalStripe) -> Iterator[StripeErrorServer]:
    localstripe.flush()
    with stripe_error_server(localstripe.base_url) as server:
        yield server


def test_every_request_of_the_adapter_is_one_stripe_python_types(recorder: StripeErrorServer) -> None:
    client = build_stripe_client(TEST_API_KEY, recorder.base_url, max_network_retries=0)
    gateway = StripeGateway(client)
    customer = gateway.create_customer("10004821", idempotency_key="cus-10004821")
    card = tokenize_card(client, number="4242424242424242", exp_month=12, exp_year=2031, cvc="123",
                         postal_code="20500")
    saved = tokenize_card(client, number="4242424242424242", exp_month=12, exp_year=2031, cvc="123")
    gateway.attach_method(customer, card.processor_id)
    gateway.describe_method(card.processor_id)
    online = MandateAcceptance(datetime(2026, 12, 1, tzinfo=UTC), "203.0.113.9", "Mozilla/5.0")
    for n, acceptance in enumerate([None, online, MandateAcceptance(datetime(2026, 12, 1, tzinfo=UTC))]):
        kept = tokenize_card(client, number="4242424242424242", exp_month=12, exp_year=2031, cvc="123")
        gateway.setup_method(customer, kept.processor_id, idempotency_key=f"seti-{n}", acceptance=acceptance)
    since = datetime.now(UTC)
    common: dict[str, Any] = {"amount_cents": 12345, "currency": "usd", "metadata": {"call_sid": "CA1"}}
    unsaved = gateway.charge(payment_method_id=saved.processor_id, customer_id=None,
                             idempotency_key="attempt-1", **common)
    gateway.charge(payment_method_id=card.processor_id, customer_id=customer, idempotency_key="attempt-2",
                   cardholder_present=False, **common)
    gateway.charge(payment_method_id=card.processor_id, customer_id=customer, idempotency_key="attempt-3",
                   mandate_id="mandate_1", **common)
    other = tokenize_card(client, number="4242424242424242", exp_month=12, exp_year=2031, cvc="123")
    gateway.charge(payment_method_id=other.processor_id, customer_id=customer, idempotency_key="attempt-4",
                   save_for_future=True, **common)
    gateway.find_charge("attempt-2", customer_id=customer, since=since)
    gateway.find_charge("attempt-1", customer_id=None, since=since)
    gateway.find_charge("attempt-2", customer_id=customer)
    gateway.find_charge("attempt-none", customer_id=None)  # the deep scan, then search
    gateway.get_charge(unsaved.processor_id)
    gateway.refund(unsaved.processor_id, amount_cents=100, idempotency_key="refund-1")
    gateway.refund(unsaved.processor_id, amount_cents=None, idempotency_key="refund-2")
    gateway.detach_method(card.processor_id)

    routes = {route_of(seen) for seen in recorder.seen}
    assert {sp.PaymentIntentCreateParams, sp.PaymentIntentListParams, sp.PaymentIntentSearchParams} <= routes
    assert sp.SetupIntentCreateParams in routes
    check_all(recorder)


def test_every_request_of_a_whole_call_is_one_stripe_python_types(
    app: Flask, recorder: StripeErrorServer, stripe_client: stripe.StripeClient
) -> None:
    from ivr.services import EXTENSION_KEY
    from tests.ledger_checks import VISA
    from tests.members import PIN, Member, add_members

    add_members(app, Member("10004821", phones=["+12025550143"]))
    client = build_stripe_client(TEST_API_KEY, recorder.base_url, max_network_retries=0)
    app.extensions[EXTENSION_KEY].gateway = StripeGateway(client)
    from ivr.softphone import FlaskTransport, Softphone
    from ivr.softphone.pay import ScriptedCards, TwilioPayEmulator
    from tests.conftest import TEST_ENV

    phone = Softphone(
        FlaskTransport(app),
        auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
        public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"],
        pay=TwilioPayEmulator(stripe_client, ScriptedCards([VISA])),
    )
    phone.call("+12025550143", ["1", "1", PIN, "2", "10#", "1", "1"])  # saved with the payment
    phone.call("+12025550143", ["1", "1", PIN, "2", "20#", "1", "1"])  # the stored card
    assert len(recorder.requests_to("POST", "/v1/payment_intents")) == 2
    check_all(recorder)
