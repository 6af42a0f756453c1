"""The portal API over the real app, the real database (both backends) and localstripe.

Cards are tokenized as the portal's own Stripe.js would, with ``tokenize_card``; the API
only ever sees the ``pm_...`` id. Every answer a test gets is checked against the schema
the OpenAPI document gives for it (``Api``).
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi
from sqlalchemy import Engine, func, select, text
from werkzeug.exceptions import HTTPException
from werkzeug.test import TestResponse

from db.models import Account, PaymentMethod
from ivr import create_app
from ivr.portal.openapi import document
from ivr.services import EXTENSION_KEY, Services
from ivr.settings import Settings
from payments.card_tokenizer import tokenize_card
from payments.emulator import LocalStripe
from payments.stripe_gateway import StripeGateway, build_stripe_client
from tests.fakes import FakeClock
from tests.members import Member, add_members
from tests.stripe_fixtures import TEST_API_KEY

TOKEN = "portal-token-7Qe9xW2mZr4"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
DECLINED_ON_ATTACH = "4000000000000002"

ACCOUNT = "48210"
OTHER = "51377"
METHODS = f"/api/v1/accounts/{ACCOUNT}/payment-methods"
PHONES = f"/api/v1/accounts/{ACCOUNT}/phones"


# -- the document and a client that holds every answer to it ------------------------------

DOC = document()
_RULE_PARAM = re.compile(r"<(?:[^<>:]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def _doc_path(rule: str) -> str:
    """``/api/v1/accounts/<account>/phones/<int(...):phone_id>`` as the document writes it."""
    assert rule.startswith("/api/v1/")
    return _RULE_PARAM.sub(r"{\1}", rule.removeprefix("/api/v1"))


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": DOC["components"]}, format_checker=FormatChecker())


ERROR_SCHEMA = _validator({"$ref": "#/components/schemas/Error"})


class Api:
    """A test client that checks each answer against the document: a documented status
    for the route, a JSON body that fits its schema (none for a 204)."""

    def __init__(self, app: Flask, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.headers = AUTH if headers is None else headers

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> TestResponse:
        if body is not None:
            kwargs["json"] = body
        return self.call("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.call("DELETE", path, **kwargs)

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> TestResponse:
        response = self.client.open(
            path, method=method, headers={**self.headers, **(headers or {})}, **kwargs
        )
        self._check(method, path, response)
        return response

    def _check(self, method: str, path: str, response: TestResponse) -> None:
        if response.status_code == 204:
            assert response.data == b""
            return
        assert response.mimetype == "application/json", response.data[:200]
        body = response.get_json()
        operation = self._operation(method, path)
        if operation is None or response.status_code == 405:  # no such route or method
            ERROR_SCHEMA.validate(body)
            return
        documented = operation["responses"]
        assert str(response.status_code) in documented, (
            f"{method} {path}: {response.status_code} undocumented"
        )
        spec = _resolve(documented[str(response.status_code)])
        _validator(spec["content"]["application/json"]["schema"]).validate(body)
        for header in spec.get("headers", {}):
            if header != "Retry-After":  # only when the processor is unreachable
                assert header in response.headers

    def _operation(self, method: str, path: str) -> dict[str, Any] | None:
        adapter = self.app.url_map.bind("localhost")
        try:
            rule, _ = adapter.match(path.partition("?")[0], method=method, return_rule=True)
        except HTTPException:  # NotFound, MethodNotAllowed: no operation
            return None
        item = DOC["paths"].get(_doc_path(rule.rule), {})
        operation: dict[str, Any] | None = item.get(method.lower())
        return operation


# -- fixtures ----------------------------------------------------------------------------


def _portal_app(env: dict[str, str], clock: FakeClock, gateway: StripeGateway | None) -> Flask:
    app = create_app(Settings.from_env(env))
    services: Services = app.extensions[EXTENSION_KEY]
    services.clock = clock
    services.gateway = gateway  # the tests' client: no retries
    return app


@pytest.fixture
def portal_app(
    test_env: dict[str, str], clock: FakeClock, gateway: StripeGateway, localstripe: LocalStripe
) -> Iterator[Flask]:
    env = {
        **test_env,
        "SECUREPAY_PORTAL_TOKEN": TOKEN,
        "STRIPE_API_KEY": TEST_API_KEY,
        "STRIPE_API_BASE": localstripe.base_url,
    }
    app = _portal_app(env, clock, gateway)
    add_members(app, Member(ACCOUNT, phones=["(202) 555-0143"]), Member(OTHER))
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


@pytest.fixture
def api(portal_app: Flask) -> Api:
    return Api(portal_app)


@pytest.fixture
def engine_of(portal_app: Flask) -> Engine:
    engine: Engine = portal_app.extensions[EXTENSION_KEY].engine
    return engine


def _card(client: stripe.StripeClient, number: str = VISA) -> str:
    """What the portal's Stripe.js hands its backend: a PaymentMethod id."""
    return tokenize_card(client, number=number, exp_month=11, exp_year=2031, cvc="123").processor_id


