"""Audit events are written unsealed and sealed in order: ``seq``, ``prev_hash``, ``hash`` nullable.

Revision ID: 0008_audit_sealing
Revises: 0007_decline_count_index
Create Date: 2026-12-01

A writer inserts its events without their chain fields (no lock, no head read); the
sealer (``db.audit_sealer``) numbers and hashes them after the head, in id order
(docs/decisions/0008-audit-sealer.md). The partial index holds only the unsealed events,
which the sealer reads by id. Events already chained keep their seq and hash: nothing
is rewritten, and ``seq`` stays unique.

The downgrade makes the three columns NOT NULL again, which the code before this
revision needs; it refuses while an event is unsealed (run ``securepay audit seal``
first), rather than chaining events with hashing of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_audit_sealing"
down_revision: str | None = "0007_decline_count_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNSEALED = sa.text("seq IS NULL")


def _set_nullable(nullable: bool) -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=SEQ_TYPE, nullable=nullable)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=nullable)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=nullable)


def upgrade() -> None:
    _set_nullable(True)
    op.create_index(
        "ix_audit_events_unsealed", "audit_events", ["id"],
        postgresql_where=UNSEALED, sqlite_where=UNSEALED,
    )


def downgrade() -> None:
    unsealed = op.get_bind().scalar(sa.text("SELECT count(*) FROM audit_events WHERE seq IS NULL"))
    if unsealed:
        raise RuntimeError(
            f"{unsealed} audit event(s) are not sealed yet: run `securepay audit seal`, then downgrade"
        )
    op.drop_index("ix_audit_events_unsealed", table_name="audit_events")
    _set_nullable(False)
