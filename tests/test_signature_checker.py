"""``SignatureChecker`` gives the twilio library's verdict (``RequestValidator.validate``,
for each token in turn) with one HMAC for a genuine request instead of two per token."""

from __future__ import annotations

import itertools

import pytest
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from ivr.signature import SignatureChecker

CURRENT, PREVIOUS, STRANGER = "current-token", "previous-token", "someone-elses-token"
URLS = (
    "https://coop.example/securepay/ivr/step?n=3",
    "https://coop.example:443/ivr/step?n=3",
    "http://127.0.0.1:8080/ivr/voice",
    "http://127.0.0.1/ivr/status",
    "https://coop.example/ivr/step?n=12&x=%20y",
)
PARAMS = MultiDict([("CallSid", "CA" + "0" * 32), ("Digits", "1"), ("From", "+12025550143"), ("Digits", "2")])


def _library_verdict(tokens: list[str], url: str, signature: str) -> bool:
    return any(RequestValidator(token).validate(url, PARAMS, signature) for token in tokens)


def _signatures(url: str) -> list[str]:
    """Signatures of ``url``, of its other port form, by every token, and forged ones."""
    other = url.replace(":443", "") if ":443" in url else url.replace("coop.example", "coop.example:443")
    signed = [
        RequestValidator(token).compute_signature(form, PARAMS)
        for token, form in itertools.product((CURRENT, PREVIOUS, STRANGER), (url, other))
    ]
    return [*signed, "", "bm90IGEgc2lnbmF0dXJl", signed[0][:-1], "é" + signed[0][1:]]


@pytest.mark.parametrize("tokens", [[CURRENT], [CURRENT, PREVIOUS]])
@pytest.mark.parametrize("url", URLS)
def test_every_verdict_is_the_librarys(tokens: list[str], url: str) -> None:
    checker = SignatureChecker(tokens)
    for signature in _signatures(url):
        expected = _library_verdict(tokens, url, signature)
        assert checker.valid(url, PARAMS, signature) is expected, (url, signature)
        assert checker.valid(url, PARAMS, signature) is expected  # the URL's forms kept