def _rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(PaymentMethod)) or 0)


def _customer(engine: Engine, number: str = ACCOUNT) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(select(Account.processor_customer_id).where(Account.account_number == number))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the document ------------------------------------------------------------------------


def test_openapi_document_is_served_and_valid(api: Api) -> None:
    response = api.get("/api/v1/openapi.json")
    assert response.status_code == 200
    served = response.get_json()
    validate_openapi(served)
    assert served == DOC
    assert served["components"]["securitySchemes"]["portalToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The value of SECUREPAY_PORTAL_TOKEN.",
    }
    assert "every path under `/api` answers 404" in served["info"]["description"]


def test_document_names_exactly_the_routes_the_app_serves(portal_app: Flask) -> None:
    served = {
        (_doc_path(rule.rule), method.lower())
        for rule in portal_app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {
        (path, method)
        for path, item in DOC["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    assert served == documented
    for path, item in DOC["paths"].items():
        names = {p["name"] for p in item.get("parameters", [])}
        assert names == set(re.findall(r"{(\w+)}", path)), path


def test_every_documented_schema_is_itself_valid() -> None:
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


# -- authentication ------------------------------------------------------------------------


def test_without_a_portal_token_the_api_is_off(app: Flask) -> None:
    client = Api(app, headers=AUTH)
    for path in ("/api/v1/openapi.json", METHODS, PHONES, "/api/v1/nothing-here", "/api"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    assert client.post(PHONES, {"number": "2025550143"}).status_code == 404


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"Authorization": f"Basic {TOKEN}"}, "malformed"),
        ({"Authorization": "Bearer"}, "malformed"),
        ({"Authorization": "Bearer not-the-token"}, "wrong"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "wrong"),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "wrong"),
        ({"Authorization": "Bearer ünïcode"}, "wrong"),
    ],
)
def test_a_missing_or_wrong_token_is_401_with_a_bearer_challenge(
    portal_app: Flask, caplog: pytest.LogCaptureFixture, headers: dict[str, str], reason: str
) -> None:
    caplog.set_level(logging.WARNING)
    client = Api(portal_app, headers=headers)
    for method, path in (
        ("GET", METHODS),
        ("POST", PHONES),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/x"),
    ):
        response = client.call(method, path, json={"number": "2025550143"} if method == "POST" else None)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="securepay-portal"')
        assert response.get_json()["error"]["code"] == "unauthorized"
    failures = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "portal_auth_failed"
    ]
    assert len(failures) == 4
    assert {f["reason"] for f in failures} == {reason}
    assert TOKEN not in caplog.text and TOKEN[:-1] not in caplog.text
    assert ACCOUNT not in caplog.text  # the path holds the account number: not logged
    phones = Api(portal_app).get(PHONES).get_json()["phones"]  # nothing was written
    assert [phone["created_via"] for phone in phones] == ["import"]


def test_the_token_in_a_query_string_is_not_accepted(portal_app: Flask) -> None:
    response = Api(portal_app, headers={}).get(f"{METHODS}?access_token={TOKEN}")
    assert response.status_code == 401


def test_the_right_token_opens_the_api(api: Api) -> None:
    assert api.get(METHODS).status_code == 200
    lowercase = api.get(METHODS, headers={"Authorization": f"bearer {TOKEN}"})
    assert lowercase.status_code == 200


# -- payment methods -----------------------------------------------------------------------


