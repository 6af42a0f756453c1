"""What a flow step sees: the call, the ports, the configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ivr.flows.pin_policy import PinPolicy
from ivr.flows.ports import AccountSummary, CallRecord, Clock, PinHasher, UnitOfWork
from ivr.settings import BusinessHours, Settings
from payments.gateway import PaymentGateway

if TYPE_CHECKING:
    from ivr.flows.texting import TextJob

log = structlog.get_logger("securepay.trail")


class Notifier(Protocol):
    def payment_taken(self, payment_id: int) -> None:
        """A payment was committed (send the receipt); never raises, never blocks."""
        ...


class NoNotifier:
    def payment_taken(self, payment_id: int) -> None:
        return None


class ReceiptTexter(Protocol):
    def text_receipt(self, job: TextJob) -> None:
        """Text a receipt after the step committed; never raises, never blocks the call.
        The outcome is recorded in the trail and in the call's ``data["texts"]``."""
        ...


class NoticeSender(Protocol):
    def dispatch(self, notice_ids: list[int]) -> None:
        """Send written notices (Auto Pay's) after the commit; never raises, never blocks."""
        ...


class NoNotices:
    def dispatch(self, notice_ids: list[int]) -> None:
        return None


class CallMoved(Exception):
    """Another request moved the call on while this one was between transactions."""

    def __init__(self, current: CallRecord | None) -> None:
        super().__init__("the call moved on")
        self.current = current


@dataclass(frozen=True)
class Timeouts:
    """Seconds a gather waits for the first key, per kind of wait (``machine.Wait``)."""

    language: int = 2
    menu: int = 6
    entry: int = 8
    card: int = 10

    def seconds(self, wait: str) -> int:
        return int(getattr(self, wait))


@dataclass(frozen=True)
class FlowConfig:
    """The settings a call flow needs, taken from ``Settings`` once."""

    utility_name: str
    member_services_number: str
    business_hours: BusinessHours
    timezone: tzinfo
    payment_min_cents: int
    payment_max_cents: int
    pin_failures_per_call: int = 3
    pin_failures_per_account: int = 5
    pin_failure_window: timedelta = timedelta(hours=24)
    caller_failures_per_hour: int = 10
    withheld_failures_per_hour: int = 10
    line_failures_per_hour: int = 100
    max_captured_accounts: int = 8
    account_entry_tries: int = 3
    pay_connector: str = "Default"
    card_types: tuple[str, ...] = ("visa", "mastercard", "amex", "discover")
    new_cards_per_call: int = 2
    declines_per_account_day: int = 3
    declines_per_caller_day: int = 5
    timeouts: Timeouts = field(default_factory=Timeouts)
    closed_days: frozenset[date] = frozenset()  # member services closed all day (holidays)
    texts_on: bool = False  # text receipts (key 3 after a payment) are offered
    autopay_record_consent: bool = False  # bank accounts enrolled by phone, recorded
    templates_dir: str | None = None  # a utility's own notice wording (SECUREPAY_TEMPLATES_DIR)

    @classmethod
    def from_settings(cls, settings: Settings) -> FlowConfig:
        return cls(
            utility_name=settings.utility_name,
            member_services_number=settings.member_services_number,
            business_hours=settings.business_hours,
            timezone=settings.timezone,
            payment_min_cents=settings.payment_min_cents,
            payment_max_cents=settings.payment_max_cents,
            pin_failures_per_call=settings.pin_failures_per_call,
            pin_failures_per_account=settings.pin_failures_per_account,
            pin_failure_window=timedelta(hours=settings.pin_failure_window_hours),
            caller_failures_per_hour=settings.caller_failures_per_hour,
            withheld_failures_per_hour=settings.withheld_failures_per_hour,
            line_failures_per_hour=settings.line_failures_per_hour,
            pay_connector=settings.pay_connector,
            card_types=settings.card_types,
            new_cards_per_call=settings.new_cards_per_call,
            declines_per_account_day=settings.declines_per_account_day,
            declines_per_caller_day=settings.declines_per_caller_day,
            timeouts=Timeouts(
                language=settings.language_timeout_seconds,
                menu=settings.menu_timeout_seconds,
                entry=settings.entry_timeout_seconds,
                card=settings.card_timeout_seconds,
            ),
            closed_days=settings.closed_days,
            texts_on=settings.sms_from is not None,
            autopay_record_consent=settings.autopay_record_consent,
            templates_dir=settings.templates_dir,
        )


@dataclass
class Ctx:
    """One step of one call: read and change ``call``; reach the world through the ports."""

    call: CallRecord
    uow: UnitOfWork
    hasher: PinHasher
    policy: PinPolicy
    clock: Clock
    config: FlowConfig
    gateway: PaymentGateway | None = None
    notifier: Notifier = field(default_factory=NoNotifier)
    texter: ReceiptTexter | None = None  # None: text receipts are off
    notices: NoticeSender = field(default_factory=NoNotices)
    payload: Mapping[str, str] = field(default_factory=dict)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    _account: AccountSummary | None = field(default=None, repr=False)
    memo: dict[str, object] = field(default_factory=dict, repr=False)  # per request (ivr.flows.wallet)

    @property
    def lang(self) -> str:
        return self.call.language

    @property
    def caller(self) -> str | None:
        """The caller's number in E.164 when Call Capture could read it."""
        value = self.call.data.get("caller_e164")
        return str(value) if value else None

    def account(self) -> AccountSummary:
        """The account this call is about (identified, not necessarily verified), read
        at most once per step: ``refresh_account`` reads it again."""
        if self.call.account_id is None:
            raise LookupError("no account is selected on this call")
        if self._account is None or self._account.id != self.call.account_id:
            self._account = self.uow.accounts.get(self.call.account_id)
        return self._account

    def checkpoint(self) -> None:
        """Commit what this step wrote so far, then lock the call again.

        Used to make a payment attempt durable before the processor is called. Raises
        ``CallMoved`` when another request for this call moved it on in between.
        """
        self.uow.commit_step(self.call)
        current = self.uow.calls.load_for_update(self.call.call_sid)
        if current is None or (current.state, current.step, current.status) != (
            self.call.state, self.call.step, self.call.status
        ):
            raise CallMoved(current)
        self.call = current
        self._account = None

    def remember_account(self, account: AccountSummary) -> None:
        """An account this step has just read (by its number): ``account()`` needs no read."""
        self._account = account

    def refresh_account(self) -> AccountSummary:
        """The account read again (its balance may have changed under a lock)."""
        self._account = None
        return self.account()

    def event(self, name: str, *, success: bool = True, **detail: Any) -> None:
        """Append a trail event for this call (never with a secret in ``detail``), and
        log it: the log is for operators, the trail (in the database) for auditors."""
        log.info(name, success=success, state=self.call.state, **detail)
        self.uow.events.record(
            name,
            call_sid=self.call.call_sid,
            account_id=self.call.account_id,
            actor=self.caller or "caller-id-withheld",
            success=success,
            state=self.call.state,
            **detail,
        )
