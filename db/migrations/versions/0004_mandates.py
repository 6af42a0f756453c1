"""A stored bank account keeps the mandate it is debited under: ``payment_methods.mandate_id``.

Revision ID: 0004_mandates
Revises: 0003_audit_chain
Create Date: 2026-12-01

Stripe records a ``us_bank_account`` debit authorization as a Mandate when the account
is saved through a SetupIntent with ``mandate_data``; each later debit names it
(https://docs.stripe.com/payments/ach-direct-debit). Rows already on file have none:
a bank account without one is not offered by phone until it is saved again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_mandates"
down_revision: str | None = "0003_audit_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment_methods") as batch:
        batch.add_column(sa.Column("mandate_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_methods") as batch:
        batch.drop_column("mandate_id")
