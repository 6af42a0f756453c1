"""Issue 10, point 4: ``GET``/``PUT``/``DELETE /api/v1/accounts/{account}/autopay``.

The same store and rules as the phone; every answer checked against the OpenAPI
document by the portal tests' client; bad input is a JSON 4xx and writes nothing.
"""

from __future__ import annotations

import stripe
from flask import Flask
from sqlalchemy import Engine, func, select

from db.models import AutopayChange, AutopayEnrollment, AutopayNotice
from payments.autopay_terms import TERMS_VERSION
from tests.test_portal_api import ACCOUNT, METHODS, Api, _card, api, engine_of, portal_app  # noqa: F401

AUTOPAY = f"/api/v1/accounts/{ACCOUNT}/autopay"


def _method(api: Api, client: stripe.StripeClient, number: str = "4242424242424242") -> int:  # noqa: F811
    response = api.post(METHODS, {"payment_method": _card(client, number)})
    assert response.status_code == 201, response.data
    method_id: int = response.get_json()["id"]
    return method_id


def _count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def test_enroll_read_change_and_cancel(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine  # noqa: F811
) -> None:
    assert api.get(AUTOPAY).status_code == 404
    visa = _method(api, stripe_client)
    created = api.call("PUT", AUTOPAY, json={"payment_method_id": visa, "terms_version": TERMS_VERSION})
    assert created.status_code == 201, created.data
    body = created.get_json()
    assert body["status"] == "active" and body["method"]["last4"] == "4242" and body["channel"] == "portal"
    assert body["first_due_after"] == "2026-11-30"  # the bill already issued is not covered
    again = api.call("PUT", AUTOPAY, json={"payment_method_id": visa, "terms_version": TERMS_VERSION})
    assert again.status_code == 200 and _count(engine_of, AutopayEnrollment) == 1
    master = _method(api, stripe_client, "5555555555554444")
    changed = api.call("PUT", AUTOPAY, json={"payment_method_id": master, "terms_version": TERMS_VERSION})
    assert changed.status_code == 200 and changed.get_json()["method"]["last4"] == "4444"
    assert api.get(AUTOPAY).get_json()["payment_method_id"] == master
    assert api.delete(AUTOPAY).status_code == 204
    assert api.get(AUTOPAY).status_code == 404
    assert api.delete(AUTOPAY).status_code == 404
    # Nothing agreed was erased: two agreements, three changes.
    with engine_of.connect() as conn:
        statuses = list(conn.scalars(select(AutopayEnrollment.status_reason).order_by(AutopayEnrollment.id)))
        actions = list(conn.scalars(select(AutopayChange.action).order_by(AutopayChange.id)))
    assert statuses == ["replaced", "cancelled"]
    assert actions == ["enrolled", "method_changed", "cancelled"]


def test_bad_input_is_a_json_4xx_and_writes_nothing(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine  # noqa: F811
) -> None:
    visa = _method(api, stripe_client)
    cases = [
        ({"payment_method_id": visa}, 400, "invalid_body"),
        ({"payment_method_id": str(visa), "terms_version": TERMS_VERSION}, 400, "invalid_body"),
        ({"payment_method_id": True, "terms_version": TERMS_VERSION}, 400, "invalid_body"),
        ({"payment_method_id": visa, "terms_version": TERMS_VERSION, "x": 1}, 400, "invalid_body"),
        ({"payment_method_id": visa, "terms_version": "2020-01-01"}, 422, "terms_version_not_current"),
        ({"payment_method_id": visa + 100, "terms_version": TERMS_VERSION}, 422, "payment_method_not_found"),
    ]
    for body, status, code in cases:
        response = api.call("PUT", AUTOPAY, json=body)
        assert (response.status_code, response.get_json()["error"]["code"]) == (status, code), body
    unknown = api.call("PUT", "/api/v1/accounts/99999/autopay",
                       json={"payment_method_id": visa, "terms_version": TERMS_VERSION})
    assert unknown.status_code == 404
    assert _count(engine_of, AutopayEnrollment) == 0 and _count(engine_of, AutopayChange) == 0


