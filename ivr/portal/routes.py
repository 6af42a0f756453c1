"""The portal API (contract section 3): an account's payment methods and phone numbers.

Each view validates its input, calls a repository or ``wallet`` (which talks to the
processor), and maps the outcome to a status. Adding something already on file for the
account is idempotent: 200 with the stored item, where a new one is 201.
"""

from __future__ import annotations

import re
from typing import NoReturn

from flask import Blueprint, Response, jsonify

from callcapture.numbers import InvalidPhoneNumber, normalize_on_file
from db.phones import PhoneAlreadyOnFile, SqlPhones, StoredPhone
from db.repositories import AccountNotFound
from db.stored_methods import SqlStoredMethods, StoredMethod, TooManyMethods
from ivr.flows.ports import AccountSummary
from ivr.portal import auth, errors, rate_limit, wallet
from ivr.portal.bodies import payment_method_body, string_fields
from ivr.portal.errors import ApiError
from ivr.portal.openapi import document
from ivr.services import current_services
from payments.gateway import (
    ActionRequired,
    CardDeclined,
    InvalidPaymentMethod,
    OutcomeUnknown,
    PaymentError,
    PaymentGateway,
    ProcessorUnavailable,
)

bp = Blueprint("portal", __name__, url_prefix="/api/v1")
bp.before_app_request(rate_limit.limit_portal_requests)  # before the token check: 401 floods too
bp.before_app_request(auth.require_bearer)
errors.install(bp)

ACCOUNT_NUMBER = re.compile(r"[0-9]{1,20}")
PAYMENT_METHOD_ID = re.compile(r"pm_[A-Za-z0-9_]{1,61}")
# Ids in paths: Werkzeug's int converter, bounded to the column's range.
ID = "int(min=1, max=2147483647)"


# -- representations ------------------------------------------------------------------


def _method_json(method: StoredMethod) -> dict[str, object]:
    return {
        "id": method.id,
        "kind": method.kind,
        "brand": method.brand,
        "last4": method.last4,
        "exp_month": method.exp_month,
        "exp_year": method.exp_year,
        "created_via": method.created_via,
        "created_at": method.created_at.isoformat(),
    }


def _phone_json(phone: StoredPhone) -> dict[str, object]:
    return {
        "id": phone.id,
        "number": phone.e164,
        "created_via": phone.created_via,
        "created_at": phone.created_at.isoformat(),
    }


def _created(body: dict[str, object], created: bool) -> tuple[Response, int]:
    return jsonify(body), 201 if created else 200


def _no_content() -> Response:
    return Response(status=204)


# -- lookups --------------------------------------------------------------------------


def _account_not_found() -> ApiError:
    return ApiError(404, "account_not_found", "no account with this account number")


def _account(number: str) -> AccountSummary:
    if not ACCOUNT_NUMBER.fullmatch(number):
        raise _account_not_found()
    with current_services().unit_of_work() as uow:
        account = uow.accounts.by_number(number)
    if account is None:
        raise _account_not_found()
    return account


def _gateway() -> PaymentGateway:
    gateway = current_services().gateway
    if gateway is None:
        raise ApiError(503, "payments_disabled", "payments are not configured on this server")
    return gateway


def _processor_failed(exc: PaymentError, undone: str) -> NoReturn:
    """The gateway's errors as statuses; ``undone`` says what was not done."""
    if isinstance(exc, InvalidPaymentMethod):
        raise ApiError(
            422,
            "invalid_payment_method",
            "the payment processor does not know this payment method, or it cannot be "
            "saved (already used or detached); create a new one",
        ) from None
    if isinstance(exc, CardDeclined | ActionRequired):
        raise ApiError(
            422, "payment_method_declined", "the payment method was declined when saving it; use another"
        ) from None
    if isinstance(exc, ProcessorUnavailable):
        raise ApiError(
            503,
            "processor_unavailable",
            f"the payment processor could not be reached; {undone}. Try again later",
            {"Retry-After": "30"},
        ) from None
    if isinstance(exc, OutcomeUnknown):
        raise ApiError(
            502,
            "processor_no_answer",
            f"the payment processor did not answer; {undone}. Repeating the request is safe",
        ) from None
    raise ApiError(502, "processor_error", f"the payment processor refused the request; {undone}") from None


