"""``GET /metrics`` and the webhook timer: the Flask side of ``ivr.metrics``.

The scrape answers from a registry built once per app: in multiprocess mode (under
gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` set) the files of every worker, live or dead;
otherwise this process's metrics. The database gauges are read by the worker that
answers the scrape, at that moment, so they are never summed over workers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Response, abort, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from db.audit_sealer import unsealed_count
from db.models import Account, AuditEvent, AutopayNotice, Call, Payment
from ivr.metrics import (
    CREDENTIAL_FAILURES,
    LOCKOUTS,
    PAYMENT_CENTS,
    PAYMENTS,
    PORTAL_RATE_LIMITED,
    PROCESSOR_ERRORS,
    PROCESSOR_SECONDS,
    RECEIPTS,
    SIGNATURE_REJECTIONS,
    TEXTS,
    WEBHOOK_SECONDS,
    WORKERS,
    label,
)
from ivr.version import build

if TYPE_CHECKING:
    from ivr.services import Services

__all__ = ["DatabaseCollector", "init_app", "step_is"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable


def step_is(state: str) -> None:
    """Name the flow state of the webhook being answered (for its latency's label)."""
    g.securepay_step = state


# --- read at scrape time ----------------------------------------------------------------


# A call with no step for this long is not in progress, whatever its row says (Twilio's
# status callback may never have come).
IN_PROGRESS_WINDOW = timedelta(hours=1)
RECEIPT_WINDOW = timedelta(days=7)  # as payments.receipts.DEFAULT_MAX_AGE


class DatabaseCollector(Collector):
    """Gauges read from the database (and the anchor file) when ``/metrics`` is scraped."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        running = build()
        info = GaugeMetricFamily("securepay_build_info", "The running build.", labels=["version", "commit"])
        info.add_metric([running.version, running.commit or "unknown"], 1)
        yield info
        now = self._services.clock.now()
        up = GaugeMetricFamily("securepay_database_up", "1 when the database answered the scrape's queries.")
        try:
            values = self._read(now)
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, documentation, value in values:
            yield GaugeMetricFamily(name, documentation, value=value)
        age = _anchor_age(self._services.settings.audit_anchor_file, now)
        if age is not None:
            yield GaugeMetricFamily(
                "securepay_audit_last_anchor_age_seconds",
                "Seconds since the last audit anchor was taken (SECUREPAY_AUDIT_ANCHOR_FILE).",
                value=age,
            )

    def _read(self, now: datetime) -> Sequence[tuple[str, str, float]]:
        with self._services.sessions() as session:
            in_progress = session.scalar(
                select(func.count())
                .select_from(Call)
                .where(Call.status == "active", Call.updated_at >= now - IN_PROGRESS_WINDOW)
            )
            receipts = session.scalar(
                select(func.count())
                .select_from(Payment)
                .join(Account, Account.id == Payment.account_id)
                .where(
                    Payment.receipt_sent_at.is_(None),
                    Payment.taken_at >= now - RECEIPT_WINDOW,
                    Account.email.is_not(None),
                    Account.email != "",
                )
            )
            texts = session.scalar(
                select(func.count())
                .select_from(AutopayNotice)
                .where(
                    AutopayNotice.medium == "text",
                    AutopayNotice.sent_at.is_(None),
                    AutopayNotice.created_at >= now - RECEIPT_WINDOW,
                )
            )
            head = session.scalar(select(func.max(AuditEvent.seq)))
            unsealed = unsealed_count(session)
        return (
            ("securepay_calls_in_progress", "Calls active with a step in the last hour.", in_progress or 0),
            ("securepay_receipts_pending", "E-mail receipts of the last 7 days not yet sent.", receipts or 0),
            # Receipt texts go out from the step itself (no queue); Auto Pay's texted notices
            # are kept until Twilio takes them, and retried: those are the texts that wait.
            ("securepay_texts_pending", "Texted Auto Pay notices of 7 days not yet sent.", texts or 0),
            ("securepay_audit_head_seq", "The audit chain's newest position (seq).", head or 0),
            ("securepay_audit_unsealed", "Audit events written and not sealed yet.", unsealed),
        )


def _anchor_age(path: str | None, now: datetime) -> float | None:
    """Seconds since the newest anchor line of ``path``; None when there is none to read."""
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        at = datetime.fromisoformat(json.loads(lines[-1])["at"])
    except (OSError, IndexError, ValueError, KeyError, TypeError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (now - at).total_seconds())


# --- the endpoint -----------------------------------------------------------------------


def _registry(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in (
            WEBHOOK_SECONDS, PAYMENTS, PAYMENT_CENTS, CREDENTIAL_FAILURES, LOCKOUTS,
            SIGNATURE_REJECTIONS, PROCESSOR_SECONDS, PROCESSOR_ERRORS, PORTAL_RATE_LIMITED,
            RECEIPTS, TEXTS, WORKERS,
        ):  # fmt: skip
            registry.register(collector)
    registry.register(DatabaseCollector(services))
    return registry


def init_app(app: Flask, services: Services) -> None:
    """Serve ``/metrics`` and time the webhooks (``create_app`` calls this when enabled)."""
    registry = _registry(services)
    WORKERS.set(1)

    @app.before_request
    def _start_timer() -> None:
        g.securepay_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("securepay_started")
        if started is not None and request.path.startswith("/ivr/"):
            # The flow state, else the route (voice, status): never the path itself, which
            # a stranger chooses (a label per made-up path would grow without bound).
            route = (request.endpoint or "unknown").removeprefix("ivr.")
            step = g.get("securepay_step") or route
            WEBHOOK_SECONDS.labels(label(step), str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        if request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded"):
            abort(404)  # came through the public proxy: not served there
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

