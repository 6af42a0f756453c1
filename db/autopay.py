"""Auto Pay agreements, their history and the drafts, in SQL (one store for the phone,
the portal, staff and the draft run).

An agreement's terms are written once. Enrolling again or changing the method ends the
live agreement (``cancelled``, reason ``replaced``) and writes a new one; cancelling and
suspending change only the status, its reason and time. Every change is a row of
``autopay_changes``. One live (active or suspended) agreement per account is a partial
unique index; the account's row is locked first, so two simultaneous enrollments wait
for each other instead of failing on it.

Nothing is committed here: the caller's unit of work does that.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import (
    Account,
    AutopayChange,
    AutopayDraft,
    AutopayEnrollment,
)
from db.repositories import AccountNotFound
from db.stored_methods import StoredMethod
from payments.autopay_terms import (
    ChangeView,
    Channel,
    DraftView,
    EnrollmentStatus,
    EnrollmentView,
)

__all__ = ["LIVE", "NotEnrolled", "SqlAutopay", "enrollment_view"]

LIVE = ("active", "suspended")
# The channel of changes made by the draft run itself (a suspension after declines).
RUN_CHANNEL = "autopay"


class NotEnrolled(LookupError):
    """The account has no live Auto Pay agreement."""


def enrollment_view(row: AutopayEnrollment) -> EnrollmentView:
    return EnrollmentView(
        id=row.id,
        account_id=row.account_id,
        payment_method_id=row.payment_method_id,
        method_processor_id=row.method_processor_id,
        method_kind=row.method_kind,
        method_brand=row.method_brand,
        method_last4=row.method_last4,
        terms_version=row.terms_version,
        agreed_at=row.agreed_at,
        channel=cast(Channel, row.channel),
        agreed_by=row.agreed_by,
        first_due_after=row.first_due_after,
        recording_sid=row.recording_sid,
        status=cast(EnrollmentStatus, row.status),
        status_changed_at=row.status_changed_at,
        status_reason=row.status_reason,
        consecutive_declines=row.consecutive_declines,
    )


def _draft(row: AutopayDraft) -> DraftView:
    return DraftView(
        id=row.id,
        enrollment_id=row.enrollment_id,
        due_date=row.due_date,
        amount_cents=row.amount_cents,
        status=row.status,
        decline_code=row.decline_code,
        attempt_id=row.attempt_id,
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


class SqlAutopay:
    def __init__(self, session: Session) -> None:
        self._session = session

    # -- reading -----------------------------------------------------------------------

    def _live_row(self, account_id: int) -> AutopayEnrollment | None:
        return self._session.scalar(
            select(AutopayEnrollment).where(
                AutopayEnrollment.account_id == account_id, AutopayEnrollment.status.in_(LIVE)
            )
        )

    def live(self, account_id: int) -> EnrollmentView | None:
        """The account's active or suspended agreement, if any."""
        row = self._live_row(account_id)
        return None if row is None else enrollment_view(row)

    def get(self, enrollment_id: int) -> EnrollmentView:
        row = self._session.get(AutopayEnrollment, enrollment_id)
        if row is None:
            raise NotEnrolled(f"no Auto Pay agreement {enrollment_id}")
        return enrollment_view(row)

    def agreements(self, account_id: int) -> list[EnrollmentView]:
        """Every agreement the account ever made, oldest first."""
        rows = self._session.scalars(
            select(AutopayEnrollment)
            .where(AutopayEnrollment.account_id == account_id)
            .order_by(AutopayEnrollment.agreed_at, AutopayEnrollment.id)
        )
        return [enrollment_view(row) for row in rows]

    def history(self, account_id: int) -> list[ChangeView]:
        rows = self._session.scalars(
            select(AutopayChange)
            .where(AutopayChange.account_id == account_id)
            .order_by(AutopayChange.at, AutopayChange.id)
        )
        return [
            ChangeView(row.enrollment_id, row.at, row.action, row.channel, row.actor, row.reason)
            for row in rows
        ]

    def listing(self, status: str | None = None) -> list[tuple[str, EnrollmentView]]:
        """``(account_number, agreement)``; with ``status`` only those, else the live ones."""
        query = select(Account.account_number, AutopayEnrollment).join(
            Account, Account.id == AutopayEnrollment.account_id
        )
        query = query.where(
            AutopayEnrollment.status == status if status else AutopayEnrollment.status.in_(LIVE)
        )
        rows = self._session.execute(query.order_by(AutopayEnrollment.agreed_at, AutopayEnrollment.id))
        return [(row.account_number, enrollment_view(row.AutopayEnrollment)) for row in rows]

    def changes_since(self, since: datetime) -> list[tuple[str, ChangeView]]:
        """Every change since ``since``, with its account number (for the billing system)."""
        rows = self._session.execute(
            select(Account.account_number, AutopayChange)
            .join(Account, Account.id == AutopayChange.account_id)
            .where(AutopayChange.at >= since)
            .order_by(AutopayChange.at, AutopayChange.id)
        )
        return [
            (
                row.account_number,
                ChangeView(
                    row.AutopayChange.enrollment_id,
                    row.AutopayChange.at,
                    row.AutopayChange.action,
                    row.AutopayChange.channel,
                    row.AutopayChange.actor,
                    row.AutopayChange.reason,
                ),
            )
            for row in rows
        ]

    def drafts(self, account_id: int) -> list[DraftView]:
        rows = self._session.scalars(
            select(AutopayDraft)
            .where(AutopayDraft.account_id == account_id)
            .order_by(AutopayDraft.due_date, AutopayDraft.id)
        )
        return [_draft(row) for row in rows]

    def count_changes(self, start: datetime, end: datetime) -> dict[str, int]:
        """Changes made in ``[start, end)`` by action: enrolled, method_changed, ..."""
        counts: dict[str, int] = {}
        for action in self._session.scalars(
            select(AutopayChange.action).where(AutopayChange.at >= start, AutopayChange.at < end)
        ):
            counts[action] = counts.get(action, 0) + 1
        return counts

    def count_live(self) -> dict[str, int]:
        """How many agreements are active and suspended (for ``calls stats``)."""
        counts = {"active": 0, "suspended": 0}
        for status in self._session.scalars(
            select(AutopayEnrollment.status).where(AutopayEnrollment.status.in_(LIVE))
        ):
            counts[status] += 1
        return counts

    # -- changing ----------------------------------------------------------------------

    def enroll(
        self,
        account_id: int,
        method: StoredMethod,
        *,
        channel: Channel,
        actor: str,
        terms_version: str,
        first_due_after: date,
        now: datetime,
        recording_sid: str | None = None,
    ) -> EnrollmentView:
        """A new agreement with ``method`` (one of the account's stored methods).

        A live agreement is ended first (``replaced``) and its first bill covered kept:
        changing the method never uncovers a bill. The change is ``enrolled`` or, when
        an agreement was live, ``method_changed``.
        """
        if method.account_id != account_id:
            raise ValueError("the method belongs to another account")
        self._lock_account(account_id)
        earlier = self._live_row(account_id)
        if earlier is not None:
            self._set_status(earlier, "cancelled", "replaced", now)
            self._session.flush()  # the old row leaves the live index before the new one
            first_due_after = earlier.first_due_after
        row = AutopayEnrollment(
            account_id=account_id,
            payment_method_id=method.id,
            method_processor_id=method.processor_id,
            method_kind=method.kind,
            method_brand=method.brand,
            method_last4=method.last4,
            terms_version=terms_version,
            agreed_at=now,
            channel=channel,
            agreed_by=actor,
            first_due_after=first_due_after,
            recording_sid=recording_sid,
            status="active",
            status_changed_at=now,
            status_reason=None,
            consecutive_declines=0,
        )
        self._session.add(row)
        self._session.flush()
        action = "enrolled" if earlier is None else "method_changed"
        self._change(row, action, channel, actor, None, now)
        return enrollment_view(row)

    def cancel(
        self, account_id: int, *, channel: Channel, actor: str, reason: str | None, now: datetime
    ) -> EnrollmentView:
        """End the live agreement; raises ``NotEnrolled`` when there is none."""
        self._lock_account(account_id)
        row = self._live_row(account_id)
        if row is None:
            raise NotEnrolled(f"account {account_id} has no Auto Pay")
        self._set_status(row, "cancelled", "cancelled", now)
        self._change(row, "cancelled", channel, actor, reason, now)
        return enrollment_view(row)

    def suspend(
        self, enrollment_id: int, *, reason: str, channel: str, actor: str, now: datetime
    ) -> EnrollmentView:
        row = self._session.get(AutopayEnrollment, enrollment_id)
        if row is None:
            raise NotEnrolled(f"no Auto Pay agreement {enrollment_id}")
        if row.status == "active":
            self._set_status(row, "suspended", reason, now)
            row.suspension_told_at = None
            self._change(row, "suspended", channel, actor, reason, now)
        return enrollment_view(row)

    def suspend_for_method(
        self, account_id: int, method_id: int, *, channel: str, actor: str, now: datetime
    ) -> EnrollmentView | None:
        """The method is being taken off file: an active agreement that uses it is
        suspended (call before the method's row is deleted)."""
        row = self._live_row(account_id)
        if row is None or row.payment_method_id != method_id or row.status != "active":
            return None
        return self.suspend(row.id, reason="method_removed", channel=channel, actor=actor, now=now)

    def take_untold_suspension(self, account_id: int, now: datetime) -> EnrollmentView | None:
        """A suspension the member has not heard of yet; marked told (said once)."""
        row = self._session.scalar(
            select(AutopayEnrollment).where(
                AutopayEnrollment.account_id == account_id,
                AutopayEnrollment.status == "suspended",
                AutopayEnrollment.suspension_told_at.is_(None),
            )
        )
        if row is None:
            return None
        row.suspension_told_at = now
        self._session.flush()
        return enrollment_view(row)

    # -- the draft run -----------------------------------------------------------------

    def due_on(self, day: date) -> list[int]:
        """Accounts to look at for ``day``: a live agreement covering a bill due that
        day, or a draft of that day still pending (a run that stopped half-way)."""
        covered = (
            select(AutopayEnrollment.account_id)
            .join(Account, Account.id == AutopayEnrollment.account_id)
            .where(
                AutopayEnrollment.status.in_(LIVE),  # a suspended one is reported as skipped
                Account.due_date == day,
                AutopayEnrollment.first_due_after < day,
            )
        )
        pending = select(AutopayDraft.account_id).where(
            AutopayDraft.due_date == day, AutopayDraft.status == "pending"
        )
        ids = set(self._session.scalars(covered)) | set(self._session.scalars(pending))
        return sorted(ids)

    def draft_for(self, account_id: int, due_date: date) -> DraftView | None:
        row = self._session.scalar(
            select(AutopayDraft).where(
                AutopayDraft.account_id == account_id, AutopayDraft.due_date == due_date
            )
        )
        return None if row is None else _draft(row)

    def open_draft(
        self,
        enrollment_id: int,
        account_id: int,
        due_date: date,
        *,
        attempt_id: str,
        amount_cents: int,
        now: datetime,
    ) -> DraftView:
        row = AutopayDraft(
            enrollment_id=enrollment_id,
            account_id=account_id,
            due_date=due_date,
            attempt_id=attempt_id,
            amount_cents=amount_cents,
            status="pending",
            created_at=now,
        )
        self._session.add(row)
        self._session.flush()
        return _draft(row)

    def settle_draft(
        self, draft_id: int, *, status: str, now: datetime, decline_code: str | None = None
    ) -> EnrollmentView:
        """Record a draft's outcome; a decline counts against the agreement, a payment
        clears the count. Returns the agreement as it stands."""
        draft = self._session.get(AutopayDraft, draft_id)
        if draft is None:
            raise LookupError(f"no Auto Pay draft {draft_id}")
        draft.status = status
        draft.decline_code = decline_code
        draft.completed_at = now
        enrollment = self._session.get(AutopayEnrollment, draft.enrollment_id)
        if enrollment is None:  # pragma: no cover - a foreign key
            raise LookupError(f"no Auto Pay agreement {draft.enrollment_id}")
        if status == "declined":
            enrollment.consecutive_declines += 1
        elif status in ("succeeded", "processing"):
            enrollment.consecutive_declines = 0
        self._session.flush()
        return enrollment_view(enrollment)

    # -- internals ---------------------------------------------------------------------

    def _set_status(self, row: AutopayEnrollment, status: str, reason: str | None, now: datetime) -> None:
        row.status = status
        row.status_reason = reason
        row.status_changed_at = now

    def _change(
        self,
        row: AutopayEnrollment,
        action: str,
        channel: str,
        actor: str,
        reason: str | None,
        now: datetime,
    ) -> None:
        self._session.add(
            AutopayChange(
                enrollment_id=row.id,
                account_id=row.account_id,
                at=now,
                action=action,
                channel=channel,
                actor=actor,
                reason=reason,
            )
        )
        self._session.flush()

    def _lock_account(self, account_id: int) -> None:
        found = self._session.scalar(
            select(Account.id).where(Account.id == account_id).with_for_update(key_share=True)
        )
        if found is None:
            raise AccountNotFound(f"no account with id {account_id}")
