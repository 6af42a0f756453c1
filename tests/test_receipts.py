"""Receipts: composed in English and Spanish, sent to a real SMTP server (aiosmtpd on
127.0.0.1), never in the caller's way, never twice."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import structlog
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from db.engine import session_factory
from db.models import Payment
from ivr import create_app
from ivr.flows.context import Notifier
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from payments.cli import payments_group
from payments.receipts import (
    Receipt,
    ReceiptDispatcher,
    ReceiptNotSent,
    SmtpReceiptSender,
    build_receipt_dispatcher,
    compose,
    mask_email,
)
from tests.conftest import TEST_ENV
from tests.fakes import FakeClock
from tests.ledger_factory import Ledger, add_account, add_call

CHICAGO = ZoneInfo("America/Chicago")
TAKEN = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 10:00 in Chicago (CST)
ACCOUNT = "30048217"
EMAIL = "maria.rivera@example.com"
FROM = "receipts@tve.example"


# --- a real SMTP server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Inbox:
    """What an aiosmtpd handler received: (envelope sender, recipients, message)."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse_recipients: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 -- aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse_recipients:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = cast(EmailMessage, message_from_bytes(envelope.content, policy=default_policy))
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [message for _, _, message in self.received]


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running SMTP server on a free port of 127.0.0.1."""
    server = SmtpServer(free_port(), Inbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_down() -> Iterator[SmtpServer]:
    """A port nothing listens on (yet): ``start()`` brings the server up on it."""
    server = SmtpServer(free_port(), Inbox())
    yield server
    server.stop()


# --- the ledger and a dispatcher ---------------------------------------------------------


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def ledger(sessions: sessionmaker[Session]) -> Ledger:
    return Ledger(sessions)


def dispatcher_for(
    sessions: sessionmaker[Session], port: int, clock: FakeClock, *, workers: int = 1
) -> ReceiptDispatcher:
    return ReceiptDispatcher(
        sessions,
        SmtpReceiptSender("127.0.0.1", port, FROM, timeout=5),
        clock,
        utility_name="Test Valley Electric",
        timezone=CHICAGO,
        workers=workers,
    )


@pytest.fixture
def receipts(
    sessions: sessionmaker[Session], smtp_server: SmtpServer, clock: FakeClock
) -> Iterator[ReceiptDispatcher]:
    dispatcher = dispatcher_for(sessions, smtp_server.port, clock)
    yield dispatcher
    dispatcher.shutdown()


def sent_at(sessions: sessionmaker[Session], payment_id: int) -> datetime | None:
    with sessions() as session:
        return session.scalar(select(Payment.receipt_sent_at).where(Payment.id == payment_id))


def pay(ledger: Ledger, sessions: sessionmaker[Session], *, email: str | None = EMAIL, **kwargs: Any) -> int:
    account_id = add_account(sessions, kwargs.pop("number", ACCOUNT), email=email, **kwargs)
    recorded = ledger.pay(account_id, 123456, at=TAKEN)
    assert recorded.payment_id is not None
    return recorded.payment_id


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return cast(str, body.get_content())


# --- composing --------------------------------------------------------------------------


def _receipt(**changes: Any) -> Receipt:
    fields: dict[str, Any] = {
        "to": EMAIL,
        "language": "en",
        "utility_name": "Test Valley Electric",
        "account_last4": "8217",
        "amount_cents": 123456,
        "confirmation": "5920417733",
        "method_brand": "visa",
        "method_last4": "4242",
        "taken_at": TAKEN,
        "timezone": CHICAGO,
    }
    fields.update(changes)
    return Receipt(**fields)


def test_english_receipt_says_amount_confirmation_method_and_local_time() -> None:
    message = compose(_receipt())

    text = text_of(message)
    assert message["To"] == EMAIL
    assert message["Subject"] == "Test Valley Electric: payment receipt, confirmation 5920417733"
    assert "Account:       ending in 8217" in text
    assert "Amount paid:   $1,234.56" in text
    assert "Confirmation:  5920417733" in text
    assert "Paid with:     Visa ending in 4242" in text
    assert "Date:          November 24, 2026 at 10:00 AM CST" in text
    assert message["Message-ID"] == "<receipt.5920417733@securepay.invalid>"


def test_spanish_receipt_is_written_in_spanish() -> None:
    message = compose(_receipt(language="es", taken_at=datetime(2026, 7, 4, 2, 5, tzinfo=UTC)))

    text = text_of(message)
    assert message["Subject"] == "Test Valley Electric: recibo de pago, confirmación 5920417733"
    assert "Gracias por su pago a Test Valley Electric." in text
    assert "Cuenta:         terminada en 8217" in text
    assert "Importe pagado: $1,234.56" in text
    assert "Pagado con:     Visa terminada en 4242" in text
    # 02:05 UTC on July 4 is still July 3 in Chicago (CDT).
    assert "Fecha:          3 de julio de 2026, 21:05 CDT" in text


def test_a_receipt_cannot_carry_a_full_account_or_card_number() -> None:
    with pytest.raises(ValueError, match="account_last4"):
        _receipt(account_last4=ACCOUNT)
    with pytest.raises(ValueError, match="method_last4"):
        _receipt(method_last4="4242424242424242")
    with pytest.raises(ValueError, match="aware"):
        _receipt(taken_at=datetime(2026, 11, 24, 16, 0))  # noqa: DTZ001 -- naive on purpose


def test_mask_email_keeps_the_domain_and_one_letter() -> None:
    assert mask_email(EMAIL) == "m***@example.com"
    assert mask_email("not-an-address") == "***"


# --- sending ----------------------------------------------------------------------------


def test_smtp_sender_delivers_to_a_real_server(smtp_server: SmtpServer) -> None:
    SmtpReceiptSender("127.0.0.1", smtp_server.port, FROM).send(compose(_receipt()))

    [(mail_from, rcpt_tos, message)] = smtp_server.inbox.received
    assert (mail_from, rcpt_tos) == (FROM, [EMAIL])
    assert message["From"] == FROM
    assert "Amount paid:   $1,234.56" in text_of(message)


def test_smtp_sender_failures_are_receipt_not_sent_without_the_address(
    smtp_server: SmtpServer, smtp_down: SmtpServer
) -> None:
    with pytest.raises(ReceiptNotSent) as refused_connection:
        SmtpReceiptSender("127.0.0.1", smtp_down.port, FROM, timeout=2).send(compose(_receipt()))
    smtp_server.inbox.refuse_recipients = True
    with pytest.raises(ReceiptNotSent) as refused_recipient:
        SmtpReceiptSender("127.0.0.1", smtp_server.port, FROM).send(compose(_receipt()))

    assert "ConnectionRefusedError" in str(refused_connection.value)
    assert str(refused_recipient.value).endswith("recipient refused (SMTP 550)")
    for caught in (refused_connection, refused_recipient):
        assert "maria" not in str(caught.value) and caught.value.__cause__ is None


# --- dispatching ------------------------------------------------------------------------


def test_dispatch_sends_the_receipt_and_marks_the_payment(
    receipts: ReceiptDispatcher,
    smtp_server: SmtpServer,
    ledger: Ledger,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    payment_id = pay(ledger, sessions)

    receipts.dispatch(payment_id)
    receipts.wait(timeout=10)

    [message] = smtp_server.inbox.messages
    text = text_of(message)
    assert message["To"] == EMAIL
    assert "Amount paid:   $1,234.56" in text and "ending in 8217" in text
    raw = message.as_string()
    assert ACCOUNT not in raw  # only the last four
    assert sent_at(sessions, payment_id) == clock.now()


def test_receipt_is_in_the_language_of_the_call_else_of_the_account(
    receipts: ReceiptDispatcher,
    smtp_server: SmtpServer,
    ledger: Ledger,
    sessions: sessionmaker[Session],
) -> None:
    spanish_call = add_account(sessions, "1001", email="ana@example.com", language="en")
    add_call(sessions, "CAspanish", language="es", at=TAKEN)
    by_call = ledger.pay(spanish_call, 5000, at=TAKEN, call_sid="CAspanish")
    spanish_account = add_account(sessions, "1002", email="luis@example.com", language="es")
    by_account = ledger.pay(spanish_account, 6000, at=TAKEN)
    english = add_account(sessions, "1003", email="joe@example.com")
    by_default = ledger.pay(english, 7000, at=TAKEN)

    for recorded in (by_call, by_account, by_default):
        assert recorded.payment_id is not None
        receipts.dispatch(recorded.payment_id)
    receipts.wait(timeout=10)

    languages = {message["To"]: message["Content-Language"] for message in smtp_server.inbox.messages}
    assert languages == {"ana@example.com": "es", "luis@example.com": "es", "joe@example.com": "en"}


def test_no_email_no_receipt(
    receipts: ReceiptDispatcher, smtp_server: SmtpServer, ledger: Ledger, sessions: sessionmaker[Session]
) -> None:
    payment_id = pay(ledger, sessions, email=None)

    receipts.dispatch(payment_id)
    receipts.wait(timeout=10)

    assert smtp_server.inbox.messages == []
    assert sent_at(sessions, payment_id) is None
    assert receipts.send_pending() == (0, 0)


def test_smtp_down_keeps_the_payment_and_the_receipt_pending_until_send_pending(
    smtp_down: SmtpServer, ledger: Ledger, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    dispatcher = dispatcher_for(sessions, smtp_down.port, clock)
    payment_id = pay(ledger, sessions)

    with structlog.testing.capture_logs() as logs:
        dispatcher.dispatch(payment_id)  # does not raise, does not wait
        dispatcher.wait(timeout=10)

    [failed] = [entry for entry in logs if entry["event"] == "receipt_failed"]
    assert failed["payment_id"] == payment_id and failed["to"] == "m***@example.com"
    assert EMAIL not in repr(logs)
    with sessions() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None and payment.receipt_sent_at is None

    assert dispatcher.send_pending() == (0, 1)  # still down
    smtp_down.start()
    clock.advance(timedelta(minutes=15))
    assert dispatcher.send_pending() == (1, 0)
    assert dispatcher.send_pending() == (0, 0)
    dispatcher.dispatch(payment_id)
    dispatcher.shutdown()

    assert len(smtp_down.inbox.messages) == 1
    assert sent_at(sessions, payment_id) == clock.now()


def test_two_senders_racing_send_one_receipt(
    smtp_server: SmtpServer, ledger: Ledger, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    payment_id = pay(ledger, sessions)
    # Two dispatchers with their own pools: as the web app and the CLI would be.
    web = dispatcher_for(sessions, smtp_server.port, clock, workers=2)
    cli = dispatcher_for(sessions, smtp_server.port, clock, workers=2)
    results: list[tuple[int, int]] = []

    for _ in range(3):
        web.dispatch(payment_id)
        cli.dispatch(payment_id)
    runner = threading.Thread(target=lambda: results.append(cli.send_pending()))
    runner.start()
    runner.join(timeout=30)
    web.shutdown()
    cli.shutdown()

    assert len(smtp_server.inbox.messages) == 1
    assert results in ([(0, 0)], [(1, 0)])


class _BrokenSender:
    """A sender of our own port that fails the way a bug would."""

    def send(self, message: EmailMessage) -> None:
        raise RuntimeError("sender bug")


def test_the_dispatcher_never_raises_into_the_caller(
    ledger: Ledger, sessions: sessionmaker[Session], clock: FakeClock, engine: Engine
) -> None:
    payment_id = pay(ledger, sessions)
    dispatcher = ReceiptDispatcher(
        sessions, _BrokenSender(), clock, utility_name="Test Valley Electric", timezone=CHICAGO
    )

    with structlog.testing.capture_logs() as logs:
        dispatcher.dispatch(payment_id)  # the sender raises something unexpected
        dispatcher.dispatch(987654)  # no such payment
        dispatcher.wait(timeout=10)
        dispatcher.shutdown()
        dispatcher.dispatch(payment_id)  # after shutdown

    events = [entry["event"] for entry in logs]
    assert events.count("receipt_failed") == 2
    assert "receipt_deferred" in events
    assert sent_at(sessions, payment_id) is None  # the claim was released


def test_without_an_smtp_host_receipts_are_off_and_said_once(
    ledger: Ledger, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    settings = Settings.from_env(TEST_ENV)
    assert settings.smtp_host is None
    dispatcher = build_receipt_dispatcher(settings, sessions, clock)
    payment_id = pay(ledger, sessions)

    with structlog.testing.capture_logs() as logs:
        dispatcher.dispatch(payment_id)
        dispatcher.dispatch(payment_id)
        assert dispatcher.send_pending() == (0, 0)
        dispatcher.wait()
        dispatcher.shutdown()

    assert not dispatcher.enabled
    assert [entry["event"] for entry in logs] == ["receipt_skipped"]
    assert sent_at(sessions, payment_id) is None


def test_settings_with_an_smtp_host_build_an_smtp_sender(
    smtp_server: SmtpServer, ledger: Ledger, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    settings = Settings.from_env(
        {
            **TEST_ENV,
            "SECUREPAY_SMTP_HOST": "127.0.0.1",
            "SECUREPAY_SMTP_PORT": str(smtp_server.port),
            "SECUREPAY_RECEIPT_FROM": FROM,
        }
    )
    dispatcher = build_receipt_dispatcher(settings, sessions, clock)
    payment_id = pay(ledger, sessions)

    dispatcher.dispatch(payment_id)
    dispatcher.shutdown()

    [(mail_from, _, message)] = smtp_server.inbox.received
    assert mail_from == FROM
    assert "Test Valley Electric" in message["Subject"]


def test_send_pending_leaves_old_payments_and_accounts_without_email(
    receipts: ReceiptDispatcher,
    smtp_server: SmtpServer,
    ledger: Ledger,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    fresh = pay(ledger, sessions)
    old_account = add_account(sessions, "2001", email="old@example.com")
    old = ledger.pay(old_account, 2500, at=TAKEN - timedelta(days=30))
    pay(ledger, sessions, number="2002", email=None)

    assert receipts.send_pending(limit=10) == (1, 0)

    assert [message["To"] for message in smtp_server.inbox.messages] == [EMAIL]
    assert sent_at(sessions, fresh) == clock.now()
    assert old.payment_id is not None and sent_at(sessions, old.payment_id) is None


# --- securepay payments send-receipts ------------------------------------------------------


def _cli_app(env: dict[str, str], clock: FakeClock) -> Flask:
    app = create_app(Settings.from_env(env), cli=True)
    app.extensions[EXTENSION_KEY].clock = clock
    return app


def test_send_receipts_command_sends_the_pending_ones(
    test_env: dict[str, str], smtp_server: SmtpServer, clock: FakeClock, engine: Engine
) -> None:
    env = {**test_env, "SECUREPAY_SMTP_HOST": "127.0.0.1", "SECUREPAY_SMTP_PORT": str(smtp_server.port)}
    app = _cli_app(env, clock)
    sessions = app.extensions[EXTENSION_KEY].sessions
    try:
        pay(Ledger(sessions), sessions)
        first = app.test_cli_runner().invoke(payments_group, ["send-receipts"])
        again = app.test_cli_runner().invoke(payments_group, ["send-receipts", "--limit", "5"])
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()

    assert (first.exit_code, first.output) == (0, "sent 1, failed 0\n")
    assert (again.exit_code, again.output) == (0, "sent 0, failed 0\n")
    assert len(smtp_server.inbox.messages) == 1


def test_send_receipts_command_says_when_receipts_are_off(test_env: dict[str, str], clock: FakeClock) -> None:
    app = _cli_app(test_env, clock)
    try:
        result = app.test_cli_runner().invoke(payments_group, ["send-receipts"])
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()

    assert (result.exit_code, result.output) == (
        1,
        "Error: SECUREPAY_SMTP_HOST is not set: receipts are off\n",
    )


def test_the_dispatcher_is_the_flows_notifier(
    receipts: ReceiptDispatcher, smtp_server: SmtpServer, ledger: Ledger, sessions: sessionmaker[Session]
) -> None:
    notifier: Notifier = receipts
    payment_id = pay(ledger, sessions)

    notifier.payment_taken(payment_id)
    receipts.wait(timeout=10)

    assert len(smtp_server.inbox.messages) == 1


def test_shutdown_at_exit_leaves_queued_receipts_pending(
    ledger: Ledger, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    started, gate = threading.Event(), threading.Event()

    class _SlowSender:
        def send(self, message: EmailMessage) -> None:
            started.set()
            gate.wait(timeout=10)

    dispatcher = ReceiptDispatcher(
        sessions, _SlowSender(), clock, utility_name="Test Valley Electric", timezone=CHICAGO
    )
    first = pay(ledger, sessions)
    second = pay(ledger, sessions, number="1002")
    dispatcher.dispatch(first)
    dispatcher.dispatch(second)
    assert started.wait(timeout=10)  # the first is being sent, the second waits its turn

    closer = threading.Thread(target=lambda: dispatcher.shutdown(cancel_queued=True))
    closer.start()
    gate.set()
    closer.join(timeout=10)

    assert sent_at(sessions, first) == clock.now()  # was in progress: finished
    assert sent_at(sessions, second) is None  # was queued: still pending
