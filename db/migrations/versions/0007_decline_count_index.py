"""The per-caller decline count gets an index: ``payment_attempts (caller, status, created_at)``.

Revision ID: 0007_decline_count_index
Revises: 0003_audit_chain
Create Date: 2026-12-01

The card-testing cap (SECURITY 15a) counts a caller's declines of the last 24 hours on
every payment a call starts. Without this index that count scanned the whole table: at
200,000 attempts it was most of the menu step's SQL time (issue 12). Equality on
``caller`` and ``status``, then a range on ``created_at``: the count reads only the
rows it counts.

(Numbered 0007 for issue 12; it follows whichever revision is the head when merged.)
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_decline_count_index"
down_revision: str | None = "0006_autopay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_payment_attempts_caller_declines",
        "payment_attempts",
        ["caller", "status", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_payment_attempts_caller_declines", table_name="payment_attempts")
