"""Payment receipts by email: composed here, sent by SMTP, never in the call's way.

The call flow commits the ledger (``PaymentAttempt`` + ``Payment``) and then calls
``ReceiptDispatcher.dispatch(payment_id)``. That returns at once: a small background
pool loads the payment and its account, and sends a receipt when the account has an
email address. A failure (no SMTP server, a refused address) is logged as
``receipt_failed`` and leaves the receipt pending; ``send_pending()`` (the
``securepay payments send-receipts`` command, or a periodic job) tries again later.
The member already heard the confirmation number: a receipt is a courtesy, so nothing
here ever raises into the call.

What a receipt holds (SECURITY 2): the utility's name, the last four of the account
number, the amount, the confirmation number, the method's brand and last four, and the
time in the utility's zone. Never a full account number, never other card data.

Delivery is claimed before it is attempted. ``Payment.receipt_sent_at`` is set by one
conditional ``UPDATE ... WHERE receipt_sent_at IS NULL`` *before* the SMTP conversation,
so of two senders (two threads, two processes, the web app and the CLI) only the one
whose update changed the row sends; the other skips. When sending fails, the claim is
released (set back to NULL, only if it is still ours) and the receipt is pending again.
Two edges remain, both documented rather than hidden:

* at least once: when the SMTP server accepted the message but its final reply was
  lost (connection reset, timeout), we see a failure, release the claim, and a later
  retry sends the receipt again. The ``Message-ID`` is derived from the confirmation
  number, so the copies are the same message to mail software that de-duplicates.
* at most once: when the process dies between the claim and the end of the send, the
  row says "sent" and nothing was sent; ``receipt_claimed`` without a following
  ``receipt_sent`` in the log is the trace of it. A separate claim column would close
  this window (a schema change, not made here).
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Account, Call, Payment, PaymentAttempt
from ivr import metrics
from ivr.flows.amounts import format_cents
from ivr.flows.ports import Clock
from ivr.flows.speech import say_date
from ivr.settings import SettingsError
from payments.mail_templates import MailTemplates, TemplateError, mail_templates

if TYPE_CHECKING:
    from ivr.settings import Settings

__all__ = [
    "Receipt",
    "ReceiptDispatcher",
    "ReceiptNotSent",
    "ReceiptSender",
    "SmtpReceiptSender",
    "build_receipt_dispatcher",
    "compose",
    "mask_email",
]

log = structlog.get_logger()

Language = Literal["en", "es"]
Outcome = Literal["sent", "failed", "skipped"]

# A receipt for a payment older than this is not sent by ``send_pending``: a member who
# adds an email address to an old account should not get a year of receipts at once.
DEFAULT_MAX_AGE = timedelta(days=7)

_BRANDS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
}


class ReceiptNotSent(Exception):
    """The SMTP server could not be reached, or refused the message.

    The message names the server and the failure (an SMTP code, an OS error), never the
    recipient's address.
    """


# --- composing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """What a receipt says; nothing else of the payment or the card goes into it."""

    to: str
    language: Language
    utility_name: str
    account_last4: str
    amount_cents: int
    confirmation: str
    method_brand: str
    method_last4: str
    taken_at: datetime  # aware UTC
    timezone: ZoneInfo  # the utility's, for the time shown

    def __post_init__(self) -> None:
        if not self.to.strip():
            raise ValueError("a receipt needs an address")
        if self.language not in ("en", "es"):
            raise ValueError(f"unsupported receipt language {self.language!r}")
        if type(self.amount_cents) is not int or self.amount_cents <= 0:
            raise ValueError("amount_cents must be a positive whole number of cents")
        if self.taken_at.tzinfo is None:
            raise ValueError("taken_at must be an aware datetime")
        for name in ("account_last4", "method_last4"):
            value = getattr(self, name)
            if len(value) > 4 or not (value == "" or value.isdigit()):
                raise ValueError(f"{name} must be at most four digits")


def _brand(brand: str) -> str:
    return _BRANDS.get(brand.lower(), brand if brand != brand.lower() else brand.title())


def _local_time(receipt: Receipt) -> str:
    local = receipt.taken_at.astimezone(receipt.timezone)
    zone = local.tzname() or str(receipt.timezone)
    day = say_date(local.date(), receipt.language, with_year=True)
    if receipt.language == "en":
        hour = local.hour % 12 or 12
        return f"{day} at {hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'} {zone}"
    return f"{day}, {local.hour}:{local.minute:02d} {zone}"


def _method(receipt: Receipt) -> str:
    brand = _brand(receipt.method_brand)
    if not receipt.method_last4:
        return brand
    joiner = "ending in" if receipt.language == "en" else "terminada en"
    return f"{brand} {joiner} {receipt.method_last4}"


def _body(receipt: Receipt, templates: MailTemplates) -> tuple[str, str]:
    """The subject and the text, in the receipt's language, from its template."""
    return templates.render(
        "receipt",
        receipt.language,
        utility_name=receipt.utility_name,
        account_last4=receipt.account_last4,
        amount=format_cents(receipt.amount_cents),
        confirmation=receipt.confirmation,
        method=_method(receipt),
        when=_local_time(receipt),
    )