# -- payment methods ------------------------------------------------------------------


@bp.get("/accounts/<account>/payment-methods")
def list_payment_methods(account: str) -> Response:
    found = _account(account)
    with current_services().unit_of_work() as uow:
        methods = SqlStoredMethods(uow.session).for_account(found.id)
    return jsonify(payment_methods=[_method_json(method) for method in methods])


@bp.post("/accounts/<account>/payment-methods")
def add_payment_method(account: str) -> tuple[Response, int]:
    payment_method, acceptance = payment_method_body()
    if not PAYMENT_METHOD_ID.fullmatch(payment_method):
        raise ApiError(
            400,
            "invalid_body",
            "field 'payment_method' must be a processor PaymentMethod id (pm_...), never card details",
        )
    found = _account(account)
    gateway = _gateway()
    try:
        saved = wallet.save_method(
            current_services(), gateway, found, payment_method, created_via="portal", acceptance=acceptance
        )
    except wallet.MethodOnAnotherAccount:
        raise ApiError(
            409, "payment_method_in_use", "this payment method is on file for another account"
        ) from None
    except TooManyMethods as exc:
        raise ApiError(
            409,
            "too_many_payment_methods",
            f"an account holds at most {exc.limit} payment methods; remove one first",
        ) from None
    except AccountNotFound:
        raise _account_not_found() from None
    except PaymentError as exc:
        _processor_failed(exc, "nothing was saved")
    return _created(_method_json(saved.method), saved.created)


@bp.delete(f"/accounts/<account>/payment-methods/<{ID}:method_id>")
def delete_payment_method(account: str, method_id: int) -> Response:
    found = _account(account)
    gateway = _gateway()
    try:
        wallet.remove_method(current_services(), gateway, found, method_id)
    except wallet.MethodNotFound:
        raise ApiError(
            404, "payment_method_not_found", "no payment method with this id on this account"
        ) from None
    except PaymentError as exc:
        _processor_failed(exc, "the payment method was not removed")
    return _no_content()


# -- phones ---------------------------------------------------------------------------


@bp.get("/accounts/<account>/phones")
def list_phones(account: str) -> Response:
    found = _account(account)
    with current_services().unit_of_work() as uow:
        phones = SqlPhones(uow.session).for_account(found.id)
    return jsonify(phones=[_phone_json(phone) for phone in phones])


@bp.post("/accounts/<account>/phones")
def add_phone(account: str) -> tuple[Response, int]:
    raw = string_fields("number", max_length=40)["number"]
    try:
        e164 = normalize_on_file(raw)
    except InvalidPhoneNumber as exc:
        raise ApiError(422, "invalid_phone_number", f"field 'number': {exc}") from None
    found = _account(account)
    services = current_services()
    with services.unit_of_work() as uow:
        try:
            phone = SqlPhones(uow.session).add(found.id, e164, created_via="portal", now=services.clock.now())
        except PhoneAlreadyOnFile as exc:
            return _created(_phone_json(exc.existing), created=False)
        uow.commit()
    return _created(_phone_json(phone), created=True)


@bp.delete(f"/accounts/<account>/phones/<{ID}:phone_id>")
def delete_phone(account: str, phone_id: int) -> Response:
    found = _account(account)
    with current_services().unit_of_work() as uow:
        if not SqlPhones(uow.session).remove(found.id, phone_id):
            raise ApiError(404, "phone_not_found", "no phone number with this id on this account")
        uow.commit()
    return _no_content()


# -- the document ---------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
