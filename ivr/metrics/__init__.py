"""Prometheus metrics at ``GET /metrics``: off unless ``SECUREPAY_METRICS=on``.

This module holds the metrics and the one-line calls that feed them (no Flask, so
``db/`` and ``payments/`` may call them); ``ivr.metrics.web`` serves the endpoint and
times the webhooks.

Under gunicorn each worker is a process of its own, so the metrics are kept in
prometheus-client's multiprocess mode: every worker writes its counters to files in
``PROMETHEUS_MULTIPROC_DIR`` (``gunicorn.conf.py`` sets it, clears it when the master
starts, and marks a worker dead when it exits), and a scrape, answered by any worker,
adds up the files of all of them. A recycled worker's counts stay in the totals (a
counter never goes down); its live gauges are dropped. Without that variable (the
development server, the tests) the process's own registry is served.

What is measured, and never with an account number, a phone number or anything typed as
a label (labels are states, outcomes, reasons and error class names: a fixed, small set):

- webhook latency by step (the flow state the call was in) and HTTP status;
- payments by outcome, and their cents; PIN and SSN failures by reason; lockouts
  (counted from the audit trail's events as they are written: ``observe_trail``);
- signature rejections; processor latency and errors by operation (``MeteredGateway``);
  portal 429s; e-mail receipts and text messages sent and failed;
- read from the database at scrape time: calls in progress, receipts pending, the audit
  chain's head, the age of the last anchor (``SECUREPAY_AUDIT_ANCHOR_FILE``); and the
  build (``securepay_build_info``).

``/metrics`` is for the monitoring network only. A request that came through a proxy
(it carries ``X-Forwarded-For`` or ``Forwarded``) is answered 404, so the public
vhost cannot serve it even if its proxy forwards every path; scrape the app server's
own address (``deploy/nginx.conf`` shows both).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from payments.gateway import PaymentGateway

__all__ = [
    "MeteredGateway",
    "observe_trail",
    "portal_rate_limited",
    "receipt",
    "signature_rejected",
]

_LABEL_VALUE = re.compile(r"[a-z][a-z0-9_]{0,39}")

WEBHOOK_SECONDS = Histogram(
    "securepay_webhook_duration_seconds",
    "Time to answer a Twilio webhook, by the step (flow state) and HTTP status.",
    ["step", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0),
)
PAYMENTS = Counter("securepay_payments", "Charge outcomes.", ["outcome"])
PAYMENT_CENTS = Counter(
    "securepay_payment_cents", "Cents of the charges, by outcome (succeeded: money taken).", ["outcome"]
)
CREDENTIAL_FAILURES = Counter(
    "securepay_credential_failures", "Refused PIN and SSN entries, by kind and reason.", ["kind", "reason"]
)
LOCKOUTS = Counter("securepay_lockouts", "Accounts locked for phone payments after failed entries.")
SIGNATURE_REJECTIONS = Counter(
    "securepay_signature_rejections", "Webhooks refused for a missing or wrong Twilio signature.", ["reason"]
)
PROCESSOR_SECONDS = Histogram(
    "securepay_processor_duration_seconds",
    "Time of a call to the payment processor, by operation.",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0),
)
PROCESSOR_ERRORS = Counter(
    "securepay_processor_errors",
    "Processor calls that raised, by operation and error.",
    ["operation", "error"],
)
PORTAL_RATE_LIMITED = Counter("securepay_portal_rate_limited", "Portal API requests answered 429.")
RECEIPTS = Counter("securepay_receipts", "E-mail receipts, by outcome.", ["outcome"])
TEXTS = Counter("securepay_texts", "Text messages to members, by outcome.", ["outcome"])
WORKERS = Gauge(
    "securepay_workers",
    "Worker processes serving (1 each; a dead worker's is dropped).",
    multiprocess_mode="livesum",
)

_PAYMENT_EVENTS = {
    "payment_succeeded": "succeeded",
    "payment_declined": "declined",
    "payment_outcome_unknown": "unknown",
    "payment_not_charged": "not_charged",
}
_CREDENTIAL_EVENTS = {"pin_rejected": "pin", "ssn_rejected": "ssn"}
_TEXT_EVENTS = frozenset({"text_receipt_sent", "text_receipt_refused"})


def label(value: object) -> str:
    """A label value from code: kept only when it looks like an identifier of ours."""
    text = str(value)
    return text if _LABEL_VALUE.fullmatch(text) else "other"


# --- the call sites: one line each ------------------------------------------------------


def signature_rejected(reason: str) -> None:
    SIGNATURE_REJECTIONS.labels(label(reason)).inc()


def portal_rate_limited() -> None:
    PORTAL_RATE_LIMITED.inc()


def receipt(outcome: str) -> None:
    RECEIPTS.labels(label(outcome)).inc()


def observe_trail(events: Iterable[Any]) -> None:
    """Count the trail events being written: payments, PIN and SSN failures, lockouts."""
    for item in events:
        name, detail = item.event, item.detail or {}
        if name in _PAYMENT_EVENTS:
            outcome = _PAYMENT_EVENTS[name]
            PAYMENTS.labels(outcome).inc()
            cents = detail.get("amount_cents")
            if type(cents) is int and cents > 0:
                PAYMENT_CENTS.labels(outcome).inc(cents)
        elif name in _CREDENTIAL_EVENTS:
            CREDENTIAL_FAILURES.labels(_CREDENTIAL_EVENTS[name], label(detail.get("reason"))).inc()
        elif name == "pin_locked":
            LOCKOUTS.inc()
        elif name in _TEXT_EVENTS:  # written by the text sender once Twilio answered
            TEXTS.labels("sent" if name == "text_receipt_sent" else label(detail.get("reason"))).inc()


class MeteredGateway:
    """Wraps a ``PaymentGateway``: each method timed, each exception counted by class."""

    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._gateway, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        return _metered(name, attribute)

    def __repr__(self) -> str:
        return f"<MeteredGateway {self._gateway!r}>"


def _metered(operation: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            PROCESSOR_ERRORS.labels(operation, label(type(exc).__name__.lower())).inc()
            raise
        finally:
            PROCESSOR_SECONDS.labels(operation).observe(time.perf_counter() - started)

    return call
