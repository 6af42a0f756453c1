"""Text receipts (contract 2.7, 2.11): key 3 after a payment texts the confirmation to
the calling number, through Twilio's Messages API with the twilio library's REST client.

- Sent after the step that asked for it has committed, on a thread of its own: the call
  never waits for Twilio. The outcome is recorded in the trail and in the call's context,
  where the IVR says a refusal plainly if the caller is still on the line.
- At most once per payment: the flow records the request in the call (under the call's
  row lock) before this module ever sees it.
- Only to a valid US number; what a text carries is the utility's name, the amount, the
  account's last four and the confirmation number: never a PIN, SSN digit, card data or
  full account number (SECURITY 19b).
- From ``SECUREPAY_SMS_FROM``: a number, or a messaging service SID (``MG...``), with
  ``TWILIO_ACCOUNT_SID`` and the auth token or an API key and its secret.

Twilio's refusals a caller hears about: 21211 (not a valid number), 21614 (not a mobile
number), 21610 (the number opted out with STOP), 429 (too many requests), 5xx and an
unreachable API (https://www.twilio.com/docs/api/errors).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

import requests
import structlog
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ivr.flows.ports import UnitOfWork
from ivr.flows.texting import TextJob
from ivr.settings import Settings

__all__ = [
    "TextOutcome", "TextReceipts", "TextSender", "TwilioTexts", "build_text_receipts", "text_sender_for",
]

log = structlog.get_logger()

# The library logs each request it makes at INFO, body included; a receipt's body is no
# secret, but nothing of it needs to be in the service log: warnings only.
_HTTP_LOG = logging.getLogger("securepay.texts.http")
_HTTP_LOG.setLevel(logging.WARNING)

TIMEOUT_SECONDS = 10.0

Reason = Literal["sent", "invalid_number", "not_mobile", "opted_out", "busy", "unavailable", "refused"]
REFUSALS: dict[int, Reason] = {21211: "invalid_number", 21614: "not_mobile", 21610: "opted_out"}


@dataclass(frozen=True)
class TextOutcome:
    """What Twilio said: ``sent`` (accepted, with the message SID) or why not."""

    reason: Reason
    message_sid: str | None = None
    error_code: int | None = None
    http_status: int | None = None

    @property
    def sent(self) -> bool:
        return self.reason == "sent"


class TextSender(Protocol):
    def send(self, to: str, body: str) -> TextOutcome:
        """Send one text; Twilio's answer (never raises for Twilio's refusals)."""
        ...


class TwilioTexts:
    """Sends one text with the twilio REST client; Twilio's answer as a ``TextOutcome``.

    ``http_client`` is the library's own hook for its transport (a ``TwilioHttpClient``
    by default); tests give one that reaches a local stand-in for Twilio.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        sender: str,
        username: str,
        password: str,
        http_client: HttpClient | None = None,
    ) -> None:
        self._sender = sender
        self._client = Client(
            username=username,
            password=password,
            account_sid=account_sid,
            http_client=http_client or TwilioHttpClient(timeout=TIMEOUT_SECONDS, logger=_HTTP_LOG),
            environment={},  # settings are read once, by ivr.settings: never os.environ here
        )

    def __repr__(self) -> str:  # the client holds the auth token or the API secret
        return f"TwilioTexts(sender={self._sender!r})"

    def send(self, to: str, body: str) -> TextOutcome:
        service = self._sender.startswith("MG")  # a messaging service SID, or a number
        sender = {"messaging_service_sid": self._sender} if service else {"from_": self._sender}
        try:
            message = self._client.messages.create(to=to, body=body, **sender)
        except TwilioRestException as exc:
            return _refusal(exc)
        except (TwilioException, requests.RequestException) as exc:
            log.warning("text_receipt_unreachable", error_type=type(exc).__name__)
            return TextOutcome("unavailable")
        return TextOutcome("sent", message_sid=message.sid)


def _refusal(exc: TwilioRestException) -> TextOutcome:
    status = int(exc.status)
    code = int(exc.code) if exc.code is not None else None
    if code in REFUSALS:
        reason: Reason = REFUSALS[code]
    elif status == 429:
        reason = "busy"
    elif status >= 500:
        reason = "unavailable"
    else:
        reason = "refused"
    return TextOutcome(reason, error_code=code, http_status=status)


UnitOfWorkFactory = Callable[[], AbstractContextManager[UnitOfWork]]


class TextReceipts:
    """Implements ``ivr.flows.context.ReceiptTexter``: each text on a thread of its own,
    after the step committed; the outcome recorded for the trail and for the call."""

    def __init__(self, sender: TwilioTexts, unit_of_work: UnitOfWorkFactory) -> None:
        self._sender = sender
        self._unit_of_work = unit_of_work
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def text_receipt(self, job: TextJob) -> None:
        thread = threading.Thread(target=self._send, args=(job,), name="text-receipt", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def wait(self, timeout: float = 10.0) -> None:
        """Wait for the texts under way (tests, and a clean shutdown)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _send(self, job: TextJob) -> None:
        try:
            outcome = self._sender.send(job.to, job.body)
        except Exception:  # noqa: BLE001 - on a thread of its own: recorded, never lost
            log.exception("text_receipt_failed", call_sid=job.call_sid)
            outcome = TextOutcome("unavailable")
        try:
            self._record(job, outcome)
        except Exception:  # noqa: BLE001 - a receipt must never fail anything; logged
            log.exception("text_receipt_not_recorded", call_sid=job.call_sid)

    def _record(self, job: TextJob, outcome: TextOutcome) -> None:
        with self._unit_of_work() as uow:
            call = uow.calls.load_for_update(job.call_sid)
            if call is not None:
                texts = dict(call.data.get("texts", {}))
                texts[str(job.payment_id)] = outcome.reason
                call.data["texts"] = texts
                uow.calls.save(call)
            uow.events.record(
                "text_receipt_sent" if outcome.sent else "text_receipt_refused",
                call_sid=job.call_sid,
                account_id=job.account_id,
                actor="securepay-texts",
                success=outcome.sent,
                payment_id=job.payment_id,
                reason=outcome.reason,
                error_code=outcome.error_code,
                http_status=outcome.http_status,
                message_sid=outcome.message_sid,
            )
            uow.commit()


def text_sender_for(settings: Settings) -> TwilioTexts | None:
    """The Messages API sender, or None: texts are off unless ``SECUREPAY_SMS_FROM`` is set.
    Shared by the text receipts and Auto Pay's written notices."""
    if settings.sms_from is None or settings.twilio_account_sid is None:
        return None
    if settings.twilio_api_key is not None and settings.twilio_api_secret is not None:
        username, password = settings.twilio_api_key, settings.twilio_api_secret.reveal()
    elif settings.twilio_auth_token is not None:
        username, password = settings.twilio_account_sid, settings.twilio_auth_token.reveal()
    else:
        return None
    return TwilioTexts(
        account_sid=settings.twilio_account_sid,
        sender=settings.sms_from,
        username=username,
        password=password,
    )


def build_text_receipts(settings: Settings, unit_of_work: UnitOfWorkFactory) -> TextReceipts | None:
    """Texts are off (None) unless ``SECUREPAY_SMS_FROM`` is set."""
    sender = text_sender_for(settings)
    return None if sender is None else TextReceipts(sender, unit_of_work)