def test_a_tokenized_card_is_saved_on_the_accounts_processor_customer(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine, clock: FakeClock
) -> None:
    assert api.get(METHODS).get_json() == {"payment_methods": []}
    pm = _card(stripe_client)

    response = api.post(METHODS, {"payment_method": pm})

    assert response.status_code == 201
    saved = response.get_json()
    assert saved == {
        "id": saved["id"],
        "kind": "card",
        "brand": "visa",
        "last4": "4242",
        "exp_month": 11,
        "exp_year": 2031,
        "created_via": "portal",
        "created_at": clock.now().isoformat(),
    }
    customer = _customer(engine_of)
    assert customer is not None and customer.startswith("cus_")
    assert stripe_client.v1.payment_methods.retrieve(pm).customer == customer
    metadata = stripe_client.v1.customers.retrieve(customer).metadata
    assert metadata is not None and metadata["account_number"] == ACCOUNT
    assert api.get(METHODS).get_json() == {"payment_methods": [saved]}


def test_a_second_method_goes_on_the_same_customer_and_is_listed_after(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    first = api.post(METHODS, {"payment_method": _card(stripe_client)}).get_json()
    customer = _customer(engine_of)
    second_pm = _card(stripe_client, MASTERCARD)
    second = api.post(METHODS, {"payment_method": second_pm}).get_json()

    assert _customer(engine_of) == customer
    assert stripe_client.v1.payment_methods.retrieve(second_pm).customer == customer
    listed = api.get(METHODS).get_json()["payment_methods"]
    assert [m["id"] for m in listed] == [first["id"], second["id"]]
    assert [m["last4"] for m in listed] == ["4242", "4444"]  # (localstripe calls every card visa)


def test_posting_the_same_method_again_answers_200_with_the_stored_one(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    pm = _card(stripe_client)
    created = api.post(METHODS, {"payment_method": pm})
    again = api.post(METHODS, {"payment_method": pm})
    assert (created.status_code, again.status_code) == (201, 200)
    assert again.get_json() == created.get_json()
    assert _rows(engine_of) == 1


def test_a_method_on_file_for_another_account_is_a_conflict(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    pm = _card(stripe_client)
    api.post(METHODS, {"payment_method": pm})
    response = api.post(f"/api/v1/accounts/{OTHER}/payment-methods", {"payment_method": pm})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "payment_method_in_use"
    assert _rows(engine_of) == 1
    assert _customer(engine_of, OTHER) is None


def test_an_account_holds_at_most_seven_methods(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    for _ in range(7):
        assert api.post(METHODS, {"payment_method": _card(stripe_client)}).status_code == 201
    eighth = _card(stripe_client)
    response = api.post(METHODS, {"payment_method": eighth})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "too_many_payment_methods"
    assert _rows(engine_of) == 7
    assert stripe_client.v1.payment_methods.retrieve(eighth).customer is None


def test_deleting_a_method_detaches_it_at_the_processor(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    pm = _card(stripe_client)
    method_id = api.post(METHODS, {"payment_method": pm}).get_json()["id"]

    response = api.delete(f"{METHODS}/{method_id}")

    assert response.status_code == 204
    assert api.get(METHODS).get_json() == {"payment_methods": []}
    assert stripe_client.v1.payment_methods.retrieve(pm).customer is None
    again = api.delete(f"{METHODS}/{method_id}")
    assert again.status_code == 404
    assert again.get_json()["error"]["code"] == "payment_method_not_found"


def test_a_method_of_another_account_cannot_be_deleted(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    pm = _card(stripe_client)
    method_id = api.post(METHODS, {"payment_method": pm}).get_json()["id"]
    response = api.delete(f"/api/v1/accounts/{OTHER}/payment-methods/{method_id}")
    assert response.status_code == 404
    assert _rows(engine_of) == 1
    assert stripe_client.v1.payment_methods.retrieve(pm).customer is not None


def test_a_method_already_detached_at_the_processor_is_still_removed(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    pm = _card(stripe_client)
    method_id = api.post(METHODS, {"payment_method": pm}).get_json()["id"]
    stripe_client.v1.payment_methods.detach(pm)  # e.g. from the processor's dashboard
    assert api.delete(f"{METHODS}/{method_id}").status_code == 204
    assert _rows(engine_of) == 0


def test_an_unknown_payment_method_is_422_and_nothing_is_stored(api: Api, engine_of: Engine) -> None:
    response = api.post(METHODS, {"payment_method": "pm_doesnotexist"})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_payment_method"
    assert "does not know this payment method" in error["message"]
    assert _rows(engine_of) == 0


def test_a_card_declined_when_saved_is_422_and_nothing_is_stored(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    response = api.post(METHODS, {"payment_method": _card(stripe_client, DECLINED_ON_ATTACH)})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "payment_method_declined"
    assert DECLINED_ON_ATTACH[-4:] not in response.get_data(as_text=True)
    assert _rows(engine_of) == 0


def test_processor_down_is_503_and_nothing_is_stored(portal_app: Flask, api: Api, engine_of: Engine) -> None:
    services: Services = portal_app.extensions[EXTENSION_KEY]
    services.gateway = StripeGateway(
        build_stripe_client(TEST_API_KEY, f"http://127.0.0.1:{_closed_port()}", max_network_retries=0)
    )
    response = api.post(METHODS, {"payment_method": "pm_whatever123"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "processor_unavailable"
    assert response.headers["Retry-After"] == "30"
    assert _rows(engine_of) == 0
    assert _customer(engine_of) is None


def test_processor_down_when_deleting_keeps_the_method(
    portal_app: Flask, api: Api, stripe_client: stripe.StripeClient, engine_of: Engine
) -> None:
    method_id = api.post(METHODS, {"payment_method": _card(stripe_client)}).get_json()["id"]
    services: Services = portal_app.extensions[EXTENSION_KEY]
    services.gateway = StripeGateway(
        build_stripe_client(TEST_API_KEY, f"http://127.0.0.1:{_closed_port()}", max_network_retries=0)
    )
    response = api.delete(f"{METHODS}/{method_id}")
    assert response.status_code == 503
    assert _rows(engine_of) == 1


@pytest.fixture
def inserts_refused(engine_of: Engine, backend: str) -> Iterator[None]:
    """The database refuses new payment methods (a real failure, from a trigger)."""
    if backend == "sqlite":
        create = [
            "CREATE TRIGGER refuse_methods BEFORE INSERT ON payment_methods "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
        drop = ["DROP TRIGGER refuse_methods"]
    else:
        create = [
            "CREATE FUNCTION refuse_methods() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER refuse_methods BEFORE INSERT ON payment_methods "
            "FOR EACH ROW EXECUTE FUNCTION refuse_methods()",
        ]
        drop = ["DROP TRIGGER refuse_methods ON payment_methods", "DROP FUNCTION refuse_methods()"]
    with engine_of.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    yield
    with engine_of.begin() as conn:
        for statement in drop:
            conn.execute(text(statement))


@pytest.mark.usefixtures("inserts_refused")
def test_when_the_row_cannot_be_written_the_method_is_detached_again(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    pm = _card(stripe_client)
    response = api.post(METHODS, {"payment_method": pm})
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert _rows(engine_of) == 0
    assert stripe_client.v1.payment_methods.retrieve(pm).customer is None
    assert any(
        isinstance(r.msg, dict) and r.msg.get("event") == "portal_request_failed" for r in caplog.records
    )
    assert f"/accounts/{ACCOUNT}" not in caplog.text


def test_without_a_processor_key_methods_cannot_change_but_can_be_listed(
    test_env: dict[str, str], clock: FakeClock
) -> None:
    app = _portal_app({**test_env, "SECUREPAY_PORTAL_TOKEN": TOKEN}, clock, None)
    try:
        add_members(app, Member(ACCOUNT))
        api = Api(app)
        assert api.get(METHODS).status_code == 200
        for response in (api.post(METHODS, {"payment_method": "pm_abc"}), api.delete(f"{METHODS}/1")):
            assert response.status_code == 503
            assert response.get_json()["error"]["code"] == "payments_disabled"
        assert api.post(PHONES, {"number": "3035550188"}).status_code == 201
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()


# -- phones ----------------------------------------------------------------------------------


def test_phones_are_listed_added_in_e164_and_found_by_call_capture(
    portal_app: Flask, api: Api, clock: FakeClock
) -> None:
    (imported,) = api.get(PHONES).get_json()["phones"]
    assert (imported["number"], imported["created_via"]) == ("+12025550143", "import")

    response = api.post(PHONES, {"number": "(303) 555-0188"})

    assert response.status_code == 201
    added = response.get_json()
    assert added == {
        "id": added["id"],
        "number": "+13035550188",
        "created_via": "portal",
        "created_at": clock.now().isoformat(),
    }
    assert api.get(PHONES).get_json() == {"phones": [imported, added]}
    services: Services = portal_app.extensions[EXTENSION_KEY]
    with services.unit_of_work() as uow:
        assert [a.number for a in uow.accounts.by_phone("+13035550188", limit=9)] == [ACCOUNT]


def test_adding_a_number_on_file_in_another_format_answers_200_with_it(api: Api) -> None:
    (imported,) = api.get(PHONES).get_json()["phones"]
    response = api.post(PHONES, {"number": "+1 202.555.0143"})
    assert response.status_code == 200
    assert response.get_json() == imported
    assert len(api.get(PHONES).get_json()["phones"]) == 1


def test_a_number_may_be_on_several_accounts(api: Api) -> None:
    response = api.post(f"/api/v1/accounts/{OTHER}/phones", {"number": "202-555-0143"})
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("202-555-014", "does not exist"),
        ("+44 20 7946 0958", "not a US number"),
        ("call me maybe", "only digits"),
        ("4242 4242 4242 4242", "does not exist"),
    ],
)
def test_an_unusable_number_is_422_with_the_reason(api: Api, number: str, reason: str) -> None:
    response = api.post(PHONES, {"number": number})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_phone_number"
    assert reason in error["message"]
    assert number not in error["message"]
    assert len(api.get(PHONES).get_json()["phones"]) == 1


def test_deleting_a_phone_and_one_of_another_account(api: Api) -> None:
    other = api.post(f"/api/v1/accounts/{OTHER}/phones", {"number": "3035550188"}).get_json()
    (mine,) = api.get(PHONES).get_json()["phones"]

    assert api.delete(f"{PHONES}/{other['id']}").status_code == 404
    assert api.delete(f"{PHONES}/{mine['id']}").status_code == 204
    assert api.get(PHONES).get_json() == {"phones": []}
    again = api.delete(f"{PHONES}/{mine['id']}")
    assert again.status_code == 404
    assert again.get_json()["error"]["code"] == "phone_not_found"
    assert api.get(f"/api/v1/accounts/{OTHER}/phones").get_json()["phones"] == [other]


# -- bad input -------------------------------------------------------------------------------

BODY_ROUTES = [(METHODS, "payment_method", "pm_abc123"), (PHONES, "number", "3035550188")]
JSON_TYPE = "application/json"

# What is sent, given the route's field and a good value for it.
BAD_BODIES: dict[str, tuple[Any, str, str]] = {
    "no content type": (lambda f, v: {"data": json.dumps({f: v})}, "unsupported_content_type", JSON_TYPE),
    "text/plain": (
        lambda f, v: {"data": json.dumps({f: v}), "content_type": "text/plain"},
        "unsupported_content_type",
        JSON_TYPE,
    ),
    "cut short": (
        lambda f, v: {"data": f'{{"{f}": ', "content_type": JSON_TYPE},
        "malformed_json",
        "not valid JSON",
    ),
    "not utf-8": (
        lambda f, v: {"data": b"\xff\xfe\x00", "content_type": JSON_TYPE},
        "malformed_json",
        "not valid JSON",
    ),
    "too deep": (
        lambda f, v: {"data": "[" * 5000, "content_type": JSON_TYPE},
        "malformed_json",
        "not valid JSON",
    ),
    "a list": (lambda f, v: {"json": [{f: v}]}, "invalid_body", "must be a JSON object"),
    "empty object": (lambda f, v: {"json": {}}, "invalid_body", "missing field"),
    "extra field": (
        lambda f, v: {"json": {f: v, "extra": 1}},
        "invalid_body",
        "unexpected field(s): 'extra'",
    ),
    "a number": (lambda f, v: {"json": {f: 1234}}, "invalid_body", "must be a string"),
    "null": (lambda f, v: {"json": {f: None}}, "invalid_body", "must be a string"),
    "blank": (lambda f, v: {"json": {f: "   "}}, "invalid_body", "must not be empty"),
    "too long": (lambda f, v: {"json": {f: "1" * 200}}, "invalid_body", "longer than"),
}


@pytest.mark.parametrize(("path", "field", "good"), BODY_ROUTES, ids=["payment-methods", "phones"])
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_are_400_saying_what_is_wrong(
    api: Api, engine_of: Engine, path: str, field: str, good: str, case: str
) -> None:
    make, code, says = BAD_BODIES[case]
    before = api.get(PHONES).get_json()
    response = api.call("POST", path, **make(field, good))
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code
    assert says in error["message"]
    assert _rows(engine_of) == 0
    assert api.get(PHONES).get_json() == before


def test_card_details_instead_of_a_payment_method_id_are_refused_and_not_echoed(
    api: Api, engine_of: Engine
) -> None:
    for sent in (VISA, f"pm_{VISA} 123", {"number": VISA, "cvc": "123"}):
        response = api.post(METHODS, {"payment_method": sent})
        assert response.status_code == 400
        assert VISA not in response.get_data(as_text=True)
    response = api.post(METHODS, {VISA: "pm_abc"})
    assert response.status_code == 400
    assert VISA not in response.get_data(as_text=True)
    assert _rows(engine_of) == 0


def test_an_oversized_body_is_a_json_413(api: Api) -> None:
    body = json.dumps({"number": "1" * 100_000}).encode()
    for path in (METHODS, PHONES):
        response = api.call("POST", path, data=body, content_type="application/json")
        assert response.status_code == 413
        assert response.get_json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("account", ["99999", "0048210", "48210x", "-1"])
def test_an_unknown_account_is_404_on_every_route(api: Api, account: str) -> None:
    base = f"/api/v1/accounts/{account}"
    for response in (
        api.get(f"{base}/payment-methods"),
        api.post(f"{base}/payment-methods", {"payment_method": "pm_abc"}),
        api.delete(f"{base}/payment-methods/1"),
        api.get(f"{base}/phones"),
        api.post(f"{base}/phones", {"number": "3035550188"}),
        api.delete(f"{base}/phones/1"),
    ):
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "account_not_found"


def test_routes_and_methods_that_do_not_exist_answer_json(api: Api) -> None:
    for path in (f"{METHODS}/abc", f"{PHONES}/0", f"{PHONES}/99999999999999999999", "/api/v1/accounts"):
        response = api.delete(path) if path != "/api/v1/accounts" else api.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    response = api.call("PUT", METHODS, json={"payment_method": "pm_abc"})
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_the_rest_of_the_app_keeps_its_own_error_pages(portal_app: Flask) -> None:
    response = portal_app.test_client().get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


# -- a bank account's mandate (issue 8, item 13; https://docs.stripe.com/payments/setup-intents)


def test_a_bank_account_posted_with_its_mandate_is_saved_with_it(
    portal_app: Flask, localstripe: LocalStripe
) -> None:
    from tests.stripe_error_server import Scripted, stripe_error_server

    bank_pm = {
        "id": "pm_bank1", "object": "payment_method", "type": "us_bank_account", "customer": None,
        "us_bank_account": {"bank_name": "STRIPE TEST BANK", "last4": "6789"},
    }
    setup = Scripted(200, {
        "id": "seti_1", "object": "setup_intent", "status": "succeeded", "mandate": "mandate_1",
        "payment_method": bank_pm, "last_setup_error": None,
    })
    with stripe_error_server(localstripe.base_url) as server:
        server.script("POST", "/v1/setup_intents", setup)
        client = build_stripe_client(TEST_API_KEY, server.base_url, max_network_retries=0)
        portal_app.extensions[EXTENSION_KEY].gateway = StripeGateway(client)
        body = {
            "payment_method": "pm_bank1",
            "mandate": {
                "accepted_at": 1764576000,
                "online": {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0"},
            },
        }
        response = Api(portal_app).post(METHODS, body)
        (sent,) = server.requests_to("POST", "/v1/setup_intents")

    assert response.status_code == 201, response.json
    assert response.json is not None and response.json["kind"] == "bank"
    assert sent.form["mandate_data[customer_acceptance][type]"] == ["online"]
    assert sent.form["mandate_data[customer_acceptance][accepted_at]"] == ["1764576000"]
    with portal_app.app_context():
        from db.stored_methods import SqlStoredMethods
        from ivr.services import current_services

        with current_services().unit_of_work() as uow:
            account = uow.accounts.by_number(ACCOUNT)
            assert account is not None
            (method,) = SqlStoredMethods(uow.session).for_account(account.id)
    assert method.mandate_id == "mandate_1"


@pytest.mark.parametrize("mandate", [
    {"online": {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0"}},  # no accepted_at
    {"accepted_at": "yesterday"},
    {"accepted_at": 1764576000, "online": {"ip_address": "203.0.113.9"}},
    {"accepted_at": 1764576000, "signed": True},
])
def test_a_malformed_mandate_is_400_and_nothing_is_saved(api: Api, mandate: dict[str, Any]) -> None:
    response = api.post(METHODS, {"payment_method": "pm_x", "mandate": mandate})
    assert response.status_code == 400 and response.json is not None
    assert response.json["error"]["code"] == "invalid_body"
