"""Enrolling in, changing and cancelling Auto Pay: the one set of rules for the phone,
the portal and staff, over the one store (``db.autopay``).

* The terms agreed to are the current ones (``TERMS_VERSION``).
* The method is one of the account's stored methods; a new card is saved first.
* The bill already issued is not covered: the first bill drafted is the first one due
  after the account's current due date (a change of method keeps what was covered).
* Every enrollment, change and cancellation writes the member a notice with the terms
  (``payments.autopay_notices``), in the same transaction; it is sent after the commit.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from db.autopay import LIVE, SqlAutopay, enrollment_view
from db.models import Account, AutopayEnrollment
from db.stored_methods import SqlStoredMethods, StoredMethod
from payments.autopay_notices import write_notice
from payments.autopay_terms import TERMS_VERSION, Cancelled, Channel, Enrolled, EnrollmentView, Wording

__all__ = ["SqlFlowAutopay", "TermsNotCurrent", "cancel", "enroll"]


class TermsNotCurrent(ValueError):
    """The terms version agreed to is not the one in force."""


def enroll(
    session: Session,
    method: StoredMethod,
    *,
    channel: Channel,
    actor: str,
    terms_version: str,
    wording: Wording,
    now: datetime,
    recording_sid: str | None = None,
) -> Enrolled:
    """Enroll the method's account with ``method``, or change its method to it."""
    if terms_version != TERMS_VERSION:
        raise TermsNotCurrent(f"the terms in force are version {TERMS_VERSION}")
    autopay = SqlAutopay(session)
    current = autopay.live(method.account_id)
    if current is not None and current.status == "active" and current.payment_method_id == method.id:
        return Enrolled(current, "unchanged", ())
    account = session.get(Account, method.account_id)
    if account is None:  # pragma: no cover - a foreign key
        raise LookupError(f"no account {method.account_id}")
    enrollment = autopay.enroll(
        method.account_id,
        method,
        channel=channel,
        actor=actor,
        terms_version=terms_version,
        first_due_after=account.due_date,
        now=now,
        recording_sid=recording_sid,
    )
    change = "enrolled" if current is None else "method_changed"
    notices = write_notice(
        session, "enrolled" if current is None else "method_changed", enrollment, wording=wording, now=now
    )
    return Enrolled(enrollment, change, notices)


def cancel(
    session: Session,
    account_id: int,
    *,
    channel: Channel,
    actor: str,
    reason: str | None,
    wording: Wording,
    now: datetime,
) -> Cancelled:
    """End the live agreement (``db.autopay.NotEnrolled`` when there is none)."""
    ended = SqlAutopay(session).cancel(account_id, channel=channel, actor=actor, reason=reason, now=now)
    return Cancelled(ended, write_notice(session, "cancelled", ended, wording=wording, now=now))


_ENROLLMENTS = cast(Table, AutopayEnrollment.__table__)
# Read by the phone on its steps (the menu on every entry): built once, run on Core.
_LIVE = select(_ENROLLMENTS).where(
    _ENROLLMENTS.c.account_id == bindparam("account_id"), _ENROLLMENTS.c.status.in_(LIVE)
)
# A suspension not yet said, marked said in the same statement (none: nothing changes).
_TAKE_UNTOLD_SUSPENSION = (
    update(_ENROLLMENTS)
    .where(
        _ENROLLMENTS.c.account_id == bindparam("of_account"),  # not a column's name (SET)
        _ENROLLMENTS.c.status == "suspended",
        _ENROLLMENTS.c.suspension_told_at.is_(None),
    )
    .values(suspension_told_at=bindparam("told_at"))
    .returning(*_ENROLLMENTS.c)
)


def _view(row: Any) -> EnrollmentView:
    # A Core row carries the mapped class's attribute names: the one mapping serves both.
    return enrollment_view(cast(AutopayEnrollment, row))


class SqlFlowAutopay:
    """Implements ``ivr.flows.ports.AutopayStore``: what the phone asks of Auto Pay,
    inside the step's transaction. The reads of every menu entry are Core statements;
    enrolling and cancelling go through ``db.autopay`` (the ORM, with the portal's)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def live(self, account_id: int) -> EnrollmentView | None:
        row = self._session.connection().execute(_LIVE, {"account_id": account_id}).one_or_none()
        return None if row is None else _view(row)

    def enroll(
        self,
        account_id: int,
        method_id: int,
        *,
        actor: str,
        wording: Wording,
        now: datetime,
        recording_sid: str | None = None,
    ) -> Enrolled:
        method = SqlStoredMethods(self._session).get(account_id, method_id)
        if method is None:
            raise LookupError(f"no stored method {method_id} on account {account_id}")
        enrolled = enroll(
            self._session,
            method,
            channel="ivr",
            actor=actor,
            terms_version=TERMS_VERSION,
            wording=wording,
            now=now,
            recording_sid=recording_sid,
        )
        self._session.flush()  # written through the ORM: the Core reads above see it now
        return enrolled

    def cancel(self, account_id: int, *, actor: str, wording: Wording, now: datetime) -> Cancelled:
        cancelled = cancel(
            self._session,
            account_id,
            channel="ivr",
            actor=actor,
            reason="cancelled by phone",
            wording=wording,
            now=now,
        )
        self._session.flush()  # written through the ORM: the Core reads above see it now
        return cancelled

    def take_untold_suspension(self, account_id: int, now: datetime) -> EnrollmentView | None:
        row = self._session.connection().execute(
            _TAKE_UNTOLD_SUSPENSION, {"of_account": account_id, "told_at": now}
        ).one_or_none()
        return None if row is None else _view(row)

    def drafted(self, account_id: int, due_date: date) -> bool:
        return SqlAutopay(self._session).draft_for(account_id, due_date) is not None
