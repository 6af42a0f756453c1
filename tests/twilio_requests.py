"""Raw webhook requests signed exactly as Twilio signs them, for tests that need to
replay, reorder or race single steps (whole calls go through the softphone walker)."""

from __future__ import annotations

from flask import Flask
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from ivr.softphone import new_sid
from tests.conftest import TEST_ENV

PUBLIC_URL = TEST_ENV["SECUREPAY_PUBLIC_URL"]
TOKEN = TEST_ENV["TWILIO_AUTH_TOKEN"]


def signed_post(
    app: Flask, path: str, params: dict[str, str], *, token: str = TOKEN, signature: str | None = None
) -> TestResponse:
    if signature is None:
        signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, params)
    return app.test_client().post(path, data=params, headers={"X-Twilio-Signature": signature})


class RawCall:
    """One call driven step by step: ``call.start()``, then ``call.step(n, "1")``."""

    def __init__(self, app: Flask, from_number: str = "+12025550143") -> None:
        self.app = app
        self.sid = new_sid("CA")
        self.base = {
            "CallSid": self.sid, "AccountSid": "AC" + "0" * 32, "From": from_number,
            "To": "+12025550199", "Direction": "inbound", "ApiVersion": "2010-04-01",
        }

    def start(self) -> TestResponse:
        return signed_post(self.app, "/ivr/voice", {**self.base, "CallStatus": "ringing"})

    def step(self, n: int, digits: str | None) -> TestResponse:
        params = {**self.base, "CallStatus": "in-progress"}
        if digits is not None:
            params["Digits"] = digits
        return signed_post(self.app, f"/ivr/step?n={n}", params)

    def pay(self, n: int, token: str, last4: str = "4242", card_type: str = "visa") -> TestResponse:
        """Twilio's ``<Pay>`` callback after a card was tokenized (masked number only)."""
        params = {
            **self.base, "CallStatus": "in-progress", "Result": "success", "PaymentToken": token,
            "PaymentCardNumber": "x" * 12 + last4, "PaymentCardType": card_type,
            "ExpirationDate": "1230", "PaymentMethod": "credit-card",
        }
        return signed_post(self.app, f"/ivr/step?n={n}", params)

    def status(self, call_status: str = "completed") -> TestResponse:
        return signed_post(self.app, "/ivr/status", {**self.base, "CallStatus": call_status})
