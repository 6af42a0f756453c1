"""Request bodies of the portal API: a JSON object with exactly the named string fields.

Errors say what is wrong (which field, what was expected) and never echo a value.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from ivr.portal.errors import ApiError

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_body", message)


def _load() -> Any:
    if request.mimetype != "application/json":
        raise ApiError(400, "unsupported_content_type", "send the body as 'Content-Type: application/json'")
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None


def _name(field: object) -> str:
    return repr(field) if isinstance(field, str) and _FIELD_NAME.fullmatch(field) else "(unnamed)"


def string_fields(*names: str, max_length: int = 100) -> dict[str, str]:
    """The request's JSON body, which must be an object of exactly ``names``, each a
    non-empty string of at most ``max_length`` characters."""
    body = _load()
    if not isinstance(body, dict):
        raise _invalid(f"the body must be a JSON object with the field(s) {', '.join(names)}")
    extra = sorted(_name(field) for field in body if field not in names)
    if extra:
        raise _invalid(f"unexpected field(s): {', '.join(extra)}; expected {', '.join(names)}")
    values: dict[str, str] = {}
    for name in names:
        if name not in body:
            raise _invalid(f"missing field {name!r}")
        value = body[name]
        if not isinstance(value, str):
            raise _invalid(f"field {name!r} must be a string")
        if not value.strip():
            raise _invalid(f"field {name!r} must not be empty")
        if len(value) > max_length:
            raise _invalid(f"field {name!r} is longer than {max_length} characters")
        values[name] = value
    return values


def object_fields(*names: str) -> dict[str, object]:
    """The request's JSON body, an object of exactly ``names`` (values of any JSON type,
    checked by the caller)."""
    body = _load()
    if not isinstance(body, dict):
        raise _invalid(f"the body must be a JSON object with the field(s) {', '.join(names)}")
    extra = sorted(_name(field) for field in body if field not in names)
    if extra:
        raise _invalid(f"unexpected field(s): {', '.join(extra)}; expected {', '.join(names)}")
    for name in names:
        if name not in body:
            raise _invalid(f"missing field {name!r}")
    return {name: body[name] for name in names}
