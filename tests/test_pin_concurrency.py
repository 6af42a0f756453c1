"""SECURITY 7: two simultaneous calls cannot both get an account's last PIN try."""

from __future__ import annotations

import threading

from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent, PinCredential
from ivr.services import current_services
from tests.members import Member, add_members
from tests.twilio_requests import RawCall


def test_two_calls_racing_for_the_last_try_get_only_one(app: Flask) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=["+12025550143"]))
    with app.app_context(), current_services().unit_of_work() as uow:
        row = uow.session.get(PinCredential, account_id)
        assert row is not None
        row.failure_count = 4  # limit is 5: one try left
        row.window_started_at = current_services().clock.now()
        uow.commit()
    calls = [RawCall(app, "+12025550143"), RawCall(app, "+12025550166")]
    pin_step: dict[str, int] = {}
    for call, keys in zip(calls, [["1"], ["1", "10004821"]], strict=True):
        call.start()
        # English: the account found by caller ID (its PIN step at once), or keyed in
        answers = [call.step(n, digits) for n, digits in enumerate(keys, start=1)]
        assert b"Enter your 4-digit PIN." in answers[-1].data
        pin_step[call.sid] = len(keys) + 1
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def guess(call: RawCall, pin: str) -> None:
        barrier.wait()
        statuses.append(call.step(pin_step[call.sid], pin).status_code)

    threads = [
        threading.Thread(target=guess, args=(call, pin))
        for call, pin in zip(calls, ["1111", "2222"], strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200, 200]
    with app.app_context(), current_services().unit_of_work() as uow:
        row = uow.session.get(PinCredential, account_id)
        assert row is not None
        assert row.failure_count == 5 and row.locked_at is not None
        reasons = sorted(
            e.detail["reason"]
            for e in uow.session.scalars(select(AuditEvent).where(AuditEvent.event == "pin_rejected"))
        )
    assert reasons == ["locked", "mismatch"]  # one real try, one refused: never two tries
