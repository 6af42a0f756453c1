"""The tables. Money is integer cents; time is aware UTC; no secret is stored in clear."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    """A member's account as imported from the billing system."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("account_type IN ('residential', 'commercial')", name="account_type"),
        CheckConstraint("past_due_cents >= 0", name="past_due_not_negative"),
        CheckConstraint("language IS NULL OR language IN ('en', 'es')", name="language"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_number: Mapped[str] = mapped_column(String(20), unique=True)
    account_type: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(120))
    # Argon2id over HMAC-SHA256(pepper) of the SSN / tax-ID last four; never the digits.
    ssn_hash: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str | None] = mapped_column(String(2))
    email: Mapped[str | None] = mapped_column(String(254))
    balance_cents: Mapped[int] = mapped_column(BigInteger)
    past_due_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    due_date: Mapped[date] = mapped_column(Date)
    # When the balance was imported: payments taken after this reduce the spoken balance.
    balance_as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    # The processor's customer (cus_...), created when a method is first saved.
    processor_customer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Phone(Base):
    """A phone number on file (E.164), shared by Call Capture and the portal."""

    __tablename__ = "phones"
    __table_args__ = (
        UniqueConstraint("account_id", "e164", name="uq_phones_account_number"),
        Index("ix_phones_e164", "e164"),
        CheckConstraint("created_via IN ('import', 'portal', 'ivr')", name="created_via"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(String(16))
    created_via: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PinCredential(Base):
    """The phone PIN of an account, with its failure counter and lock."""

    __tablename__ = "pin_credentials"
    __table_args__ = (
        CheckConstraint("origin IN ('member', 'legacy', 'none')", name="origin"),
        CheckConstraint("failure_count >= 0", name="failure_count_not_negative"),
        CheckConstraint(
            "(origin = 'none') = (pin_hash IS NULL)", name="hash_matches_origin"
        ),
    )

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(8), default="none")
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CallerThrottle(Base):
    """Failed PIN/SSN entries per caller number, to slow guessing across accounts."""

    __tablename__ = "caller_throttle"
    __table_args__ = (CheckConstraint("failure_count >= 0", name="failure_count_not_negative"),)

    caller: Mapped[str] = mapped_column(String(32), primary_key=True)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Call(Base):
    """One phone call and where it stands in the flow, keyed by Twilio's CallSid."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'ended')", name="status"),
        CheckConstraint("step >= 0", name="step_not_negative"),
        Index("ix_calls_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    from_number: Mapped[str] = mapped_column(String(40))
    to_number: Mapped[str] = mapped_column(String(40))
    language: Mapped[str] = mapped_column(String(2), default="en")
    state: Mapped[str] = mapped_column(String(40))
    step: Mapped[int] = mapped_column(Integer, default=0)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    # Non-secret flow context (candidate accounts, counters, pending notice...).
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(8), default="active")
    outcome: Mapped[str | None] = mapped_column(String(24))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """An append-only trail entry: who did what, when, where; never a secret.

    ``seq``, ``prev_hash`` and ``hash`` chain the entries (``db.audit_chain``): an entry
    is inserted without them (all three NULL: unsealed) and the sealer
    (``db.audit_sealer``) sets them, in order, moments later.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_call_sid", "call_sid"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
        UniqueConstraint("seq", name="uq_audit_events_seq"),
        # What the sealer reads, in id order: only the events not yet sealed (a few).
        Index(
            "ix_audit_events_unsealed", "id",
            postgresql_where=text("seq IS NULL"), sqlite_where=text("seq IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event: Mapped[str] = mapped_column(String(40))
    call_sid: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(String(120))
    os_user: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    process: Mapped[str | None] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PaymentMethod(Base):
    """A stored card or bank account, shared by the IVR and the portal.

    Only what PCI DSS lets us keep: processor ids, brand, last four, expiry.
    """

    __tablename__ = "payment_methods"
    __table_args__ = (
        CheckConstraint("kind IN ('card', 'bank')", name="kind"),
        CheckConstraint("created_via IN ('ivr', 'portal')", name="created_via"),
        CheckConstraint("length(last4) = 4", name="last4_length"),
        CheckConstraint("exp_month IS NULL OR (exp_month BETWEEN 1 AND 12)", name="exp_month"),
        Index("ix_payment_methods_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    processor_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(4))
    brand: Mapped[str] = mapped_column(String(32))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    created_via: Mapped[str] = mapped_column(String(6))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A bank account's debit authorization at the processor (mandate_...); None for a card.
    mandate_id: Mapped[str | None] = mapped_column(String(64))


class PaymentAttempt(Base):
    """One confirmed charge attempt, written BEFORE the processor is called.

    Its ``id`` is the processor's idempotency key; ``(call_sid, attempt_no)`` is unique,
    so a replayed confirm cannot create a second attempt. The processor's answer is
    recorded here before the caller hears it (SECURITY 15, 16).
    """

    __tablename__ = "payment_attempts"
    __table_args__ = (
        UniqueConstraint("call_sid", "attempt_no", name="uq_payment_attempts_call_attempt"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'processing', 'declined', 'failed', 'unknown')",
            name="status",
        ),
        Index("ix_payment_attempts_account_created", "account_id", "created_at"),
        # The per-caller decline count of the card-testing cap (SECURITY 15a).
        Index("ix_payment_attempts_caller_declines", "caller", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "pa_" + random hex
    call_sid: Mapped[str] = mapped_column(String(64))
    attempt_no: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    method_processor_id: Mapped[str] = mapped_column(String(64))
    method_brand: Mapped[str] = mapped_column(String(32))
    method_last4: Mapped[str] = mapped_column(String(4))
    caller: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    processor_id: Mapped[str | None] = mapped_column(String(64))  # pi_...
    decline_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Payment(Base):
    """A payment taken: one per succeeded attempt, with the confirmation number said."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        Index("ix_payments_account_taken", "account_id", "taken_at"),
        Index("ix_payments_taken_at", "taken_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("payment_attempts.id"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    confirmation: Mapped[str] = mapped_column(String(12), unique=True)  # digits, random
    processor_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="succeeded")
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())
    receipt_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The posting batch this payment went to the billing system in (``db.posting_batches``):
    # set once, never changed, so each payment is posted in exactly one batch.
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("posting_batches.id", ondelete="RESTRICT"), index=True
    )


class PostingBatch(Base):
    """One numbered file of payments (and processor adjustments) for the billing system."""

    __tablename__ = "posting_batches"
    __table_args__ = (
        CheckConstraint("line_count >= 0", name="line_count_not_negative"),
        CheckConstraint("exports >= 1", name="exported_at_least_once"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the batch number
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime())  # payments taken before it
    line_count: Mapped[int] = mapped_column(Integer)
    total_cents: Mapped[int] = mapped_column(BigInteger)  # payments less adjustments
    created_by: Mapped[str | None] = mapped_column(String(120))  # OS user and host
    exports: Mapped[int] = mapped_column(Integer, default=1)  # 1 + each --reexport
    last_exported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PostingAdjustment(Base):
    """A refund or dispute made at the processor (its dashboard), posted in one batch."""

    __tablename__ = "posting_adjustments"
    __table_args__ = (
        CheckConstraint("kind IN ('refund', 'dispute')", name="kind"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    processor_id: Mapped[str] = mapped_column(String(64), unique=True)  # re_... / du_...
    kind: Mapped[str] = mapped_column(String(8))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # what left the utility: posted negative
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    batch_id: Mapped[int] = mapped_column(ForeignKey("posting_batches.id", ondelete="RESTRICT"), index=True)


# --- Auto Pay (issue 10): what the member agreed to, its history, and the drafts ------


class AutopayEnrollment(Base):
    """One Auto Pay agreement: what the member agreed to, when, through which channel.

    The agreed terms (method, terms version, first bill covered, who and when) are never
    changed once written: a new method is a new agreement, and the old one ends
    (``cancelled``, reason ``replaced``). Only ``status`` and its reason and time move.
    One live (active or suspended) agreement per account. Kept for as long as it lasts
    and two years after (SECURITY 16a): the account cannot be deleted under it.
    """

    __tablename__ = "autopay_enrollments"
    __table_args__ = (
        CheckConstraint("channel IN ('ivr', 'portal', 'staff')", name="channel"),
        CheckConstraint("status IN ('active', 'cancelled', 'suspended')", name="status"),
        CheckConstraint("method_kind IN ('card', 'bank')", name="method_kind"),
        CheckConstraint("length(method_last4) = 4", name="method_last4_length"),
        CheckConstraint("consecutive_declines >= 0", name="declines_not_negative"),
        Index(
            "uq_autopay_enrollments_live_account",
            "account_id",
            unique=True,
            postgresql_where=text("status IN ('active', 'suspended')"),
            sqlite_where=text("status IN ('active', 'suspended')"),
        ),
        Index("ix_autopay_enrollments_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    # The stored method while it is on file; the snapshot below is what was agreed to.
    payment_method_id: Mapped[int | None] = mapped_column(
        ForeignKey("payment_methods.id", ondelete="SET NULL")
    )
    method_processor_id: Mapped[str] = mapped_column(String(64))
    method_kind: Mapped[str] = mapped_column(String(4))
    method_brand: Mapped[str] = mapped_column(String(32))
    method_last4: Mapped[str] = mapped_column(String(4))
    terms_version: Mapped[str] = mapped_column(String(20))
    agreed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    channel: Mapped[str] = mapped_column(String(6))
    agreed_by: Mapped[str] = mapped_column(String(120))  # call SID, staff name, "portal"
    # Bills due after this day are drafted: the bill already issued is not covered.
    first_due_after: Mapped[date] = mapped_column(Date)
    # A bank account authorized by phone: the <Record> of the caller's agreement.
    recording_sid: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(10))
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_reason: Mapped[str | None] = mapped_column(String(40))
    consecutive_declines: Mapped[int] = mapped_column(Integer, default=0)
    # A suspension is said on the member's next call, once.
    suspension_told_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AutopayChange(Base):
    """The history of the agreements, append-only: enrolled, method changed, cancelled,
    suspended; by whom, through which channel, why."""

    __tablename__ = "autopay_changes"
    __table_args__ = (
        CheckConstraint(
            "action IN ('enrolled', 'method_changed', 'cancelled', 'suspended')", name="action"
        ),
        CheckConstraint("channel IN ('ivr', 'portal', 'staff', 'autopay')", name="channel"),
        Index("ix_autopay_changes_account_at", "account_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(
        ForeignKey("autopay_enrollments.id", ondelete="RESTRICT")
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(7))
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(String(200))


class AutopayNotice(Base):
    """A written notice to the member (the terms, a change, a decline): what was sent,
    to which masked address, and when; kept as the trail of what the member was told."""

    __tablename__ = "autopay_notices"
    __table_args__ = (
        CheckConstraint("medium IN ('email', 'text')", name="medium"),
        Index("ix_autopay_notices_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("autopay_enrollments.id", ondelete="RESTRICT")
    )
    kind: Mapped[str] = mapped_column(String(20))
    medium: Mapped[str] = mapped_column(String(5))
    to_masked: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failure: Mapped[str | None] = mapped_column(String(200))


class AutopayDraft(Base):
    """One bill drafted by Auto Pay: at most one per account and due date, written with
    its payment attempt before the processor is called (the attempt's id is the key)."""

    __tablename__ = "autopay_drafts"
    __table_args__ = (
        UniqueConstraint("account_id", "due_date", name="uq_autopay_drafts_account_due"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'processing', 'declined', 'failed', 'unknown')",
            name="status",
        ),
        Index("ix_autopay_drafts_enrollment_id", "enrollment_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(
        ForeignKey("autopay_enrollments.id", ondelete="RESTRICT")
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    due_date: Mapped[date] = mapped_column(Date)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("payment_attempts.id"), unique=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    decline_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
