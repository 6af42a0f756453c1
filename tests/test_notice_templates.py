"""Issue 13, point 8: the Auto Pay notices (terms on enrollment, method change,
cancellation; a decline; a suspension), by e-mail and by text, are worded by Jinja2
templates a utility overrides per file in ``SECUREPAY_TEMPLATES_DIR``, like the receipt.

Texts go through the twilio library's REST client pointed at the stand-in for Twilio's
Messages API on 127.0.0.1 (``tests/twilio_messages.py``; Twilio's Message resource:
https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource);
e-mails through a sender of our own ``ReceiptSender`` port that keeps what it was given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import get_args

import pytest
import stripe
from flask import Flask

from ivr.flows.context import FlowConfig
from ivr.services import EXTENSION_KEY, Services
from ivr.settings import Settings, SettingsError
from payments.autopay_notices import AutopayNotices, NoticeKind, build_autopay_notices, write_notice
from payments.autopay_terms import EnrollmentView, Wording
from payments.mail_templates import BUILT_IN, LANGUAGES, NOTICE_KINDS, MailTemplates
from payments.texts import TwilioTexts
from tests.autopay_setup import enroll, save_card
from tests.conftest import TEST_ENV
from tests.ledger_checks import VISA
from tests.members import Member, add_members
from tests.twilio_messages import FakeMessages, LocalTwilioHttpClient, fake_messages

ACCOUNT = "10004821"
CALLER = "+12025550143"
EMAIL = "maria.rivera@example.com"
ACCOUNT_SID = "AC" + "5" * 32
MEMBER_SERVICES = "+12025550100"

CANCELLED_OVERRIDE = (
    "{% block subject %}{{ utility_name }} Auto Pay stopped{% endblock %}\n"
    "{% block body %}Auto Pay on ...{{ account_last4 }} stopped. Questions: {{ member_services }}."
    "{% endblock %}\n"
)


class KeptMail:
    """A sender of our own port: keeps each message it is given."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


@pytest.fixture
def twilio() -> Iterator[FakeMessages]:
    with fake_messages() as fake:
        yield fake


def _notices(app: Flask, twilio: FakeMessages, mail: KeptMail) -> AutopayNotices:
    services: Services = app.extensions[EXTENSION_KEY]
    texts = TwilioTexts(
        account_sid=ACCOUNT_SID, sender="+12025550199", username=ACCOUNT_SID,
        password=TEST_ENV["TWILIO_AUTH_TOKEN"], http_client=LocalTwilioHttpClient(twilio.base_url),
    )  # fmt: skip
    return AutopayNotices(services.sessions, mail, services.clock, texts)


def _send(app: Flask, stripe_client: stripe.StripeClient, twilio: FakeMessages, kind: NoticeKind,
          templates_dir: str | None, language: str = "en") -> tuple[EmailMessage, str]:
    """Write and deliver one notice of ``kind``; the e-mail sent and the text's body."""
    add_members(app, Member(ACCOUNT, phones=[CALLER], email=EMAIL, language=language))
    enrollment = enroll(app, save_card(app, stripe_client, ACCOUNT, VISA))
    services: Services = app.extensions[EXTENSION_KEY]
    wording = Wording("Test Valley Electric", MEMBER_SERVICES, texts=True, templates_dir=templates_dir)
    with app.app_context(), services.unit_of_work() as uow:
        ids = write_notice(uow.session, kind, enrollment, wording=wording, now=services.clock.now(),
                           amount_cents=12_345, due_date=date(2026, 12, 20))
        uow.commit()
    mail = KeptMail()
    assert _notices(app, twilio, mail).deliver(list(ids)) == 2
    (email,) = mail.sent
    (text,) = twilio.seen
    return email, text.form["Body"]


def _body(message: EmailMessage) -> str:
    part = message.get_body()
    assert isinstance(part, EmailMessage)
    return part.get_content()


def test_built_in_templates_exist_for_every_notice_kind_in_both_languages() -> None:
    assert set(NOTICE_KINDS) == set(get_args(NoticeKind))
    for kind in NOTICE_KINDS:
        for language in LANGUAGES:
            assert (BUILT_IN / f"autopay_{kind}.{language}.txt.j2").is_file()
            assert (BUILT_IN / f"autopay_{kind}_text.{language}.txt.j2").is_file()
    templates = MailTemplates.load()
    values = {
        "utility_name": "Test Valley Electric", "member_services": MEMBER_SERVICES, "account_last4": "4821",
        "method_kind": "card", "method_brand": "Visa", "method_last4": "4242",
        "first_due_after": "December 3, 2026", "terms_version": "2026-12-01",
        "amount": "$123.45", "due_date": "December 20, 2026",
    }  # fmt: skip
    for kind in NOTICE_KINDS:
        for language in LANGUAGES:
            for message in (f"autopay_{kind}", f"autopay_{kind}_text"):
                given = values if kind == "declined" else {k: v for k, v in values.items()
                                                          if k not in ("amount", "due_date")}
                subject, body = templates.render(message, language, **given)
                assert subject.startswith("Test Valley Electric: ")
                # contract 2.10: the method's last four, the first bill covered, how to cancel
                for point in ("4242", "December 3, 2026", MEMBER_SERVICES, "2026-12-01", "4821"):
                    assert point in body, (message, language, point)