def _built_in_templates() -> MailTemplates:
    return mail_templates()


def compose(
    receipt: Receipt, *, sender: str | None = None, templates: MailTemplates | None = None
) -> EmailMessage:
    """The receipt as a plain-text email. ``From`` is set by the sender when not given.
    The wording is the ``receipt`` template (the built-in one unless ``templates`` say).

    The ``Message-ID`` is derived from the confirmation number, so a receipt sent twice
    (see the module's note on at-least-once) is recognisably the same message.
    """
    subject, text = _body(receipt, templates or _built_in_templates())
    message = EmailMessage()
    message["Subject"] = subject
    if sender is not None:
        message["From"] = sender
    message["To"] = receipt.to
    message["Date"] = format_datetime(receipt.taken_at.astimezone(UTC))
    message["Message-ID"] = f"<receipt.{receipt.confirmation}@securepay.invalid>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, charset="utf-8")
    message["Content-Language"] = receipt.language  # after set_content, which clears Content-*
    return message


def mask_email(address: str) -> str:
    """``maria.rivera@example.com`` -> ``m***@example.com``: enough to tell two apart in a
    log, not enough to write to."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


# --- sending --------------------------------------------------------------------------


class ReceiptSender(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to its ``To``; raise ``ReceiptNotSent`` when that failed."""
        ...


SmtpSecurity = Literal["none", "starttls", "ssl"]


