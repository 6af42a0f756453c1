"""The portal API's one error shape: ``{"error": {"code": ..., "message": ...}}``.

Every answer under ``/api`` is JSON, errors included: those our views raise
(``ApiError``), those Werkzeug raises (a body over ``MAX_CONTENT_LENGTH``, an unknown
route, a wrong HTTP method) and an unexpected failure (500). Messages say what is wrong
and never repeat what was sent: a misdirected card number must not come back out.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

log = structlog.get_logger()

API_PREFIX = "/api"

# Werkzeug's errors, as the API names them.
_HTTP_CODES = {
    400: ("bad_request", "the request is malformed"),
    401: ("unauthorized", "a valid bearer token is required"),
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "this method is not allowed on this resource"),
    413: ("body_too_large", "the request body is too large"),
    500: ("internal_error", "an internal error occurred"),
}


class ApiError(Exception):
    """An answer other than success, raised by a view or a validator."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def _from_api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def _from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, message = _HTTP_CODES.get(status, ("http_error", exc.name.lower()))
    response = error_response(status, code, message)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected(exc: Exception) -> Response:
    """A failure no view expected: logged here by route template, not by path, which
    holds the account number (Flask's own log line would quote the path)."""
    rule = request.url_rule
    log.error(
        "portal_request_failed",
        method=request.method,
        route=rule.rule if rule is not None else None,
        error_type=type(exc).__name__,
        exc_info=exc,
    )
    return _from_http_exception(InternalServerError())


def _outside_views(exc: HTTPException) -> HTTPException | Response:
    """Unknown routes and wrong methods under ``/api`` (no view ran): JSON as well.
    Elsewhere Flask's own answer stands."""
    if not is_api_path(request.path):
        return exc
    return _from_http_exception(exc)


def install(bp: Blueprint) -> None:
    """Register the error handlers of the API on its blueprint."""
    bp.register_error_handler(ApiError, _from_api_error)
    bp.register_error_handler(HTTPException, _from_http_exception)
    bp.register_error_handler(Exception, _unexpected)
    bp.app_errorhandler(404)(_outside_views)
    bp.app_errorhandler(405)(_outside_views)