def test_an_override_of_one_notice_changes_the_email_and_the_text_sent(
    app: Flask, stripe_client: stripe.StripeClient, twilio: FakeMessages, tmp_path: Path
) -> None:
    (tmp_path / "autopay_cancelled.en.txt.j2").write_text(CANCELLED_OVERRIDE)
    email, text = _send(app, stripe_client, twilio, "cancelled", str(tmp_path))
    assert email["Subject"] == "Test Valley Electric Auto Pay stopped"
    assert _body(email) == f"Auto Pay on ...4821 stopped. Questions: {MEMBER_SERVICES}.\n"
    # the text says what the e-mail says unless its own template is overridden
    assert text == f"{email['Subject']}\nAuto Pay on ...4821 stopped. Questions: {MEMBER_SERVICES}."


def test_without_an_override_the_built_in_wording_is_sent(
    app: Flask, stripe_client: stripe.StripeClient, twilio: FakeMessages, tmp_path: Path
) -> None:
    (tmp_path / "autopay_cancelled.en.txt.j2").write_text(CANCELLED_OVERRIDE)  # another kind's
    email, text = _send(app, stripe_client, twilio, "declined", str(tmp_path))
    assert email["Subject"] == "Test Valley Electric: your Auto Pay payment was declined"
    assert _body(email).startswith(
        "The Auto Pay payment of $123.45 for the bill due December 20, 2026 with your Visa ending in 4242 "
        "was declined."
    )
    assert text == f"{email['Subject']}\n{_body(email)}".rstrip()


def test_an_override_of_the_text_variant_changes_the_text_only(
    app: Flask, stripe_client: stripe.StripeClient, twilio: FakeMessages, tmp_path: Path
) -> None:
    (tmp_path / "autopay_enrolled_text.es.txt.j2").write_text(
        "{% block subject %}{{ utility_name }}:{% endblock %}"
        "{% block body %}pago automático activo con su tarjeta terminada en {{ method_last4 }}.{% endblock %}"
    )
    email, text = _send(app, stripe_client, twilio, "enrolled", str(tmp_path), language="es")
    assert text == "Test Valley Electric:\npago automático activo con su tarjeta terminada en 4242."
    assert email["Subject"] == "Test Valley Electric: los términos de su pago automático"
    assert "Gracias. Estos son los términos que aceptó:" in _body(email)


@pytest.mark.parametrize("name, text, error", [
    ("autopay_suspended.en.txt.j2",
     "{% block subject %}x{% endblock %}{% block body %}{% if true %}suspended{% endblock %}", "line 1"),
    # a value no notice is given (SECURITY 19b: never the full account number), even in a
    # branch a dry run would not take
    ("autopay_declined.es.txt.j2",
     "{% block subject %}x{% endblock %}{% block body %}{% if false %}{{ account_number }}{% endif %}"
     "{% endblock %}", "unknown value account_number"),
    ("autopay_terms.en.txt.j2", "Terms for {{ utility }}.", "unknown value utility"),
    ("autopay_cancelled_text.en.txt.j2", "{% block body %}stopped{% endblock %}",
     "needs a subject block and a body block"),
    ("autopay_canceled.en.txt.j2", "{% block subject %}x{% endblock %}{% block body %}y{% endblock %}",
     "SecurePay sends no message named autopay_canceled"),
])  # fmt: skip
def test_a_broken_notice_override_is_refused_at_start_in_one_line(
    app: Flask, tmp_path: Path, name: str, text: str, error: str
) -> None:
    (tmp_path / name).write_text(text)
    services: Services = app.extensions[EXTENSION_KEY]
    settings = Settings.from_env({**TEST_ENV, "SECUREPAY_TEMPLATES_DIR": str(tmp_path)})
    with pytest.raises(SettingsError) as refused:
        build_autopay_notices(settings, services.sessions, services.clock)
    message = str(refused.value)
    assert name in message and error in message
    assert "\n" not in message


def test_the_phone_flow_words_its_notices_with_the_override_folder(app: Flask, tmp_path: Path) -> None:
    services: Services = app.extensions[EXTENSION_KEY]
    settings = dataclasses.replace(services.settings, templates_dir=str(tmp_path))
    assert FlowConfig.from_settings(settings).templates_dir == str(tmp_path)


def test_a_declined_notice_without_its_amount_is_an_error(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member(ACCOUNT, phones=[CALLER], email=EMAIL))
    enrollment: EnrollmentView = enroll(app, save_card(app, stripe_client, ACCOUNT, VISA))
    services: Services = app.extensions[EXTENSION_KEY]
    wording = Wording("Test Valley Electric", MEMBER_SERVICES)
    with app.app_context(), services.unit_of_work() as uow, pytest.raises(ValueError, match="amount"):
        write_notice(uow.session, "declined", enrollment, wording=wording, now=services.clock.now())
