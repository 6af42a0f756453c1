"""Mail a co-op's server accepts (issue 13): STARTTLS or TLS from the first byte, AUTH with
a user name and password (the password possibly from a file), the server's certificate
verified, and the wording of receipts overridable as Jinja2 templates.

The peer is aiosmtpd on 127.0.0.1 with a self-signed certificate made here (the
``cryptography`` package), requiring TLS before AUTH and AUTH before mail, as a
submission server does."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import session_factory
from ivr import metrics
from ivr.settings import Settings, SettingsError
from payments.mail_templates import MailTemplates, TemplateError
from payments.receipts import (
    Receipt,
    ReceiptNotSent,
    SmtpReceiptSender,
    build_receipt_dispatcher,
    compose,
)
from tests.conftest import TEST_ENV
from tests.fakes import FakeClock
from tests.ledger_factory import Ledger, add_account
from tests.server_process import free_port

CHICAGO = ZoneInfo("America/Chicago")
TAKEN = dt.datetime(2026, 11, 24, 16, 0, tzinfo=dt.UTC)
USER = "securepay"
PASSWORD = "smtp-pass-c0rrect-h0rse"
EMAIL = "maria.rivera@example.com"
FROM = "receipts@tve.example"


def _receipt(**changes: Any) -> Receipt:
    fields: dict[str, Any] = {
        "to": EMAIL, "language": "en", "utility_name": "Test Valley Electric", "account_last4": "8217",
        "amount_cents": 123456, "confirmation": "5920417733", "method_brand": "visa",
        "method_last4": "4242", "taken_at": TAKEN, "timezone": CHICAGO,
    }  # fmt: skip
    fields.update(changes)
    return Receipt(**fields)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return cast(str, body.get_content())


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securepay-test-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@dataclass
class Mailbox:
    """An aiosmtpd handler and authenticator: what was received, by whom, over TLS or not."""

    received: list[tuple[str, bool, EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == USER
            and data.password.decode() == PASSWORD
        )
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=default_policy)
        with self.lock:
            over_tls = server.transport.get_extra_info("ssl_object") is not None
            self.received.append((envelope.mail_from, over_tls, message))
        return "250 Message accepted for delivery"


@dataclass
class Server:
    port: int
    mailbox: Mailbox


def _server_context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificate.cert), str(certificate.key))
    return context


def _client_context(certificate: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate.cert))


@pytest.fixture
def submission(certificate: Certificate) -> Iterator[Server]:
    """Port 587-style: plain, STARTTLS required, then AUTH required."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), tls_context=_server_context(certificate),
        require_starttls=True, authenticator=mailbox, auth_required=True, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    yield Server(controller.port, mailbox)
    controller.stop()


@pytest.fixture
def smtps(certificate: Certificate) -> Iterator[Server]:
    """Port 465-style: TLS from the first byte, AUTH offered. (aiosmtpd does not count
    implicit TLS as TLS for its AUTH rules, so AUTH is offered, not required.)"""
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), ssl_context=_server_context(certificate),
        server_hostname="127.0.0.1", authenticator=mailbox, auth_required=False, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    yield Server(controller.port, mailbox)
    controller.stop()


def _sender(port: int, certificate: Certificate, **kwargs: Any) -> SmtpReceiptSender:
    options: dict[str, Any] = {
        "security": "starttls", "username": USER, "password": PASSWORD,
        "ssl_context": _client_context(certificate), "timeout": 5,
    }  # fmt: skip
    options.update(kwargs)
    return SmtpReceiptSender("127.0.0.1", port, FROM, **options)


def test_starttls_then_auth_delivers_the_receipt_over_tls(
    submission: Server, certificate: Certificate
) -> None:
    _sender(submission.port, certificate).send(compose(_receipt()))
    [(mail_from, over_tls, message)] = submission.mailbox.received
    assert (mail_from, over_tls) == (FROM, True)
    assert submission.mailbox.logins == [USER]
    assert "Amount paid:   $1,234.56" in text_of(message)


def test_tls_from_the_first_byte_then_auth_delivers(smtps: Server, certificate: Certificate) -> None:
    _sender(smtps.port, certificate, security="ssl").send(compose(_receipt()))
    [(_, over_tls, _)] = smtps.mailbox.received
    assert over_tls and smtps.mailbox.logins == [USER]


def test_without_starttls_the_server_refuses_and_nothing_is_sent(
    submission: Server, certificate: Certificate
) -> None:
    with pytest.raises(ReceiptNotSent, match="SMTP 530"):
        _sender(submission.port, certificate, security="none", username=None, password=None).send(
            compose(_receipt())
        )
    assert submission.mailbox.received == []


def test_a_wrong_password_is_a_refused_authentication_that_names_no_password(
    submission: Server, certificate: Certificate
) -> None:
    wrong = "wrong-pass-9z9z9z"
    with pytest.raises(ReceiptNotSent) as caught:
        _sender(submission.port, certificate, password=wrong).send(compose(_receipt()))
    assert str(caught.value).endswith("authentication refused (SMTP 535)")
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)
    assert submission.mailbox.received == []


