"""The ledger: stored payment methods, payment attempts, payments; the processor's customer.

Revision ID: 0002_ledger
Revises: 0001_initial
Create Date: 2026-11-23

On SQLite, adding the unique ``accounts.processor_customer_id`` recreates ``accounts``
(batch mode); ``env.py`` runs with foreign keys off, so no child row is cascaded away.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ledger"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("method_processor_id", sa.String(length=64), nullable=False),
        sa.Column("method_brand", sa.String(length=32), nullable=False),
        sa.Column("method_last4", sa.String(length=4), nullable=False),
        sa.Column("caller", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("processor_id", sa.String(length=64), nullable=True),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'processing', 'declined', 'failed', 'unknown')",
            name=op.f("ck_payment_attempts_status"),
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_payment_attempts_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_payment_attempts_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_attempts")),
        sa.UniqueConstraint("call_sid", "attempt_no", name="uq_payment_attempts_call_attempt"),
    )
    op.create_index("ix_payment_attempts_account_created", "payment_attempts", ["account_id", "created_at"])
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("processor_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("created_via", sa.String(length=6), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("created_via IN ('ivr', 'portal')", name=op.f("ck_payment_methods_created_via")),
        sa.CheckConstraint("kind IN ('card', 'bank')", name=op.f("ck_payment_methods_kind")),
        sa.CheckConstraint(
            "exp_month IS NULL OR (exp_month BETWEEN 1 AND 12)", name=op.f("ck_payment_methods_exp_month")
        ),
        sa.CheckConstraint("length(last4) = 4", name=op.f("ck_payment_methods_last4_length")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_payment_methods_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        sa.UniqueConstraint("processor_id", name=op.f("uq_payment_methods_processor_id")),
    )
    op.create_index("ix_payment_methods_account_id", "payment_methods", ["account_id"])
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("confirmation", sa.String(length=12), nullable=False),
        sa.Column("processor_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receipt_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_payments_account_id_accounts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["payment_attempts.id"], name=op.f("fk_payments_attempt_id_payment_attempts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_payments_attempt_id")),
        sa.UniqueConstraint("confirmation", name=op.f("uq_payments_confirmation")),
        sa.UniqueConstraint("processor_id", name=op.f("uq_payments_processor_id")),
    )
    op.create_index("ix_payments_account_taken", "payments", ["account_id", "taken_at"])
    op.create_index("ix_payments_taken_at", "payments", ["taken_at"])
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("processor_customer_id", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_accounts_processor_customer_id"), ["processor_customer_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_accounts_processor_customer_id"), type_="unique")
        batch_op.drop_column("processor_customer_id")

    op.drop_index("ix_payments_taken_at", table_name="payments")
    op.drop_index("ix_payments_account_taken", table_name="payments")
    op.drop_table("payments")
    op.drop_index("ix_payment_methods_account_id", table_name="payment_methods")
    op.drop_table("payment_methods")
    op.drop_index("ix_payment_attempts_account_created", table_name="payment_attempts")
    op.drop_table("payment_attempts")
