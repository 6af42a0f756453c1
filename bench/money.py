"""The benchmarks' money check: succeeded PaymentIntents at the processor against the
ledger's payments and the balances the calls paid, in count and in cents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from bench import driver, loader
from payments.stripe_gateway import build_stripe_client

__all__ = ["money"]


def money(url: str, stripe_base: str, results: Sequence[driver.CallResult]) -> dict[str, Any]:
    """Succeeded PaymentIntents at the processor against the ledger, count and cents."""
    client = build_stripe_client(loader.BENCH_STRIPE_KEY, stripe_base, timeout=60)
    intents = [
        intent
        for intent in client.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
        if intent.status == "succeeded"
    ]
    with psycopg.connect(loader.libpq_conninfo(url)) as conn:
        payments, cents = conn.execute(
            "SELECT count(*), coalesce(sum(amount_cents), 0) FROM payments"
        ).fetchone() or (0, 0)
        attempts: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM payment_attempts GROUP BY status").fetchall()
        )
        calls: dict[str, int] = dict(
            conn.execute("SELECT coalesce(outcome, status), count(*) FROM calls GROUP BY 1").fetchall()
        )
    paid = [r for r in results if r.error is None and not r.cut_by_deadline]
    expected = sum(r.amount_cents for r in paid)
    processor_cents = sum(int(intent.amount) for intent in intents)
    return {
        "processor_succeeded": len(intents),
        "processor_cents": processor_cents,
        "ledger_payments": payments,
        "ledger_cents": int(cents),
        "expected_payments": len(paid),
        "expected_cents": expected,
        "attempts_by_status": attempts,
        "calls_by_outcome": calls,
        "match": len(intents) == payments == len(paid) and processor_cents == int(cents) == expected,
    }
