"""Contract 1 and SECURITY 10-13: signatures, step order, replays, ended calls, errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - parsing our own app's TwiML in tests
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from sqlalchemy import func, select

from db.models import Call
from ivr.services import EXTENSION_KEY, current_services
from ivr.softphone import Softphone
from tests.members import PIN, Member, add_members
from tests.twilio_requests import RawCall, signed_post

CALLER = "+12025550143"


def calls_count(app: Flask) -> int:
    with app.app_context(), current_services().unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Call)) or 0)


def stored_call(app: Flask, sid: str) -> Call:
    with app.app_context(), current_services().unit_of_work() as uow:
        row = uow.session.scalar(select(Call).where(Call.call_sid == sid))
        assert row is not None
        uow.session.expunge(row)
        return row


def twiml(body: bytes) -> ET.Element:
    root = ET.fromstring(body)  # noqa: S314
    assert root.tag == "Response"
    return root


def test_a_missing_signature_is_refused_and_changes_nothing(app: Flask) -> None:
    call = RawCall(app)
    response = app.test_client().post("/ivr/voice", data={**call.base, "CallStatus": "ringing"})
    assert response.status_code == 403
    assert response.mimetype == "text/xml"
    assert calls_count(app) == 0


def test_a_signature_with_the_wrong_token_is_refused(app: Flask) -> None:
    call = RawCall(app)
    response = signed_post(app, "/ivr/voice", {**call.base, "CallStatus": "ringing"}, token="forged")
    assert response.status_code == 403
    assert calls_count(app) == 0


def test_a_signature_for_other_parameters_is_refused(app: Flask) -> None:
    call = RawCall(app)
    call.start()
    from twilio.request_validator import RequestValidator

    from tests.twilio_requests import PUBLIC_URL, TOKEN

    params = {**call.base, "CallStatus": "in-progress", "Digits": "1"}
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + "/ivr/step?n=1", params)
    tampered = {**params, "Digits": "2"}
    response = signed_post(app, "/ivr/step?n=1", tampered, signature=signature)
    assert response.status_code == 403
    assert stored_call(app, call.sid).step == 1


def test_a_replayed_step_changes_nothing_twice(app: Flask) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = RawCall(app)
    call.start()
    first = call.step(1, "1")
    after_first = stored_call(app, call.sid)
    again = call.step(1, "1")
    assert again.status_code == 200
    assert stored_call(app, call.sid).step == after_first.step
    assert stored_call(app, call.sid).state == "pin_entry"
    assert twiml(again.data).find("Gather") is not None
    assert first.data == again.data


def test_an_out_of_order_step_is_refused_without_effect(app: Flask) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = RawCall(app)
    call.start()
    call.step(1, "1")
    skipped = call.step(7, PIN)
    assert skipped.status_code == 200
    row = stored_call(app, call.sid)
    assert (row.state, row.step, row.verified) == ("pin_entry", 2, False)


def test_an_ended_call_accepts_nothing_more(app: Flask) -> None:
    call = RawCall(app)
    call.start()
    call.status("completed")
    row = stored_call(app, call.sid)
    assert (row.status, row.outcome) == ("ended", "abandoned")
    response = call.step(1, "1")
    assert twiml(response.data).find("Hangup") is not None
    assert stored_call(app, call.sid).step == row.step


def test_a_repeated_first_webhook_does_not_start_a_second_call(app: Flask) -> None:
    call = RawCall(app)
    first = call.start()
    second = call.start()
    assert first.data == second.data
    assert calls_count(app) == 1


def test_a_malformed_call_sid_gets_an_apology(app: Flask) -> None:
    call = RawCall(app)
    call.base["CallSid"] = "CA-not-a-sid"
    root = twiml(call.start().data)
    assert root.find("Hangup") is not None
    assert calls_count(app) == 0


def test_a_step_for_an_unknown_call_gets_an_apology(app: Flask) -> None:
    root = twiml(RawCall(app).step(1, "1").data)
    assert root.find("Hangup") is not None and root.find("Say") is not None


def test_an_internal_error_still_answers_valid_twiml(app: Flask) -> None:
    class Broken:
        flow = app.extensions[EXTENSION_KEY].flow_engine.flow

        def start(self, _ctx: object) -> None:
            raise RuntimeError("boom")

    app.extensions[EXTENSION_KEY].flow_engine = Broken()
    response = RawCall(app).start()
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = twiml(response.data)
    assert root.find("Say") is not None and root.find("Hangup") is not None
    assert calls_count(app) == 0  # rolled back: nothing half-written


def test_keys_that_are_not_dtmf_are_a_wrong_entry(app: Flask) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = RawCall(app)
    call.start()
    response = call.step(1, "１" * 300)
    assert "That is not an option." in response.get_data(as_text=True)
    assert stored_call(app, call.sid).state == "language"


def test_every_url_the_ivr_hands_out_carries_only_the_step_number(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    transcript = phone.call(CALLER, ["1", "2", "10004821#", PIN, "9"])
    for exchange in transcript.exchanges:
        root = ET.fromstring(exchange.body)  # noqa: S314
        for element in root.iter():
            url = element.get("action") or (element.text if element.tag == "Redirect" else None)
            if url:
                query = parse_qs(urlsplit(url).query)
                assert set(query) <= {"n"} and all(v.isdigit() for vs in query.values() for v in vs)


def test_healthz_reports_the_database(app: Flask) -> None:
    assert app.test_client().get("/healthz").status_code == 200
    from db.engine import build_engine

    app.extensions[EXTENSION_KEY].engine = build_engine("sqlite:////nonexistent/dir/x.db")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "unreachable"}