class SmtpReceiptSender:
    """Implements ``ReceiptSender`` with one SMTP conversation per message.

    ``security``: ``"none"`` (plain SMTP to a relay on a trusted network), ``"starttls"``
    (``SECUREPAY_SMTP_STARTTLS``: upgrade on the submission port, 587) or ``"ssl"``
    (``SECUREPAY_SMTP_SSL``: TLS from the first byte, 465). The server's certificate is
    verified against ``ssl_context`` (the system's CAs unless given). With a
    ``username`` the sender logs in (AUTH) after TLS; the password is never shown
    (``repr``, logs, errors).
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        timeout: float = 10,
        *,
        security: SmtpSecurity = "none",
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if security not in ("none", "starttls", "ssl"):
            raise ValueError(f"unknown SMTP security {security!r}")
        if (username is None) != (password is None):
            raise ValueError("an SMTP username needs a password, and a password a username")
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self.security = security
        self.username = username
        self._password = password
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        auth = f" as {self.username}" if self.username else ""
        return f"<SmtpReceiptSender {self.host}:{self.port} {self.security}{auth}>"

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def send(self, message: EmailMessage) -> None:
        if message["From"] is None:
            message["From"] = self.sender
        try:
            smtp = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            raise ReceiptNotSent(f"SMTP server {self.host}:{self.port}: {_reason(exc)}") from None
        try:
            if self.security == "starttls":
                smtp.starttls(context=self._context())
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password)
            smtp.send_message(message, from_addr=self.sender)
        except (smtplib.SMTPException, OSError) as exc:
            raise ReceiptNotSent(f"SMTP server {self.host}:{self.port}: {_reason(exc)}") from None
        finally:
            _quit(smtp)


def smtp_sender_for(settings: Settings) -> SmtpReceiptSender | None:
    """The SMTP sender the settings describe; None without ``SECUREPAY_SMTP_HOST``."""
    if settings.smtp_host is None:
        return None
    security: SmtpSecurity = "ssl" if settings.smtp_ssl else "starttls" if settings.smtp_starttls else "none"
    context = None
    if settings.smtp_ca_file is not None and security != "none":
        try:
            context = ssl.create_default_context(cafile=settings.smtp_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(f"SECUREPAY_SMTP_CA_FILE cannot be used: {type(exc).__name__}") from None
    return SmtpReceiptSender(
        settings.smtp_host,
        settings.smtp_port,
        settings.receipt_from,
        security=security,
        username=settings.smtp_username,
        password=None if settings.smtp_password is None else settings.smtp_password.reveal(),
        ssl_context=context,
    )


def _reason(exc: BaseException) -> str:
    """The failure without its text where that text may quote the recipient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        return f"recipient refused (SMTP {', '.join(map(str, codes))})"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"authentication refused (SMTP {exc.smtp_code})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} (SMTP {exc.smtp_code})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _quit(smtp: smtplib.SMTP) -> None:
    """End the conversation; once the message is accepted, a failed QUIT changes nothing."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


# --- the ledger's side ----------------------------------------------------------------


@dataclass(frozen=True)
class _Pending:
    """What a receipt needs from the ledger, read in one short transaction."""

    payment_id: int
    email: str | None
    language: str | None
    account_number: str
    amount_cents: int
    confirmation: str
    method_brand: str
    method_last4: str
    taken_at: datetime
    sent_at: datetime | None


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _load(session: Session, payment_id: int) -> _Pending | None:
    row = session.execute(
        select(
            Payment.id,
            Account.email,
            # The language of the call the payment was taken in, else the account's.
            func.coalesce(Call.language, Account.language).label("language"),
            Account.account_number,
            Payment.amount_cents,
            Payment.confirmation,
            PaymentAttempt.method_brand,
            PaymentAttempt.method_last4,
            Payment.taken_at,
            Payment.receipt_sent_at,
        )
        .join(Account, Account.id == Payment.account_id)
        .join(PaymentAttempt, PaymentAttempt.id == Payment.attempt_id)
        .outerjoin(Call, Call.call_sid == PaymentAttempt.call_sid)
        .where(Payment.id == payment_id)
    ).one_or_none()
    if row is None:
        return None
    return _Pending(
        payment_id=row.id,
        email=row.email,
        language=row.language,
        account_number=row.account_number,
        amount_cents=row.amount_cents,
        confirmation=row.confirmation,
        method_brand=row.method_brand,
        method_last4=row.method_last4,
        taken_at=row.taken_at,
        sent_at=row.receipt_sent_at,
    )


def _claim(session: Session, payment_id: int, now: datetime) -> bool:
    stmt = (
        update(Payment)
        .where(Payment.id == payment_id, Payment.receipt_sent_at.is_(None))
        .values(receipt_sent_at=now)
    )
    return _rowcount(session.execute(stmt, execution_options={"synchronize_session": False})) == 1


def _release(session: Session, payment_id: int, claimed_at: datetime) -> None:
    stmt = (
        update(Payment)
        .where(Payment.id == payment_id, Payment.receipt_sent_at == claimed_at)
        .values(receipt_sent_at=None)
    )
    session.execute(stmt, execution_options={"synchronize_session": False})


def _pending_ids(session: Session, since: datetime, limit: int) -> list[int]:
    stmt = (
        select(Payment.id)
        .join(Account, Account.id == Payment.account_id)
        .where(
            Payment.receipt_sent_at.is_(None),
            Payment.taken_at >= since,
            Account.email.is_not(None),
            Account.email != "",
        )
        .order_by(Payment.taken_at, Payment.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


# --- dispatching ----------------------------------------------------------------------


class ReceiptDispatcher:
    """Sends receipts off the caller's thread; retries pending ones on request.

    It is the flow's ``Notifier`` (``payment_taken``). Call ``shutdown(cancel_queued=True)``
    when the process stops, so that only the sends in progress (one per worker) are
    waited for; the queued ones stay pending.

    ``sender=None`` (no SMTP host configured) turns receipts off: every method returns
    at once and ``receipt_skipped`` is logged once. ``workers`` threads send (1 or 2: a
    receipt is not urgent, and a slow SMTP server must not take more than that);
    at most ``max_queued`` receipts wait for them, beyond which a dispatch is logged as
    ``receipt_deferred`` and left to ``send_pending``.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sender: ReceiptSender | None,
        clock: Clock,
        *,
        utility_name: str,
        timezone: ZoneInfo,
        workers: int = 1,
        max_queued: int = 100,
        templates: MailTemplates | None = None,
    ) -> None:
        if not 1 <= workers <= 2:
            raise ValueError("workers must be 1 or 2")
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self._sessions = sessions
        self._sender = sender
        self._clock = clock
        self._utility_name = utility_name
        self._timezone = timezone
        self._templates = templates or _built_in_templates()
        self._slots = threading.BoundedSemaphore(max_queued)
        self._lock = threading.Lock()
        self._futures: set[Future[Outcome]] = set()
        self._skip_logged = False
        self._executor = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="securepay-receipts")
            if sender is not None
            else None
        )

    @property
    def enabled(self) -> bool:
        return self._sender is not None

    def dispatch(self, payment_id: int) -> None:
        """Send the receipt of ``payment_id`` in the background; call after the ledger
        commit. Never raises, never waits for the network."""
        try:
            if self._executor is None:
                self._log_skipped()
                return
            if not self._slots.acquire(blocking=False):
                log.warning("receipt_deferred", payment_id=payment_id, reason="queue_full")
                return
            try:
                future = self._executor.submit(self._send_one, payment_id)
            except RuntimeError:  # shut down
                self._slots.release()
                log.warning("receipt_deferred", payment_id=payment_id, reason="shut_down")
                return
            with self._lock:
                self._futures.add(future)
            future.add_done_callback(self._done)
        except Exception:  # the call must go on; the failure is logged, not hidden
            log.exception("receipt_dispatch_failed", payment_id=payment_id)

    def payment_taken(self, payment_id: int) -> None:
        """Implements ``ivr.flows.context.Notifier``: the flow calls this after commit."""
        self.dispatch(payment_id)

    def send_pending(self, limit: int = 100, *, max_age: timedelta = DEFAULT_MAX_AGE) -> tuple[int, int]:
        """Send, here and now, up to ``limit`` receipts still pending (oldest first) of
        payments taken within ``max_age``; returns ``(sent, failed)``.

        Raises the database's errors (a command should fail loudly); SMTP failures are
        counted and logged, not raised.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if self._sender is None:
            self._log_skipped()
            return 0, 0
        with self._sessions() as session:
            ids = _pending_ids(session, self._clock.now() - max_age, limit)
        sent = failed = 0
        for payment_id in ids:
            outcome = self._send_one(payment_id, reraise=True)
            sent += outcome == "sent"
            failed += outcome == "failed"
        return sent, failed

    def wait(self, timeout: float | None = None) -> None:
        """Block until every dispatched receipt has been handled (tests, clean exit)."""
        with self._lock:
            pending = list(self._futures)
        wait_for(pending, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_queued: bool = False) -> None:
        """Stop taking work; with ``wait``, finish what was dispatched. With
        ``cancel_queued`` (at process exit), receipts not yet started are dropped: they
        were never claimed, so they stay pending for ``send_pending``."""
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=cancel_queued)

    # -- internals ---------------------------------------------------------------------

    def _done(self, future: Future[Outcome]) -> None:
        self._slots.release()
        with self._lock:
            self._futures.discard(future)

    def _log_skipped(self) -> None:
        if not self._skip_logged:
            self._skip_logged = True
            log.info("receipt_skipped", reason="smtp_not_configured")

    def _send_one(self, payment_id: int, *, reraise: bool = False) -> Outcome:
        """One receipt; in the background (``reraise=False``) every failure is logged
        and swallowed, since there is no caller to hand it to."""
        sender = self._sender
        if sender is None:
            return "skipped"
        try:
            return self._deliver(sender, payment_id)
        except SQLAlchemyError as exc:
            log.error("receipt_failed", payment_id=payment_id, error=type(exc).__name__)
            if reraise:
                raise
            return "failed"
        except Exception:  # a background thread: logged here, or it is lost
            if reraise:
                raise
            log.exception("receipt_failed", payment_id=payment_id, error="unexpected")
            return "failed"

    def _deliver(self, sender: ReceiptSender, payment_id: int) -> Outcome:
        with self._sessions() as session:
            pending = _load(session, payment_id)
        if pending is None:
            log.warning("receipt_failed", payment_id=payment_id, error="no_such_payment")
            return "failed"
        if not pending.email:
            return "skipped"
        if pending.sent_at is not None:
            return "skipped"
        to = mask_email(pending.email)
        try:
            message = compose(self._receipt(pending, pending.email), templates=self._templates)
        except ValueError as exc:  # a malformed stored address or a field out of shape
            log.error("receipt_failed", payment_id=payment_id, to=to, error=f"not composed: {exc}")
            return "failed"

        claimed_at = self._clock.now()
        with self._sessions() as session, session.begin():
            if not _claim(session, payment_id, claimed_at):
                return "skipped"  # another sender has it
        log.info("receipt_claimed", payment_id=payment_id, to=to)
        try:
            sender.send(message)
        except ReceiptNotSent as exc:
            self._release(payment_id, claimed_at)
            metrics.receipt("failed")
            log.warning("receipt_failed", payment_id=payment_id, to=to, error=str(exc))
            return "failed"
        except BaseException:
            self._release(payment_id, claimed_at)
            raise
        metrics.receipt("sent")
        log.info("receipt_sent", payment_id=payment_id, to=to)
        return "sent"

    def _release(self, payment_id: int, claimed_at: datetime) -> None:
        with self._sessions() as session, session.begin():
            _release(session, payment_id, claimed_at)

    def _receipt(self, pending: _Pending, to: str) -> Receipt:
        language: Language = "es" if pending.language == "es" else "en"
        return Receipt(
            to=to,
            language=language,
            utility_name=self._utility_name,
            account_last4=pending.account_number[-4:],
            amount_cents=pending.amount_cents,
            confirmation=pending.confirmation,
            method_brand=pending.method_brand,
            method_last4=pending.method_last4,
            taken_at=pending.taken_at,
            timezone=self._timezone,
        )


def build_receipt_dispatcher(
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
    *,
    sender_factory: Callable[[Settings], ReceiptSender | None] = smtp_sender_for,
) -> ReceiptDispatcher:
    """The dispatcher the settings ask for: off (``sender=None``) without an SMTP host.
    The mail templates are compiled here: a broken override is a ``SettingsError``."""
    try:
        templates = mail_templates(settings.templates_dir)  # once per process and folder
    except TemplateError as exc:
        raise SettingsError(str(exc)) from None
    return ReceiptDispatcher(
        sessions,
        sender_factory(settings),
        clock,
        utility_name=settings.utility_name,
        timezone=settings.timezone,
        templates=templates,
    )
