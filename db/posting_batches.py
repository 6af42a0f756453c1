"""Numbered posting batches: each payment goes to the billing system exactly once.

``create_batch`` takes every counted payment that is in no batch yet (``payments.batch_id``
is NULL) and was taken before the cut-off, with the refunds and disputes the processor
reports that no batch holds yet, and numbers them as one batch. A payment's
``batch_id`` is set by ``UPDATE ... WHERE batch_id IS NULL``: two exports at once cannot
both take it (PostgreSQL re-checks the condition after the other's commit; SQLite
serializes writers). An adjustment's ``processor_id`` is unique. ``load_batch`` reads a
batch back as it was, for ``--reexport``.

Every payment is a line, whatever took it: a call, the portal, or an Auto Pay draft
(``channel``). Money is integer cents; refunds and disputes are negative lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.ledger import COUNTED_PAYMENT_STATUSES
from db.models import Account, Payment, PaymentAttempt, PostingAdjustment, PostingBatch
from payments.gateway import Adjustment

__all__ = [
    "Batch", "NoSuchBatch", "PostingLine", "create_batch", "last_cutoff", "load_batch", "mark_reexported",
]

LineKind = Literal["payment", "refund", "dispute"]


class NoSuchBatch(LookupError):
    """No batch has that number."""


@dataclass(frozen=True)
class PostingLine:
    kind: LineKind
    account_number: str
    amount_cents: int  # signed: a refund or dispute is negative
    occurred_at: datetime  # aware UTC: when taken, refunded or disputed
    confirmation: str  # the payment's confirmation number (an adjustment: its payment's)
    processor_id: str  # pi_... for a payment, re_... / du_... for an adjustment
    payment_processor_id: str
    method_brand: str
    method_last4: str
    channel: str  # ivr, portal, autopay...


@dataclass(frozen=True)
class Batch:
    number: int
    created_at: datetime
    cutoff: datetime
    exports: int
    lines: tuple[PostingLine, ...]

    @property
    def count(self) -> int:
        return len(self.lines)

    @property
    def total_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)


def _channel() -> ColumnElement[Any]:
    # Payments record the channel that took them where the ledger has the column (Auto Pay
    # adds it); until then every payment came from a call.
    column = Payment.__table__.c.get("channel")
    return (column if column is not None else literal("ivr")).label("channel")


def _payment_lines(session: Session, batch_id: int) -> list[PostingLine]:
    rows = session.execute(
        select(
            Account.account_number, Payment.amount_cents, Payment.taken_at, Payment.confirmation,
            Payment.processor_id, PaymentAttempt.method_brand, PaymentAttempt.method_last4, _channel(),
        )
        .join(Account, Account.id == Payment.account_id)
        .join(PaymentAttempt, PaymentAttempt.id == Payment.attempt_id)
        .where(Payment.batch_id == batch_id)
        .order_by(Payment.taken_at, Payment.id)
    )
    return [
        PostingLine("payment", row.account_number, row.amount_cents, row.taken_at, row.confirmation,
                    row.processor_id, row.processor_id, row.method_brand, row.method_last4, str(row.channel))
        for row in rows
    ]


def _adjustment_lines(session: Session, batch_id: int) -> list[PostingLine]:
    rows = session.execute(
        select(
            PostingAdjustment.kind, PostingAdjustment.processor_id.label("adjustment_id"),
            PostingAdjustment.amount_cents, PostingAdjustment.occurred_at, Account.account_number,
            Payment.confirmation, Payment.processor_id, PaymentAttempt.method_brand,
            PaymentAttempt.method_last4, _channel(),
        )
        .join(Payment, Payment.id == PostingAdjustment.payment_id)
        .join(Account, Account.id == Payment.account_id)
        .join(PaymentAttempt, PaymentAttempt.id == Payment.attempt_id)
        .where(PostingAdjustment.batch_id == batch_id)
        .order_by(PostingAdjustment.occurred_at, PostingAdjustment.id)
    )
    return [
        PostingLine(row.kind, row.account_number, -row.amount_cents, row.occurred_at, row.confirmation,
                    row.adjustment_id, row.processor_id, row.method_brand, row.method_last4, str(row.channel))
        for row in rows
    ]


def _insert_adjustments(session: Session, batch_id: int, adjustments: Iterable[Adjustment]) -> int:
    """Record the adjustments of our payments that no batch holds yet; how many."""
    wanted = {a.processor_id: a for a in adjustments}
    if not wanted:
        return 0
    known = set(session.scalars(
        select(PostingAdjustment.processor_id).where(PostingAdjustment.processor_id.in_(wanted))
    ))
    intents = {a.payment_processor_id for a in wanted.values()}
    ours = select(Payment.processor_id, Payment.id).where(Payment.processor_id.in_(intents))
    payment_ids = {row.processor_id: row.id for row in session.execute(ours)}
    added = 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for adjustment in wanted.values():
        payment_id = payment_ids.get(adjustment.payment_processor_id)
        if adjustment.processor_id in known or payment_id is None:  # posted, or not our payment
            continue
        result = session.execute(
            insert(PostingAdjustment).values(
                processor_id=adjustment.processor_id, kind=adjustment.kind, payment_id=payment_id,
                amount_cents=adjustment.amount_cents, occurred_at=adjustment.created_at, batch_id=batch_id,
            ).on_conflict_do_nothing(index_elements=["processor_id"])
        )
        added += result.rowcount  # type: ignore[attr-defined]
    return added


# The PostgreSQL advisory lock that numbers batches one at a time ("POST" in hex, as a
# bigint); SQLite's BEGIN IMMEDIATE already holds the database's write lock.
LOCK_KEY = 0x504F5354


def _lock(session: Session) -> None:
    """Hold the numbering lock until the transaction ends: batch numbers have no gaps
    (a sequence would lose the numbers of batches rolled back) and no two are the same."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))


