"""Twilio request signatures (``X-Twilio-Signature``), checked before anything else.

The URL signed is ``SECUREPAY_PUBLIC_URL`` + path + query when set (so it works behind
a proxy or TLS terminator), else the request's own URL. A bad or missing signature is a
403 and a security event in the log, and nothing is read or written.

While the auth token is rotated (Twilio's secondary token is created, set here, then
promoted in the console), the previous token is accepted too, so no call between the
reload and the promotion is refused
(https://www.twilio.com/docs/usage/security#validating-requests, "Test the validity of
your webhook signature").
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from flask import Request, Response
from twilio.request_validator import RequestValidator

from ivr import metrics, twiml

log = structlog.get_logger()


def signed_url(request: Request, public_url: str | None) -> str:
    if public_url is None:
        return request.url
    query = request.query_string.decode("latin-1")
    return public_url + request.path + (f"?{query}" if query else "")


def check_signature(
    request: Request, auth_tokens: Sequence[str], public_url: str | None
) -> Response | None:
    """None when the request is Twilio's (signed with one of ``auth_tokens``, the current
    one first); otherwise the 403 to answer."""
    signature = request.headers.get("X-Twilio-Signature", "")
    url = signed_url(request, public_url)
    if signature and any(
        RequestValidator(token).validate(url, request.form, signature) for token in auth_tokens
    ):
        return None
    metrics.signature_rejected("missing" if not signature else "mismatch")
    log.warning(
        "twilio_signature_rejected",
        path=request.path,
        reason="missing" if not signature else "mismatch",
        remote_addr=request.remote_addr,
    )
    return Response(twiml.empty(), status=403, mimetype="text/xml")
