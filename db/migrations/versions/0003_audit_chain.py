"""The audit trail becomes a hash chain: ``seq``, ``prev_hash``, ``hash`` on every event.

Revision ID: 0003_audit_chain
Revises: 0002_ledger
Create Date: 2026-11-24

Events already in the table are chained in ``id`` order (their insertion order), so
``securepay audit verify`` accepts them; from here on the application chains each event
at commit. The hashing is written out here rather than imported from ``db.audit_chain``,
so this revision never changes with the application; a test checks both agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003_audit_chain"
down_revision: str | None = "0002_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
CONTENT = (
    "occurred_at", "event", "call_sid", "account_id", "actor", "os_user", "host", "process",
    "success", "detail",
)


def _hash(content: dict[str, Any]) -> str:
    values = dict(content)
    occurred = values["occurred_at"]
    if occurred.tzinfo is None:  # SQLite gives back the stored UTC without its zone
        occurred = occurred.replace(tzinfo=UTC)
    values["occurred_at"] = occurred.astimezone(UTC).isoformat(timespec="microseconds")
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _chain_existing_events() -> None:
    events = sa.table(
        "audit_events",
        sa.column("id", sa.BigInteger()),
        sa.column("seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
        sa.column("occurred_at", sa.DateTime(timezone=True)),
        sa.column("event", sa.String()),
        sa.column("call_sid", sa.String()),
        sa.column("account_id", sa.Integer()),
        sa.column("actor", sa.String()),
        sa.column("os_user", sa.String()),
        sa.column("host", sa.String()),
        sa.column("process", sa.String()),
        sa.column("success", sa.Boolean()),
        sa.column("detail", sa.JSON()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(events.c.id, *(events.c[name] for name in CONTENT)).order_by(events.c.id)
    ).all()
    prev_hash = GENESIS
    updates = []
    for seq, row in enumerate(rows, start=1):
        content: dict[str, Any] = {name: row._mapping[name] for name in CONTENT}
        content.update(seq=seq, prev_hash=prev_hash)
        prev_hash = _hash(content)
        updates.append(
            {"row_id": row.id, "new_seq": seq, "new_prev": content["prev_hash"], "new_hash": prev_hash}
        )
    if updates:
        connection.execute(
            events.update()
            .where(events.c.id == sa.bindparam("row_id"))
            .values(
                seq=sa.bindparam("new_seq"), prev_hash=sa.bindparam("new_prev"), hash=sa.bindparam("new_hash")
            ),
            updates,
        )


SEQ_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", SEQ_TYPE, nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    _chain_existing_events()
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=SEQ_TYPE, nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_audit_events_seq", ["seq"])
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_occurred_at", table_name="audit_events")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_events_seq", type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
