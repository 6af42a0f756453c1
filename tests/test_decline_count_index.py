"""The per-caller decline count (the card-testing cap, SECURITY 15a) reads an index.

It runs on every payment a call starts. Without an index it scans ``payment_attempts``:
issue 12 measured the menu step's SQL time going from ~7 ms to ~55 ms at 200,000
attempts. The query checked is the one ``SqlLedger.declines`` emits (both counts of the
cap in one read), captured as it runs, so a change to the query that the index no
longer serves fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event

from db.engine import session_factory
from db.ledger import SqlLedger

INDEX = "ix_payment_attempts_caller_declines"


def _declines_query(engine: Engine) -> tuple[str, Any]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "payment_attempts" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with session_factory(engine)() as session:
            count = SqlLedger(session).declines(
                datetime.now(UTC) - timedelta(hours=24), account_id=None, caller="+12025550123"
            )
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert (count.account, count.caller) == (0, 0)
    assert len(seen) == 1
    return seen[0]


def test_the_per_caller_decline_count_uses_its_index(engine: Engine) -> None:
    statement, parameters = _declines_query(engine)

    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # An empty table is cheapest to scan: forbid that, so only an index that can
            # serve the query may be chosen (there is none without the index).
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
        else:
            plan = "\n".join(
                str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )

    assert INDEX in plan, plan
