"""Request bodies of the portal API: a JSON object with exactly the named string fields.

Errors say what is wrong (which field, what was expected) and never echo a value.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from flask import request

from ivr.portal.errors import ApiError
from payments.gateway import MandateAcceptance

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*")  # as the OpenAPI document says


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


# The latest acceptance time taken (year 3000): past it, a timestamp is not a date.
_LAST_ACCEPTED_AT = 32_503_680_000


def payment_method_body() -> tuple[str, MandateAcceptance | None]:
    """``{"payment_method": "pm_...", "mandate": {...}}``: the method, and for a bank
    account how the member authorized debits (optional): ``accepted_at`` (Unix seconds)
    and, when accepted online, ``online: {"ip_address", "user_agent"}``."""
    body = _load()
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object with the field(s) payment_method, mandate")
    mandate = body.pop("mandate", None)
    payment_method = _strings(body, ("payment_method",), 100)["payment_method"]
    return payment_method, None if mandate is None else _acceptance(mandate)


def _acceptance(mandate: object) -> MandateAcceptance:
    if not isinstance(mandate, dict) or set(mandate) - {"accepted_at", "online"}:
        raise _invalid("field 'mandate' must be an object with accepted_at and, if accepted online, online")
    accepted_at = mandate.get("accepted_at")
    if type(accepted_at) is not int or not 0 <= accepted_at <= _LAST_ACCEPTED_AT:
        raise _invalid("field 'mandate.accepted_at' must be a time in Unix seconds")
    online = mandate.get("online")
    when = datetime.fromtimestamp(accepted_at, UTC)
    if online is None:
        return MandateAcceptance(when)
    if not isinstance(online, dict):
        raise _invalid("field 'mandate.online' must be an object with ip_address and user_agent")
    fields = _strings(online, ("ip_address", "user_agent"), 500, within="mandate.online")
    for name, value in fields.items():
        if not _PRINTABLE.fullmatch(value):
            raise _invalid(f"field 'mandate.online.{name}' must be printable ASCII")
    return MandateAcceptance(when, fields["ip_address"], fields["user_agent"])


def string_fields(*names: str, max_length: int = 100) -> dict[str, str]:
    """The request's JSON body, which must be an object of exactly ``names``, each a
    non-empty string of at most ``max_length`` characters."""
    body = _load()
    if not isinstance(body, dict):
        raise _invalid(f"the body must be a JSON object with the field(s) {', '.join(names)}")
    return _strings(body, names, max_length)


def _strings(
    body: dict[Any, Any], names: tuple[str, ...], max_length: int, *, within: str = ""
) -> dict[str, str]:
    prefix = f"{within}." if within else ""
    extra = sorted(_name(field) for field in body if field not in names)
    if extra:
        raise _invalid(f"unexpected field(s): {', '.join(extra)}; expected {', '.join(names)}")
    values: dict[str, str] = {}
    for name in names:
        shown = f"{prefix}{name}"
        if name not in body:
            raise _invalid(f"missing field {shown!r}")
        value = body[name]
        if not isinstance(value, str):
            raise _invalid(f"field {shown!r} must be a string")
        if not value.strip():
            raise _invalid(f"field {shown!r} must not be empty")
        if len(value) > max_length:
            raise _invalid(f"field {shown!r} is longer than {max_length} characters")
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
