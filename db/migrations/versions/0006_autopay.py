"""Auto Pay: the agreements, their history, the written notices and the drafts.

Revision ID: 0006_autopay
Revises: 0003_audit_chain (the integrator re-chains it after 0005)
Create Date: 2026-12-01

Nothing here touches an existing table: four new ones. One live agreement per account
is a partial unique index (PostgreSQL and SQLite both have them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_autopay"
down_revision: str | None = "0005_posting_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "status IN ('active', 'suspended')"


def _utc(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "autopay_enrollments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("payment_method_id", sa.Integer(), nullable=True),
        sa.Column("method_processor_id", sa.String(length=64), nullable=False),
        sa.Column("method_kind", sa.String(length=4), nullable=False),
        sa.Column("method_brand", sa.String(length=32), nullable=False),
        sa.Column("method_last4", sa.String(length=4), nullable=False),
        sa.Column("terms_version", sa.String(length=20), nullable=False),
        _utc("agreed_at"),
        sa.Column("channel", sa.String(length=6), nullable=False),
        sa.Column("agreed_by", sa.String(length=120), nullable=False),
        sa.Column("first_due_after", sa.Date(), nullable=False),
        sa.Column("recording_sid", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        _utc("status_changed_at"),
        sa.Column("status_reason", sa.String(length=40), nullable=True),
        sa.Column("consecutive_declines", sa.Integer(), nullable=False),
        _utc("suspension_told_at", nullable=True),
        sa.CheckConstraint(
            "channel IN ('ivr', 'portal', 'staff')", name=op.f("ck_autopay_enrollments_channel")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'cancelled', 'suspended')", name=op.f("ck_autopay_enrollments_status")
        ),
        sa.CheckConstraint(
            "method_kind IN ('card', 'bank')", name=op.f("ck_autopay_enrollments_method_kind")
        ),
        sa.CheckConstraint(
            "length(method_last4) = 4", name=op.f("ck_autopay_enrollments_method_last4_length")
        ),
        sa.CheckConstraint(
            "consecutive_declines >= 0", name=op.f("ck_autopay_enrollments_declines_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_autopay_enrollments_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_autopay_enrollments_payment_method_id_payment_methods"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autopay_enrollments")),
    )
    op.create_index("ix_autopay_enrollments_account_id", "autopay_enrollments", ["account_id"])
    op.create_index(
        "uq_autopay_enrollments_live_account",
        "autopay_enrollments",
        ["account_id"],
        unique=True,
        postgresql_where=sa.text(LIVE),
        sqlite_where=sa.text(LIVE),
    )
    op.create_table(
        "autopay_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        _utc("at"),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=7), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "action IN ('enrolled', 'method_changed', 'cancelled', 'suspended')",
            name=op.f("ck_autopay_changes_action"),
        ),
        sa.CheckConstraint(
            "channel IN ('ivr', 'portal', 'staff', 'autopay')", name=op.f("ck_autopay_changes_channel")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_autopay_changes_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["autopay_enrollments.id"],
            name=op.f("fk_autopay_changes_enrollment_id_autopay_enrollments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autopay_changes")),
    )
    op.create_index("ix_autopay_changes_account_at", "autopay_changes", ["account_id", "at"])
    op.create_table(
        "autopay_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("medium", sa.String(length=5), nullable=False),
        sa.Column("to_masked", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _utc("created_at"),
        _utc("sent_at", nullable=True),
        sa.Column("failure", sa.String(length=200), nullable=True),
        sa.CheckConstraint("medium IN ('email', 'text')", name=op.f("ck_autopay_notices_medium")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_autopay_notices_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["autopay_enrollments.id"],
            name=op.f("fk_autopay_notices_enrollment_id_autopay_enrollments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autopay_notices")),
    )
    op.create_index("ix_autopay_notices_account_id", "autopay_notices", ["account_id"])
    op.create_table(
        "autopay_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("attempt_id", sa.String(length=40), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        _utc("created_at"),
        _utc("completed_at", nullable=True),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_autopay_drafts_amount_positive")),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'processing', 'declined', 'failed', 'unknown')",
            name=op.f("ck_autopay_drafts_status"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_autopay_drafts_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["payment_attempts.id"],
            name=op.f("fk_autopay_drafts_attempt_id_payment_attempts"),
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["autopay_enrollments.id"],
            name=op.f("fk_autopay_drafts_enrollment_id_autopay_enrollments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autopay_drafts")),
        sa.UniqueConstraint("account_id", "due_date", name="uq_autopay_drafts_account_due"),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_autopay_drafts_attempt_id")),
    )
    op.create_index("ix_autopay_drafts_enrollment_id", "autopay_drafts", ["enrollment_id"])


def downgrade() -> None:
    op.drop_index("ix_autopay_drafts_enrollment_id", table_name="autopay_drafts")
    op.drop_table("autopay_drafts")
    op.drop_index("ix_autopay_notices_account_id", table_name="autopay_notices")
    op.drop_table("autopay_notices")
    op.drop_index("ix_autopay_changes_account_at", table_name="autopay_changes")
    op.drop_table("autopay_changes")
    op.drop_index("uq_autopay_enrollments_live_account", table_name="autopay_enrollments")
    op.drop_index("ix_autopay_enrollments_account_id", table_name="autopay_enrollments")
    op.drop_table("autopay_enrollments")