def test_a_method_of_another_account_cannot_be_used(
    portal_app: Flask, api: Api, stripe_client: stripe.StripeClient  # noqa: F811
) -> None:
    from tests.test_portal_api import OTHER

    other = api.post(f"/api/v1/accounts/{OTHER}/payment-methods", {"payment_method": _card(stripe_client)})
    response = api.call(
        "PUT", AUTOPAY, json={"payment_method_id": other.get_json()["id"], "terms_version": TERMS_VERSION}
    )
    assert response.status_code == 422


def test_removing_the_method_suspends_auto_pay(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine  # noqa: F811
) -> None:
    visa = _method(api, stripe_client)
    api.call("PUT", AUTOPAY, json={"payment_method_id": visa, "terms_version": TERMS_VERSION})
    assert api.delete(f"{METHODS}/{visa}").status_code == 204
    body = api.get(AUTOPAY).get_json()
    assert body["status"] == "suspended" and body["status_reason"] == "method_removed"
    assert body["payment_method_id"] is None and body["method"]["last4"] == "4242"  # what was agreed
    # A new method resumes it, as a new agreement.
    master = _method(api, stripe_client, "5555555555554444")
    resumed = api.call("PUT", AUTOPAY, json={"payment_method_id": master, "terms_version": TERMS_VERSION})
    assert resumed.status_code == 200 and resumed.get_json()["status"] == "active"


def test_the_member_is_written_to_only_with_an_email_on_file(
    api: Api, stripe_client: stripe.StripeClient, engine_of: Engine  # noqa: F811
) -> None:
    visa = _method(api, stripe_client)
    api.call("PUT", AUTOPAY, json={"payment_method_id": visa, "terms_version": TERMS_VERSION})
    assert _count(engine_of, AutopayNotice) == 0  # the test member has no e-mail address


def test_the_terms_are_written_to_the_member_when_an_email_is_on_file(
    portal_app: Flask, api: Api, stripe_client: stripe.StripeClient, engine_of: Engine  # noqa: F811
) -> None:
    from tests.members import Member, add_members

    add_members(portal_app, Member(ACCOUNT, email="maria.rivera@example.com"))  # an update
    visa = _method(api, stripe_client)
    api.call("PUT", AUTOPAY, json={"payment_method_id": visa, "terms_version": TERMS_VERSION})
    api.delete(AUTOPAY)
    with engine_of.connect() as conn:
        kinds = list(conn.scalars(select(AutopayNotice.kind).order_by(AutopayNotice.id)))
        body = conn.scalar(select(AutopayNotice.body).order_by(AutopayNotice.id).limit(1))
    assert kinds == ["enrolled", "cancelled"]
    assert body is not None and "full balance of each bill on its due date" in body
    assert "ending in 4242" in body and "first bill due after November 30, 2026" in body


def test_an_expired_card_is_refused_and_nothing_written(
    portal_app: Flask, api: Api, stripe_client: stripe.StripeClient, engine_of: Engine  # noqa: F811
) -> None:
    # Stripe declines a charge on an expired card ("expired_card",
    # https://docs.stripe.com/declines/codes): Auto Pay on it would fail on every due date.
    from sqlalchemy import update

    from db.models import PaymentMethod

    visa = _method(api, stripe_client)
    with engine_of.begin() as conn:  # it expired after it was saved (the test clock: Nov 2026)
        expire = update(PaymentMethod).where(PaymentMethod.id == visa)
        conn.execute(expire.values(exp_year=2026, exp_month=10))
    response = api.call("PUT", AUTOPAY, json={"payment_method_id": visa, "terms_version": TERMS_VERSION})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "payment_method_expired"
    assert "expired" in response.get_json()["error"]["message"]
    assert _count(engine_of, AutopayEnrollment) == 0 and _count(engine_of, AutopayChange) == 0
