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

import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import urlparse

import structlog
from flask import Request, Response
from twilio.request_validator import RequestValidator, add_port, remove_port

from ivr import metrics, twiml

log = structlog.get_logger()

# Signed URLs whose two forms are kept (a deployment has a few dozen: three routes, one
# step number each); past this, URLs are parsed each time.
_URLS_KEPT = 1024


class SignatureChecker:
    """``RequestValidator.validate`` for several auth tokens, without its repeated work.

    The library's ``validate`` parses the URL and computes two HMACs on every request:
    one for the URL without its port and one with it (Twilio may sign either). This
    gives the same verdict (valid when a signature computed with the library's
    ``compute_signature``, for one of the tokens and one of the two URL forms, equals the
    header), and stops at the first match: the URL as it was given first, the current
    token first, so a genuine request costs one HMAC. A signed URL's two forms are kept.
    """

    def __init__(self, auth_tokens: Sequence[str]) -> None:
        self._validators = tuple(RequestValidator(token) for token in auth_tokens)
        self._forms: dict[str, tuple[str, ...]] = {}

    def valid(self, url: str, params: Mapping[str, str], signature: str) -> bool:
        expected = signature.encode()
        forms = self._forms.get(url)
        known = forms is not None
        if forms is None:
            forms = _url_forms(url)
        for validator in self._validators:
            for form in forms:
                # Constant time, as the library's ``compare`` means to be.
                if hmac.compare_digest(validator.compute_signature(form, params).encode(), expected):
                    if not known and len(self._forms) < _URLS_KEPT:
                        self._forms[url] = forms  # only signed URLs: a forged flood keeps none
                    return True
        return False


def _url_forms(url: str) -> tuple[str, ...]:
    """The URL without and with its port (the library's two forms), the given one first."""
    parsed = urlparse(url)
    both = dict.fromkeys((remove_port(parsed), add_port(parsed)))
    return tuple(sorted(both, key=lambda form: form != url))


def signed_url(request: Request, public_url: str | None) -> str:
    if public_url is None:
        return request.url
    query = request.query_string.decode("latin-1")
    return public_url + request.path + (f"?{query}" if query else "")


def check_signature(request: Request, checker: SignatureChecker, public_url: str | None) -> Response | None:
    """None when the request is Twilio's (signed with one of the checker's tokens);
    otherwise the 403 to answer."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if signature and checker.valid(signed_url(request, public_url), request.form, signature):
        return None
    metrics.signature_rejected("missing" if not signature else "mismatch")
    log.warning(
        "twilio_signature_rejected",
        path=request.path,
        reason="missing" if not signature else "mismatch",
        remote_addr=request.remote_addr,
    )
    return Response(twiml.empty(), status=403, mimetype="text/xml")