def create_batch(
    session: Session,
    now: datetime,
    adjustments: Sequence[Adjustment] = (),
    *,
    since: datetime | None = None,
    created_by: str | None = None,
) -> Batch | None:
    """Number the payments and adjustments not posted yet as the next batch, in the
    caller's transaction (commit to keep it); None, with nothing written, when there is
    nothing to post. ``since``: leave out payments taken before it (a cut-over)."""
    _lock(session)
    number = (session.scalar(select(func.max(PostingBatch.id))) or 0) + 1
    batch = PostingBatch(
        id=number, created_at=now, cutoff=now, line_count=0, total_cents=0, created_by=created_by,
        exports=1, last_exported_at=now,
    )
    session.add(batch)
    session.flush()
    conditions = [
        Payment.batch_id.is_(None),
        Payment.taken_at <= now,
        Payment.status.in_(COUNTED_PAYMENT_STATUSES),
    ]
    if since is not None:
        conditions.append(Payment.taken_at >= since)
    session.execute(
        update(Payment).where(*conditions).values(batch_id=batch.id),
        execution_options={"synchronize_session": False},
    )
    _insert_adjustments(session, batch.id, adjustments)
    lines = (*_payment_lines(session, batch.id), *_adjustment_lines(session, batch.id))
    if not lines:
        session.rollback()
        return None
    batch.line_count = len(lines)
    batch.total_cents = sum(line.amount_cents for line in lines)
    session.flush()
    return Batch(batch.id, now, now, 1, lines)


def load_batch(session: Session, number: int) -> Batch:
    row = session.get(PostingBatch, number)
    if row is None:
        raise NoSuchBatch(f"no batch {number}")
    lines = (*_payment_lines(session, number), *_adjustment_lines(session, number))
    return Batch(row.id, row.created_at, row.cutoff, row.exports, lines)


def mark_reexported(session: Session, number: int, now: datetime) -> Batch:
    """Count one more export of batch ``number`` (in the caller's transaction)."""
    row = session.get(PostingBatch, number, with_for_update=True)
    if row is None:
        raise NoSuchBatch(f"no batch {number}")
    row.exports += 1
    row.last_exported_at = now
    session.flush()
    return load_batch(session, number)


def last_cutoff(session: Session) -> datetime | None:
    """The cut-off of the newest batch: where to ask the processor for adjustments from."""
    cutoff: datetime | None = session.scalar(select(func.max(PostingBatch.cutoff)))
    return cutoff
