"""The ports the call flow talks to the world through.

``ivr.flows`` imports none of flask, stripe or sqlalchemy: the database adapters in
``db.repositories`` and the hashing in ``ivr.pinhash`` implement these protocols, and
the tests use fakes of our own where a real peer is not the point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol

from payments.autopay_terms import Cancelled, Enrolled, EnrollmentView, Wording
from payments.gateway import MethodInfo

PinOrigin = Literal["member", "legacy", "none"]
AccountType = Literal["residential", "commercial"]
AttemptStatus = Literal["pending", "succeeded", "processing", "declined", "failed", "unknown"]


@dataclass(frozen=True)
class AccountSummary:
    """What the flow may know of an account. Nothing here is secret, but nothing of it
    is said to the caller before the PIN except the last four of ``number``."""

    id: int
    number: str
    account_type: AccountType
    has_ssn: bool
    language: str | None
    balance_cents: int  # imported balance less payments taken since; negative = credit
    past_due_cents: int
    due_date: date
    email: str | None = None


@dataclass(frozen=True)
class AccountRef:
    """An account as Call Capture finds it: its id, number and language, nothing more."""

    id: int
    number: str
    language: str | None = None


@dataclass(frozen=True)
class Credential:
    """An account's phone PIN record (hashes only)."""

    account_id: int
    pin_hash: str | None
    origin: PinOrigin
    ssn_hash: str | None
    failure_count: int
    locked: bool
    changed_at: datetime | None = None


@dataclass
class CallRecord:
    """A call's persisted state. ``data`` holds only non-secret flow context."""

    call_sid: str
    from_number: str
    to_number: str
    state: str
    started_at: datetime
    language: str = "en"
    step: int = 0
    account_id: int | None = None
    verified: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    status: Literal["active", "ended"] = "active"
    outcome: str | None = None
    ended_at: datetime | None = None


class Accounts(Protocol):
    def by_phone(self, e164: str, limit: int) -> list[AccountRef]:
        """Accounts with this number on file, ascending by account number, at most ``limit``."""
        ...

    def by_number(self, account_number: str) -> AccountSummary | None: ...

    def get(self, account_id: int) -> AccountSummary: ...


class Credentials(Protocol):
    def get(self, account_id: int) -> Credential: ...

    def reserve_attempt(
        self, account_id: int, now: datetime, limit: int, window: timedelta
    ) -> Credential | None:
        """Atomically count one failed try in advance; None when locked or exhausted
        (or no such account), else the credential as it stands with the try counted:
        what to verify against, with no second read.

        The reservation is undone by ``release_attempt`` when the entry turns out right.
        Counting before verifying is what keeps two simultaneous calls from both getting
        the last try.
        """
        ...

    def release_attempt(self, account_id: int) -> None: ...

    def lock_if_exhausted(self, account_id: int, now: datetime, limit: int) -> bool:
        """Lock the account's phone PIN when its failures reached ``limit``; True if locked."""
        ...

    def set_pin(self, account_id: int, pin_hash: str, origin: PinOrigin, now: datetime) -> None: ...

    def replace_hash(self, account_id: int, pin_hash: str) -> None:
        """Store a rehash of the same PIN (parameters raised); origin and dates unchanged."""
        ...

    def reset(self, account_id: int, now: datetime) -> None:
        """Clear the PIN: the member creates a new one on the next call."""
        ...

    def unlock(self, account_id: int, now: datetime) -> None: ...

    def reserve_caller_attempt(
        self, caller: str, now: datetime, limit: int, window: timedelta
    ) -> bool:
        """Count one try against a caller number; False when it is over ``limit`` in ``window``."""
        ...

    def release_caller_attempt(self, caller: str) -> None: ...

    def count_failure(self, key: str, now: datetime, window: timedelta) -> int:
        """Count one failure against ``key`` (uncapped) in its window; the count after it.

        A window opens at a failure and lasts ``window``; the next failure after it opens
        a new one at 1. The line-wide PIN failure alarm counts this way.
        """
        ...


class Calls(Protocol):
    def load_for_update(self, call_sid: str) -> CallRecord | None:
        """The call, locked for this transaction (one step of a call at a time)."""
        ...

    def create(self, record: CallRecord) -> bool:
        """Insert a new call as it stands (locked for this transaction); False, and
        nothing written, when ``call_sid`` exists already (``load_for_update`` it)."""
        ...

    def save(self, record: CallRecord) -> None:
        """Write the call back; nothing when it is as this transaction loaded or wrote it."""
        ...


class Events(Protocol):
    def record(
        self,
        event: str,
        *,
        call_sid: str | None = None,
        account_id: int | None = None,
        actor: str | None = None,
        success: bool = True,
        **detail: Any,
    ) -> None:
        """Append a trail entry. ``detail`` must never hold a secret."""
        ...


@dataclass(frozen=True)
class MethodRef:
    """The method an attempt charges: processor id, brand, last four (never more)."""

    processor_id: str
    brand: str
    last4: str


@dataclass(frozen=True)
class AttemptView:
    id: str  # the processor's idempotency key
    call_sid: str
    attempt_no: int
    account_id: int
    amount_cents: int
    status: AttemptStatus
    processor_id: str | None
    method: MethodRef
    opened_at: datetime | None = None  # when the row was written, before the processor heard


