"""The portal's Auto Pay (contract section 3): ``GET``/``PUT``/``DELETE
/api/v1/accounts/{account}/autopay``, over the store the phone uses, with its rules
(``payments.autopay_enrollment``).

``PUT {"payment_method_id": 7, "terms_version": "2026-12-01"}`` enrolls (201) or changes
the method (200); the same method again is 200 and changes nothing. The terms version
must be the one in force, the method one of the account's stored methods (cards and
bank accounts: the portal shows the member the written authorization itself).
"""

from __future__ import annotations

from flask import Response, jsonify

from db.autopay import NotEnrolled, SqlAutopay
from db.stored_methods import SqlStoredMethods
from ivr.portal.bodies import object_fields
from ivr.portal.errors import ApiError
from ivr.portal.routes import _account, bp
from ivr.services import current_services
from payments import autopay_enrollment
from payments.autopay_notices import wording_from
from payments.autopay_terms import TERMS_VERSION, EnrollmentView
from payments.gateway import card_expired

ACTOR = "portal"


def _not_enrolled() -> ApiError:
    return ApiError(404, "autopay_not_found", "this account is not enrolled in Auto Pay")


def autopay_json(enrollment: EnrollmentView) -> dict[str, object]:
    return {
        "status": enrollment.status,
        "status_reason": enrollment.status_reason,
        "payment_method_id": enrollment.payment_method_id,
        "method": {
            "kind": enrollment.method_kind,
            "brand": enrollment.method_brand,
            "last4": enrollment.method_last4,
        },
        "terms_version": enrollment.terms_version,
        "agreed_at": enrollment.agreed_at.isoformat(),
        "channel": enrollment.channel,
        "first_due_after": enrollment.first_due_after.isoformat(),
    }


def _send(notice_ids: tuple[int, ...]) -> None:
    notices = current_services().autopay_notices
    if notices is not None and notice_ids:
        notices.dispatch(list(notice_ids))


@bp.get("/accounts/<account>/autopay")
def get_autopay(account: str) -> Response:
    found = _account(account)
    with current_services().unit_of_work() as uow:
        enrollment = SqlAutopay(uow.session).live(found.id)
    if enrollment is None:
        raise _not_enrolled()
    return jsonify(autopay_json(enrollment))


@bp.put("/accounts/<account>/autopay")
def put_autopay(account: str) -> tuple[Response, int]:
    body = object_fields("payment_method_id", "terms_version")
    method_id, terms = body["payment_method_id"], body["terms_version"]
    if type(method_id) is not int or not 1 <= method_id <= 2_147_483_647:
        raise ApiError(400, "invalid_body", "field 'payment_method_id' must be the id of a stored method")
    if not isinstance(terms, str) or not terms.strip() or len(terms) > 20:
        raise ApiError(400, "invalid_body", "field 'terms_version' must be a terms version string")
    found = _account(account)
    if terms != TERMS_VERSION:
        raise ApiError(
            422, "terms_version_not_current", f"the Auto Pay terms in force are version {TERMS_VERSION}"
        )
    services = current_services()
    with services.unit_of_work() as uow:
        method = SqlStoredMethods(uow.session).get(found.id, method_id)
        if method is None:
            raise ApiError(
                422, "payment_method_not_found", "no stored payment method with this id on this account"
            )
        today = services.clock.now().astimezone(services.settings.timezone).date()
        if card_expired(method.exp_year, method.exp_month, today):
            # Every draft on it would be declined: the member adds the new card first.
            raise ApiError(
                422, "payment_method_expired",
                f"the card ending in {method.last4} has expired: save a card that has not",
            )
        done = autopay_enrollment.enroll(
            uow.session,
            method,
            channel="portal",
            actor=ACTOR,
            terms_version=terms,
            wording=wording_from(services.settings),
            now=services.clock.now(),
        )
        if done.change != "unchanged":
            uow.events.record(
                f"autopay_{done.change}",
                account_id=found.id,
                actor=ACTOR,
                channel="portal",
                enrollment_id=done.enrollment.id,
                method_last4=method.last4,
            )
        uow.commit()
    _send(done.notice_ids)
    return jsonify(autopay_json(done.enrollment)), 201 if done.change == "enrolled" else 200


@bp.delete("/accounts/<account>/autopay")
def delete_autopay(account: str) -> Response:
    found = _account(account)
    services = current_services()
    with services.unit_of_work() as uow:
        try:
            done = autopay_enrollment.cancel(
                uow.session,
                found.id,
                channel="portal",
                actor=ACTOR,
                reason="cancelled in the portal",
                wording=wording_from(services.settings),
                now=services.clock.now(),
            )
        except NotEnrolled:
            raise _not_enrolled() from None
        uow.events.record(
            "autopay_cancelled",
            account_id=found.id,
            actor=ACTOR,
            channel="portal",
            enrollment_id=done.enrollment.id,
        )
        uow.commit()
    _send(done.notice_ids)
    return Response(status=204)
