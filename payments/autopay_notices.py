"""Auto Pay's written notices: the terms on every enrollment, change and cancellation,
and a word when a draft is declined or the agreement suspended.

Each notice is first written to ``autopay_notices`` (subject and text, the address
masked) in the same transaction as the change it reports: the trail keeps what the
member was sent. The wording is the templates': ``autopay_KIND.LANG.txt.j2`` for an
e-mail, ``autopay_KIND_text.LANG.txt.j2`` for a text, the terms in
``autopay_terms.LANG.txt.j2`` (``payments/templates/``, overridable per file in
``SECUREPAY_TEMPLATES_DIR`` as the receipt is). An e-mail goes where one is on file;
where the text receipt is on (``SECUREPAY_SMS_FROM``: ``Wording.texts``), a text too
(medium ``text``) to the account's first phone number on file that is a valid US number
(the numbers Call Capture matches, shared with the portal), whatever the channel of the
change.

A notice is delivered after the commit, by the receipts' SMTP sender
(``payments.receipts.ReceiptSender``) or by Twilio's Messages API
(``payments.texts.TwilioTexts``), claimed first (``sent_at``) as receipts are, so two
senders never both send it; a failure is kept on the row and the notice stays pending
for ``deliver_pending``. A text goes only to the number its row names (masked): a
number taken off file meanwhile is not texted. Notices hold the last four of the
account and of the method only (SECURITY 19b).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Literal

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Account, AutopayNotice, Phone
from ivr.flows.amounts import format_cents
from ivr.flows.ports import Clock
from ivr.flows.speech import say_date
from ivr.flows.texting import textable_us_number
from payments.autopay_terms import EnrollmentView, Wording, brand_name
from payments.mail_templates import TemplateError, mail_templates
from payments.receipts import ReceiptNotSent, ReceiptSender, mask_email, smtp_sender_for

if TYPE_CHECKING:
    from ivr.settings import Settings
    from payments.texts import TextSender

__all__ = ["AutopayNotices", "NoticeKind", "Wording", "build_autopay_notices", "write_notice"]

log = structlog.get_logger()

NoticeKind = Literal["enrolled", "method_changed", "cancelled", "suspended", "declined"]
Medium = Literal["email", "text"]


def compose_text(
    kind: NoticeKind,
    enrollment: EnrollmentView,
    *,
    lang: str,
    wording: Wording,
    account_last4: str,
    amount_cents: int | None = None,
    due_date: date | None = None,
    medium: Medium = "email",
) -> tuple[str, str]:
    """The subject and text of a notice, in ``lang``, from its template
    (``autopay_KIND`` for an e-mail, ``autopay_KIND_text`` for a text message)."""
    values = {
        "utility_name": wording.utility_name,
        "member_services": wording.member_services,
        "account_last4": account_last4,
        "method_kind": "bank" if enrollment.method_kind == "bank" else "card",
        "method_brand": brand_name(enrollment.method_brand),
        "method_last4": enrollment.method_last4,
        "first_due_after": say_date(enrollment.first_due_after, lang, with_year=True),
        "terms_version": enrollment.terms_version,
    }
    if kind == "declined":
        if amount_cents is None or due_date is None:
            raise ValueError("a declined notice names the amount and the bill's due date")
        values |= {"amount": format_cents(amount_cents), "due_date": say_date(due_date, lang, with_year=True)}
    message = f"autopay_{kind}" if medium == "email" else f"autopay_{kind}_text"
    return mail_templates(wording.templates_dir).render(message, lang, **values)


def mask_phone(e164: str) -> str:
    """``+12025550143`` -> ``+1******0143``: the last four, as a receipt names an account."""
    return e164[:2] + "*" * max(len(e164) - 6, 0) + e164[-4:]


def text_number(session: Session, account_id: int) -> str | None:
    """Where the account's notices are texted: its oldest number on file that is a
    valid US number (Twilio may still refuse it: a landline, an opted-out number)."""
    numbers = session.scalars(
        select(Phone.e164).where(Phone.account_id == account_id).order_by(Phone.created_at, Phone.id)
    )
    return next((number for number in numbers if textable_us_number(number)), None)


def write_notice(
    session: Session,
    kind: NoticeKind,
    enrollment: EnrollmentView,
    *,
    wording: Wording,
    now: datetime,
    amount_cents: int | None = None,
    due_date: date | None = None,
) -> tuple[int, ...]:
    """Write the notice for the account's e-mail address and, with texts on, for its
    number on file; the ids written (none without either)."""
    account = session.get(Account, enrollment.account_id)
    if account is None:
        return ()
    destinations: list[tuple[Medium, str]] = []
    if account.email:
        destinations.append(("email", mask_email(account.email)))
    number = text_number(session, account.id) if wording.texts else None
    if number is not None:
        destinations.append(("text", mask_phone(number)))
    if not destinations:
        return ()
    lang = "es" if account.language == "es" else "en"
    rows = []
    for medium, to_masked in destinations:
        subject, body = compose_text(
            kind,
            enrollment,
            lang=lang,
            wording=wording,
            account_last4=account.account_number[-4:],
            amount_cents=amount_cents,
            due_date=due_date,
            medium=medium,
        )
        rows.append(AutopayNotice(
            account_id=account.id,
            enrollment_id=enrollment.id,
            kind=kind,
            medium=medium,
            to_masked=to_masked,
            subject=subject,
            body=body,
            created_at=now,
        ))
    session.add_all(rows)
    session.flush()
    return tuple(row.id for row in rows)


def text_body(notice: AutopayNotice) -> str:
    """A text has no subject line: the subject (it names the utility) opens the body."""
    return f"{notice.subject}\n{notice.body}".rstrip()


class AutopayNotices:
    """Delivers written notices; ``sender=None`` (no SMTP host) leaves e-mails pending,
    ``texts=None`` (no ``SECUREPAY_SMS_FROM``) texts."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sender: ReceiptSender | None,
        clock: Clock,
        texts: TextSender | None = None,
    ) -> None:
        self._sessions = sessions
        self._sender = sender
        self._texts = texts
        self._clock = clock
        self._lock = threading.Lock()
        self._futures: set[Future[int]] = set()
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="securepay-autopay-notices")
            if sender is not None or texts is not None
            else None
        )

    def dispatch(self, notice_ids: list[int]) -> None:
        """Send in the background, after the commit (a webhook or the portal must not
        wait for SMTP); what is not sent stays pending for ``deliver_pending``."""
        if self._executor is None or not notice_ids:
            return
        try:
            future = self._executor.submit(self.deliver, list(notice_ids))
        except RuntimeError:  # shut down: the notices stay pending
            return
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[int]) -> None:
        with self._lock:
            self._futures.discard(future)

    def wait(self, timeout: float | None = None) -> None:
        """Block until every dispatched notice has been handled (tests, clean exit)."""
        with self._lock:
            pending = list(self._futures)
        wait_for(pending, timeout=timeout)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def enabled(self) -> bool:
        return self._sender is not None or self._texts is not None

    def deliver(self, notice_ids: list[int]) -> int:
        """Send these notices now; returns how many were sent. Never raises for SMTP."""
        sent = 0
        for notice_id in notice_ids:
            try:
                sent += self._deliver_one(notice_id)
            except SQLAlchemyError as exc:  # logged: a background thread has no caller
                log.error("autopay_notice_failed", notice_id=notice_id, error=type(exc).__name__)
        return sent

    def deliver_pending(self, limit: int = 100) -> int:
        with self._sessions() as session:
            ids = list(
                session.scalars(
                    select(AutopayNotice.id)
                    .where(AutopayNotice.sent_at.is_(None))
                    .order_by(AutopayNotice.id)
                    .limit(limit)
                )
            )
        return self.deliver(ids)

    def _deliver_one(self, notice_id: int) -> bool:
        with self._sessions() as session:
            found = session.execute(
                select(AutopayNotice, Account.email, Account.language)
                .join(Account, Account.id == AutopayNotice.account_id)
                .where(AutopayNotice.id == notice_id)
            ).one_or_none()
            if found is None or found.AutopayNotice.sent_at is not None:
                return False
            notice: AutopayNotice = found.AutopayNotice
            number = text_number(session, notice.account_id) if notice.medium == "text" else None
        if notice.medium == "text":
            if self._texts is None or number is None or mask_phone(number) != notice.to_masked:
                return False  # texts off, or the number is no longer on file: left pending
            return self._text_one(notice, number, self._texts)
        sender = self._sender
        if sender is None or not found.email:
            return False
        claimed_at = self._claim(notice_id)
        if claimed_at is None:
            return False
        message = EmailMessage()
        message["Subject"] = notice.subject
        message["To"] = found.email
        message["Date"] = format_datetime(notice.created_at.astimezone(UTC))
        message["Message-ID"] = f"<autopay.{notice.id}@securepay.invalid>"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(notice.body, charset="utf-8")
        message["Content-Language"] = "es" if found.language == "es" else "en"
        try:
            sender.send(message)
        except ReceiptNotSent as exc:
            self._release(notice_id, claimed_at, str(exc))
            log.warning("autopay_notice_failed", notice_id=notice_id, error=str(exc))
            return False
        log.info("autopay_notice_sent", notice_id=notice_id, kind=notice.kind, to=notice.to_masked)
        return True

    def _text_one(self, notice: AutopayNotice, number: str, texts: TextSender) -> bool:
        claimed_at = self._claim(notice.id)
        if claimed_at is None:
            return False
        outcome = texts.send(number, text_body(notice))
        if not outcome.sent:
            code = f" (Twilio error {outcome.error_code})" if outcome.error_code is not None else ""
            self._release(notice.id, claimed_at, f"text {outcome.reason}{code}")
            log.warning("autopay_notice_failed", notice_id=notice.id, medium="text", reason=outcome.reason,
                        error_code=outcome.error_code)
            return False
        log.info("autopay_notice_sent", notice_id=notice.id, kind=notice.kind, medium="text",
                 to=notice.to_masked, message_sid=outcome.message_sid)
        return True

    def _claim(self, notice_id: int) -> datetime | None:
        """Mark the notice as being sent; None when another sender has it already."""
        claimed_at = self._clock.now()
        with self._sessions() as session, session.begin():
            claimed = session.execute(
                update(AutopayNotice)
                .where(AutopayNotice.id == notice_id, AutopayNotice.sent_at.is_(None))
                .values(sent_at=claimed_at),
                execution_options={"synchronize_session": False},
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
        return claimed_at

    def _release(self, notice_id: int, claimed_at: datetime, failure: str) -> None:
        """Not sent: pending again, with why (for ``deliver_pending`` and staff)."""
        with self._sessions() as session, session.begin():
            session.execute(
                update(AutopayNotice)
                .where(AutopayNotice.id == notice_id, AutopayNotice.sent_at == claimed_at)
                .values(sent_at=None, failure=failure[:200]),
                execution_options={"synchronize_session": False},
            )


def build_autopay_notices(
    settings: Settings, sessions: sessionmaker[Session], clock: Clock
) -> AutopayNotices:
    """Notices go out through the receipts' SMTP sender (its TLS and login settings) and,
    with ``SECUREPAY_SMS_FROM``, the text receipts' Twilio sender."""
    from ivr.settings import SettingsError
    from payments.texts import text_sender_for  # the twilio client, only where notices go out

    try:
        mail_templates(settings.templates_dir)  # compiled now: a broken override stops the start
    except TemplateError as exc:
        raise SettingsError(str(exc)) from None
    return AutopayNotices(sessions, smtp_sender_for(settings), clock, text_sender_for(settings))


def wording_from(settings: Settings) -> Wording:
    texts = settings.sms_from is not None  # the text receipt is on
    return Wording(settings.utility_name, settings.member_services_number, texts=texts,
                   templates_dir=settings.templates_dir)