@dataclass(frozen=True)
class PaymentView:
    id: int
    amount_cents: int
    confirmation: str
    taken_at: datetime
    status: str


@dataclass(frozen=True)
class Declines:
    """Declined attempts in a window: on the account, and from the caller's number."""

    account: int
    caller: int


class Ledger(Protocol):
    def lock_account(self, account_id: int) -> None: ...

    def attempt(self, call_sid: str, attempt_no: int) -> AttemptView | None: ...

    def try_open_attempt(
        self,
        *,
        call_sid: str,
        attempt_no: int,
        account_id: int,
        amount_cents: int,
        method: MethodRef,
        caller: str | None,
        now: datetime,
    ) -> AttemptView | None:
        """Write a pending attempt; None when ``(call_sid, attempt_no)`` has one already
        (a replay): nothing is read, and the one there is left as it is."""
        ...

    def open_attempt(
        self,
        *,
        call_sid: str,
        attempt_no: int,
        account_id: int,
        amount_cents: int,
        method: MethodRef,
        caller: str | None,
        now: datetime,
    ) -> AttemptView: ...

    def settle(
        self,
        attempt_id: str,
        *,
        status: AttemptStatus,
        now: datetime,
        processor_id: str | None = None,
        decline_code: str | None = None,
    ) -> None: ...

    def record_payment(
        self, attempt: AttemptView, *, processor_id: str, status: str, now: datetime
    ) -> PaymentView: ...

    def last_payment(self, account_id: int) -> PaymentView | None: ...

    def declines(self, since: datetime, *, account_id: int | None, caller: str | None) -> Declines:
        """Both counts of the card-testing cap (SECURITY 15a) in one read; a side given
        None counts nothing."""
        ...


# The IVR's method menu offers stored methods on keys 1 to 7 (contract 2.6): an eighth
# could never be chosen by phone, so the shared store keeps at most seven per account.
MAX_STORED_METHODS = 7


class MethodNotStored(Exception):
    """A method could not be kept on file (already on file elsewhere, or too many)."""


class MethodOnFile(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def processor_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def brand(self) -> str: ...

    @property
    def last4(self) -> str: ...

    @property
    def exp_month(self) -> int | None: ...

    @property
    def exp_year(self) -> int | None: ...

    @property
    def mandate_id(self) -> str | None: ...


@dataclass(frozen=True)
class Wallet:
    """What a payment step needs of an account's methods, in one read: the methods (as
    ``StoredMethods.for_account`` lists them), the processor customer, and the processor
    id of the method the latest payment was taken with."""

    account_id: int
    customer_id: str | None
    methods: Sequence[MethodOnFile]
    last_paid: str | None = None


class StoredMethods(Protocol):
    def for_account(self, account_id: int) -> Sequence[MethodOnFile]: ...

    def wallet(self, account_id: int) -> Wallet:
        """The account's methods, processor customer and last paid method, one read."""
        ...

    def add(
        self,
        account_id: int,
        info: MethodInfo,
        *,
        created_via: Literal["ivr", "portal"],
        now: datetime,
        limit: int | None = None,
    ) -> MethodOnFile: ...

    def customer_id(self, account_id: int) -> str | None: ...

    def set_customer_id(self, account_id: int, customer_id: str) -> str: ...


class AutopayStore(Protocol):
    """Auto Pay as the phone sees it (issue 10): one store with the portal and staff."""

    def live(self, account_id: int) -> EnrollmentView | None: ...

    def enroll(
        self, account_id: int, method_id: int, *, actor: str, wording: Wording, now: datetime,
        recording_sid: str | None = None,
    ) -> Enrolled:
        """Enroll with the stored method ``method_id``, or change to it; the notice with
        the terms is written, to be sent after the commit."""
        ...

    def cancel(self, account_id: int, *, actor: str, wording: Wording, now: datetime) -> Cancelled: ...

    def take_untold_suspension(self, account_id: int, now: datetime) -> EnrollmentView | None:
        """A suspension not yet said to the member; marked said."""
        ...

    def drafted(self, account_id: int, due_date: date) -> bool:
        """Whether the bill due on ``due_date`` has been drafted already."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class PinHasher(Protocol):
    def hash(self, secret: str) -> str: ...

    def verify(self, stored: str, secret: str) -> bool:
        """Constant-time check; False on mismatch or a malformed hash, never raises."""
        ...

    def needs_rehash(self, stored: str) -> bool: ...

    def dummy_verify(self) -> None:
        """Spend the time of one verification (unknown accounts cost the same)."""
        ...

    def digest(self, secret: str, context: str) -> str:
        """A fast keyed digest (HMAC with the pepper), for holding a value between two
        steps of one call, e.g. a new PIN awaiting confirmation."""
        ...


class UnitOfWork(Protocol):
    """One transaction: everything a webhook step reads and writes."""

    @property
    def accounts(self) -> Accounts: ...

    @property
    def credentials(self) -> Credentials: ...

    @property
    def calls(self) -> Calls: ...

    @property
    def events(self) -> Events: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def methods(self) -> StoredMethods: ...

    @property
    def autopay(self) -> AutopayStore: ...

    def commit(self) -> None: ...

    def commit_step(self, call: CallRecord) -> None:
        """Save ``call`` and commit (one statement with the trail where the database allows)."""
        ...

    def rollback(self) -> None: ...
