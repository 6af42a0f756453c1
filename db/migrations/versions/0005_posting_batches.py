"""Numbered posting batches: each payment goes to the billing system in exactly one.

Revision ID: 0005_posting_batches
Revises: 0004
Create Date: 2026-12-01

``posting_batches`` numbers the files (``securepay payments export --batch``),
``payments.batch_id`` ties each payment to the one batch it was posted in, and
``posting_adjustments`` holds the refunds and disputes made at the processor, each
posted once. Payments already taken have no batch: the first batch posts them all
(``--batch --since`` limits it, for a cut-over from window exports).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_posting_batches"
down_revision: str | None = "0004_mandates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "posting_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.Column("exports", sa.Integer(), nullable=False),
        sa.Column("last_exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("line_count >= 0", name=op.f("ck_posting_batches_line_count_not_negative")),
        sa.CheckConstraint("exports >= 1", name=op.f("ck_posting_batches_exported_at_least_once")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posting_batches")),
    )
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("batch_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_payments_batch_id_posting_batches"), "posting_batches", ["batch_id"], ["id"],
            ondelete="RESTRICT",
        )
        batch.create_index(op.f("ix_payments_batch_id"), ["batch_id"])
    op.create_table(
        "posting_adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("processor_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("kind IN ('refund', 'dispute')", name=op.f("ck_posting_adjustments_kind")),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_posting_adjustments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["posting_batches.id"],
            name=op.f("fk_posting_adjustments_batch_id_posting_batches"), ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"],
            name=op.f("fk_posting_adjustments_payment_id_payments"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posting_adjustments")),
        sa.UniqueConstraint("processor_id", name=op.f("uq_posting_adjustments_processor_id")),
    )
    op.create_index(op.f("ix_posting_adjustments_batch_id"), "posting_adjustments", ["batch_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_posting_adjustments_batch_id"), table_name="posting_adjustments")
    op.drop_table("posting_adjustments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_index(op.f("ix_payments_batch_id"))
        batch.drop_constraint(op.f("fk_payments_batch_id_posting_batches"), type_="foreignkey")
        batch.drop_column("batch_id")
    op.drop_table("posting_batches")
