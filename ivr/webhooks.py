"""Twilio-facing routes (``/ivr/*``). Each view: signature (checked for the whole
blueprint), load the call by CallSid, hand the event to the flow, render TwiML.
No business rule lives here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import structlog
from flask import Blueprint, Response, request

from callcapture import normalize_caller_id
from ivr import twiml
from ivr.flows.engine import Input
from ivr.flows.ports import CallRecord
from ivr.logs import bind_call, clear_call
from ivr.metrics.web import step_is
from ivr.services import current_services
from ivr.signature import check_signature

log = structlog.get_logger()

bp = Blueprint("ivr", __name__, url_prefix="/ivr")

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
DTMF = re.compile(r"[0-9*#]{0,40}")
NOT_DTMF = "?"  # stands for any input that is not keys: a wrong entry at every state
ENDED_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}
# What a <Pay> callback may hand to the flow: never card digits (Twilio masks them). The
# error fields say why a card was not collected (https://www.twilio.com/docs/voice/twiml/pay).
# ``ProfileId``: the Stripe connector's customer for the method (issue 8, item 2), an id.
PAY_FIELDS = ("Result", "PaymentToken", "PaymentCardNumber", "PaymentCardType", "ExpirationDate", "ProfileId")
PAY_ERROR_FIELDS = ("PaymentError", "PayErrorCode", "ConnectorError")
# What a <Record> callback hands to the flow: the recording's id and length (not its URL).
RECORD_FIELDS = ("RecordingSid", "RecordingDuration")


def _xml(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/xml")


@bp.before_request
def _verify_twilio() -> Response | None:
    services = current_services()
    checker = services.signature_checker()
    if checker is None:  # only in a CLI-built app: the webhooks are off without a token
        return _xml(twiml.empty(), 403)
    refused = check_signature(request, checker, services.settings.public_url)
    if refused is not None:
        return refused
    sid = request.form.get("CallSid", "")
    bind_call(sid if CALL_SID.fullmatch(sid) else "invalid", uuid.uuid4().hex)
    if not CALL_SID.fullmatch(sid):
        log.warning("call_sid_malformed")
        return _xml(_apology())
    return None


@bp.teardown_request
def _unbind(_exc: BaseException | None) -> None:
    clear_call()


def _style() -> twiml.Style:
    """This deployment's TwiML: URLs on the public URL (else the request's own), voices."""
    services = current_services()
    return services.twiml_style(services.settings.public_url or request.url_root.rstrip("/"))


def _apology() -> str:
    return twiml.apology(current_services().catalog.text("en", "error_apology"), style=_style())


def _digits() -> str | None:
    form = request.form
    if "RecordingSid" in form:  # a <Record> callback: the recording stands for the keys
        return "recorded"
    if "Result" in form:  # a <Pay> callback: its outcome stands where keys would
        return form["Result"][:40]
    if "DialCallStatus" in form:  # the end of a <Dial>: how it ended
        return form["DialCallStatus"][:40]
    if "Digits" not in form:
        return None
    digits = form["Digits"]
    if not digits and form.get("FinishedOnKey") == "#":
        return "#"  # the finish key alone (actionOnEmptyResult): e.g. the full balance
    return digits if DTMF.fullmatch(digits) else NOT_DTMF


def _pay_payload() -> dict[str, str]:
    form = request.form
    payload = {name: form[name][:64] for name in (*PAY_FIELDS, *RECORD_FIELDS) if name in form}
    payload.update({name: form[name][:200] for name in PAY_ERROR_FIELDS if name in form})
    return payload


def _run_after_commit(hooks: list[Callable[[], None]]) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception:  # noqa: BLE001 - a receipt must never fail the call
            log.exception("after_commit_failed")


@bp.post("/voice")
def voice() -> Response:
    services = current_services()
    form = request.form
    caller = form.get("From", "")
    with services.unit_of_work() as uow:
        record = CallRecord(
            call_sid=form["CallSid"],
            from_number=caller[:40],
            to_number=form.get("To", "")[:40],
            state=services.flow_engine.flow.start,
            started_at=services.clock.now(),
            data={"caller_e164": normalize_caller_id(caller)},
        )
        ctx = services.context(record, uow)
        reply = services.flow_engine.start(ctx)  # stores the call (a replay: loads it)
        uow.commit_step(ctx.call)
    return _xml(twiml.render(reply, _style()))


@bp.post("/step")
def step() -> Response:
    services = current_services()
    step_number = request.args.get("n", default=-1, type=int)
    with services.unit_of_work() as uow:
        call = uow.calls.load_for_update(request.form["CallSid"])
        if call is None:
            log.warning("step_for_unknown_call")
            return _xml(_apology())
        step_is(call.state)
        ctx = services.context(call, uow)
        reply = services.flow_engine.handle(ctx, Input(step_number, _digits(), _pay_payload()))
        uow.commit_step(ctx.call)
    _run_after_commit(ctx.after_commit)
    return _xml(twiml.render(reply, _style()))


@bp.post("/status")
def status() -> Response:
    services = current_services()
    call_status = request.form.get("CallStatus", "")
    if call_status not in ENDED_STATUSES:
        return _xml(twiml.empty())
    with services.unit_of_work() as uow:
        call = uow.calls.load_for_update(request.form["CallSid"])
        if call is not None:
            outcome = "abandoned" if call_status == "completed" else call_status
            services.flow_engine.end(services.context(call, uow), outcome)
            uow.commit_step(call)
    return _xml(twiml.empty())


@bp.errorhandler(Exception)
def _failed(exc: Exception) -> Response:
    log.exception("webhook_failed", error_type=type(exc).__name__)
    return _xml(_apology())


bp.register_error_handler(413, lambda _exc: _xml(twiml.empty(), 413))  # unreadable body: no apology
