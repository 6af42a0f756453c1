"""Health endpoints for load balancers and orchestrators.

- ``GET /livez``: the process answers. Nothing else is checked, the database least of
  all: a database outage must not make an orchestrator restart every app server (that
  would only add cold starts to the outage). Restart on a failing ``/livez`` only.
- ``GET /readyz``: this server should get calls: the database answers, its schema is at
  the newest migration, and the payment processor is configured. 503 otherwise, naming
  what failed. It also says which build is running (version and commit). Take a server
  out of the load balancer on a failing ``/readyz``.
- ``GET /healthz``: as before, 200 when the database answers ``SELECT 1``, 503 otherwise.

None of them says anything secret, nor anything of a member.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import structlog
from alembic.runtime.migration import MigrationContext
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from db.migrate import head
from ivr.services import current_services
from ivr.version import build

log = structlog.get_logger()
bp = Blueprint("health", __name__)

# The newest migration of the code installed: read from the scripts once per process.
_expected_head = cache(head)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    try:
        with current_services().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health_check_failed", error_type=type(exc).__name__)
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200


@bp.get("/livez")
def livez() -> ResponseReturnValue:
    return jsonify(status="ok"), 200


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    services = current_services()
    checks: dict[str, str] = {}
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            revisions = set(MigrationContext.configure(conn).get_current_heads())
        expected = _expected_head()
        if revisions == {expected}:
            checks["migrations"] = "ok"
        else:
            checks["migrations"] = f"not at head ({expected}): run securepay db upgrade"
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        log.warning("readiness_check_failed", check="database", error_type=type(exc).__name__)
        checks["database"] = "unreachable"
        checks["migrations"] = "unknown"
    checks["processor"] = "ok" if services.gateway is not None else "not configured (STRIPE_API_KEY)"
    ready = all(value == "ok" for value in checks.values())
    running = build()
    body: dict[str, Any] = {
        "status": "ok" if ready else "unavailable",
        "checks": checks,
        "version": running.version,
        "commit": running.commit,
    }
    return jsonify(body), 200 if ready else 503
