"""A webhook step's last write on PostgreSQL: the call's ``UPDATE`` and its trail events'
``INSERT`` as one statement (a data-modifying ``WITH``), so that a step which only moves
the call costs four round trips: ``BEGIN``, the locked read of the call, this, ``COMMIT``.

    WITH moved AS (UPDATE calls SET ... WHERE call_sid = :p_call_sid RETURNING calls.id)
    INSERT INTO audit_events (occurred_at, event, ...)
    SELECT e.occurred_at, e.event, ... FROM moved JOIN jsonb_to_recordset(:p_events) AS e(...) ON true
    RETURNING audit_events.id

The events come as one JSON array parameter, so the statement is the same text for any
number of them (built once, its compiled form cached). They are inserted only when the
call's row was updated: no row returned means no such call, and the caller raises. The
events are unsealed, as ``SqlEvents.write_pending`` writes them; the sealer seals them
after the commit (``db.audit_sealer``). SQLite (no DML in ``WITH``) saves and inserts
in two statements, which cost no round trip there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Executable,
    Integer,
    Table,
    Text,
    bindparam,
    column,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB

from db.models import AuditEvent, Call

__all__ = ["CALL_FIELDS", "CALL_FIELDS_SET", "EVENT_COLUMNS", "MOVE_AND_RECORD", "event_rows"]

_calls = cast(Table, Call.__table__)
_events = cast(Table, AuditEvent.__table__)

# A call's fields as ``CallRecord`` holds them (every column of ``calls`` but ``id``,
# ``call_sid`` and ``updated_at``): what the calls repository loads, inserts and saves.
CALL_FIELDS = (
    "from_number", "to_number", "state", "started_at", "language", "step", "account_id",
    "verified", "data", "status", "outcome", "ended_at",
)
# What a save sets: every field and ``updated_at`` (``SqlCalls.changes``).
CALL_FIELDS_SET = (*CALL_FIELDS, "updated_at")
EVENT_COLUMNS = (
    "occurred_at", "event", "call_sid", "account_id", "actor", "os_user", "host", "process",
    "success", "detail",
)


def _build() -> Executable:
    moved = (
        update(_calls)
        .where(_calls.c.call_sid == bindparam("p_call_sid"))
        .values({name: bindparam(name, type_=_calls.c[name].type) for name in CALL_FIELDS_SET})
        .returning(_calls.c.id)
        .cte("moved")
    )
    rows = (
        func.jsonb_to_recordset(bindparam("p_events", type_=JSONB))
        .table_valued(
            column("occurred_at", DateTime(timezone=True)),
            column("event", Text),
            column("call_sid", Text),
            column("account_id", Integer),
            column("actor", Text),
            column("os_user", Text),
            column("host", Text),
            column("process", Text),
            column("success", Boolean),
            column("detail", JSONB),
        )
        .render_derived(name="e", with_types=True)
    )
    picked = select(
        *(sql_cast(rows.c.detail, JSON) if name == "detail" else rows.c[name] for name in EVENT_COLUMNS)
    ).select_from(moved.join(rows, true()))
    return (
        insert(_events)
        .from_select(list(EVENT_COLUMNS), picked)
        .add_cte(moved)
        .returning(_events.c.id)
    )


MOVE_AND_RECORD = _build()


def event_rows(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The events as the JSON parameter carries them (times in ISO 8601, with their zone:
    PostgreSQL reads back the same instant, to the microsecond)."""
    return [
        {name: value.isoformat() if isinstance(value, datetime) else value for name, value in event.items()}
        for event in events
    ]
