"""The portal API's gate: ``Authorization: Bearer $SECUREPAY_PORTAL_TOKEN`` (SECURITY 12).

It guards the whole ``/api`` prefix, unknown routes included, before anything else is
looked at: without the token nobody learns which routes exist. With no token configured
the API is off and every ``/api`` path answers 404, as if it did not exist.

The token is compared in constant time and only ever read from the header, never from
a query string (SECURITY 13); failures are logged without it, and without the path,
which holds an account number.
"""

from __future__ import annotations

import hmac

import structlog
from flask import Response, request

from ivr.portal.errors import error_response, is_api_path
from ivr.services import current_services

log = structlog.get_logger()

REALM = "securepay-portal"


def _presented_token() -> tuple[bytes | None, str]:
    """The bearer token of the request, or None with the reason it has none."""
    header = request.headers.get("Authorization")
    if header is None:
        return None, "missing"
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None, "malformed"
    return credentials.encode("utf-8", "surrogateescape"), "ok"


def _refused(reason: str) -> Response:
    rule = request.url_rule
    log.warning(
        "portal_auth_failed",
        reason=reason,
        method=request.method,
        route=rule.rule if rule is not None else None,
        remote_addr=request.remote_addr,
    )
    challenge = f'Bearer realm="{REALM}"'
    if reason == "wrong":
        challenge += ', error="invalid_token"'
    return error_response(
        401,
        "unauthorized",
        "send the portal token as 'Authorization: Bearer <token>'",
        {"WWW-Authenticate": challenge},
    )


def require_bearer() -> Response | None:
    """``before_app_request`` hook: answer 404 or 401 for ``/api`` paths, else nothing."""
    if not is_api_path(request.path):
        return None
    expected = current_services().settings.portal_token
    if expected is None:
        return error_response(404, "not_found", "no such resource")
    token, reason = _presented_token()
    if token is None:
        return _refused(reason)
    if not hmac.compare_digest(token, expected.reveal_bytes()):
        return _refused("wrong")
    return None