def test_an_untrusted_certificate_is_refused(submission: Server, certificate: Certificate) -> None:
    with pytest.raises(ReceiptNotSent, match="TLS certificate not trusted"):
        _sender(submission.port, certificate, ssl_context=ssl.create_default_context()).send(
            compose(_receipt())
        )
    assert submission.mailbox.received == []


def test_the_password_is_never_in_the_senders_repr(certificate: Certificate) -> None:
    sender = _sender(25, certificate)
    assert PASSWORD not in repr(sender) and PASSWORD not in str(sender)
    assert repr(sender) == "<SmtpReceiptSender 127.0.0.1:25 starttls as securepay>"


# --- from the settings, with the password from a file -----------------------------------


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def test_settings_with_starttls_auth_and_a_password_file_send_pending_receipts(
    submission: Server,
    certificate: Certificate,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "smtp_password"
    secret.write_text(PASSWORD + "\n")
    settings = Settings.from_env({
        **TEST_ENV,
        "SECUREPAY_SMTP_HOST": "127.0.0.1",
        "SECUREPAY_SMTP_PORT": str(submission.port),
        "SECUREPAY_SMTP_STARTTLS": "true",
        "SECUREPAY_SMTP_USERNAME": USER,
        "SECUREPAY_SMTP_PASSWORD_FILE": str(secret),
        "SECUREPAY_SMTP_CA_FILE": str(certificate.cert),
        "SECUREPAY_RECEIPT_FROM": FROM,
    })  # fmt: skip
    account_id = add_account(sessions, "30048217", email=EMAIL)
    Ledger(sessions).pay(account_id, 123456, at=clock.now())
    before = metrics.RECEIPTS.labels("sent")._value.get()
    dispatcher = build_receipt_dispatcher(settings, sessions, clock)
    with structlog.testing.capture_logs() as logs:
        try:
            assert dispatcher.send_pending() == (1, 0)
        finally:
            dispatcher.shutdown()
    [(_, over_tls, message)] = submission.mailbox.received
    assert over_tls and message["To"] == EMAIL
    assert metrics.RECEIPTS.labels("sent")._value.get() == before + 1
    assert PASSWORD not in repr(logs)


def test_a_ca_file_that_cannot_be_read_stops_the_start(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    settings = Settings.from_env({
        **TEST_ENV, "SECUREPAY_SMTP_HOST": "127.0.0.1", "SECUREPAY_SMTP_SSL": "on",
        "SECUREPAY_SMTP_CA_FILE": str(tmp_path / "absent.pem"),
    })  # fmt: skip
    assert settings.smtp_port == 465
    with pytest.raises(SettingsError, match="SECUREPAY_SMTP_CA_FILE cannot be used"):
        build_receipt_dispatcher(settings, sessions, FakeClock())


# --- the wording, overridable -------------------------------------------------------------


def _override(folder: Path) -> None:
    (folder / "receipt.en.txt.j2").write_text(
        "{% block subject %}{{ utility_name }} receipt #{{ confirmation }}{% endblock %}\n"
        "{% block body %}Paid {{ amount }} on account ...{{ account_last4 }}. Thanks!{% endblock %}\n"
    )


def test_a_utility_overrides_the_english_receipt_and_keeps_the_spanish_one(tmp_path: Path) -> None:
    _override(tmp_path)
    templates = MailTemplates.load(str(tmp_path))
    english = compose(_receipt(), templates=templates)
    assert english["Subject"] == "Test Valley Electric receipt #5920417733"
    assert text_of(english) == "Paid $1,234.56 on account ...8217. Thanks!\n"
    spanish = compose(_receipt(language="es"), templates=templates)
    assert "Gracias por su pago a Test Valley Electric." in text_of(spanish)


def test_the_override_folder_is_a_setting_used_by_the_dispatcher(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    _override(tmp_path)
    settings = Settings.from_env({**TEST_ENV, "SECUREPAY_TEMPLATES_DIR": str(tmp_path)})
    dispatcher = build_receipt_dispatcher(settings, sessions, clock)
    receipt = Receipt(**{**_receipt().__dict__, "taken_at": TAKEN})
    assert compose(receipt, templates=dispatcher._templates)["Subject"].endswith("receipt #5920417733")


@pytest.mark.parametrize("text, error", [
    ("{% block subject %}x{% endblock %}{% block body %}{{ amount }{% endblock %}", "line 1"),
    ("{% block body %}only a body{% endblock %}", "needs a subject block and a body block"),
])  # fmt: skip
def test_a_broken_override_stops_the_start_naming_the_file(
    tmp_path: Path, sessions: sessionmaker[Session], text: str, error: str
) -> None:
    (tmp_path / "receipt.en.txt.j2").write_text(text)
    settings = Settings.from_env({**TEST_ENV, "SECUREPAY_TEMPLATES_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match=f"receipt.en.txt.j2.*{error}"):
        build_receipt_dispatcher(settings, sessions, FakeClock())


def test_a_misspelt_value_in_a_template_is_an_error_not_a_gap(tmp_path: Path) -> None:
    (tmp_path / "receipt.en.txt.j2").write_text(
        "{% block subject %}x{% endblock %}{% block body %}{{ ammount }}{% endblock %}"
    )
    with pytest.raises(TemplateError, match="ammount"):
        compose(_receipt(), templates=MailTemplates.load(str(tmp_path)))
