"""The payment gateway port: what the IVR and the portal ask of a card processor.

The call flow and the portal depend on ``PaymentGateway`` and these result and error
types only; ``payments.stripe_gateway.StripeGateway`` is the adapter that answers them
(with Stripe, or with localstripe in the demo and the tests).

Results are frozen dataclasses; failures a caller must treat differently are distinct
exceptions (stripe-python's ``_error.py`` and saleor's ``GatewayResponse`` are the models).
Nothing here ever holds card data or an API key: a method is known by its processor id,
brand, last four and expiry, as SECURITY rule 2 allows.

Idempotency: every call that creates something takes an ``idempotency_key``. For a
charge it is the id of our payment-attempt row, written before the call (SECURITY 15).
When the outcome of a charge is unknown (``OutcomeUnknown``), resolve it by retrying
with the **same** key or by ``find_charge(key)``; never by charging with a new key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol, runtime_checkable

MethodKind = Literal["card", "bank"]

# What Stripe charges in USD at all (https://docs.stripe.com/currencies, "Minimum and
# maximum charge amounts"): 50 cents to 8 digits of cents.
MIN_CHARGE_CENTS = 50
MAX_CHARGE_CENTS = 99_999_999
# Stripe's metadata limits (https://docs.stripe.com/metadata): 50 keys, key names of up
# to 40 characters, values of up to 500 characters.
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500
ChargeStatus = Literal["succeeded", "processing"]


@dataclass(frozen=True)
class MethodInfo:
    """A stored or stored-to-be payment method, as much of it as we may keep."""

    processor_id: str  # pm_...
    kind: MethodKind
    brand: str  # "visa", "mastercard", ...; for a bank account its name, or "bank"
    last4: str
    exp_month: int | None  # None for bank accounts
    exp_year: int | None
    mandate_id: str | None = None  # a bank account's debit authorization (mandate_...)


def card_expired(exp_year: int | None, exp_month: int | None, today: date) -> bool:
    """Whether a card's expiry (``None`` for a bank account) is past on ``today``: a card
    is good through the last day of its expiry month."""
    if exp_year is None or exp_month is None:
        return False
    return (exp_year, exp_month) < (today.year, today.month)


@dataclass(frozen=True)
class ChargeResult:
    """A charge the processor accepted.

    ``processing``: accepted but not final yet (bank debits); the money is not in hand
    until the processor says ``succeeded``.
    """

    status: ChargeStatus
    processor_id: str  # pi_... (the PaymentIntent)
    charge_id: str | None  # ch_..., where the processor has made one
    amount_cents: int
    # The method charged, when the processor's answer described it (for saving it).
    method: MethodInfo | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RefundResult:
    processor_id: str  # re_...
    status: str  # the processor's word: pending, succeeded, failed, canceled, ...
    amount_cents: int


@dataclass(frozen=True)
class MandateAcceptance:
    """How the member authorized debits from a bank account (Stripe's
    ``mandate_data.customer_acceptance``): online, from a browser (its address and user
    agent), or offline (a signed form, a recorded call) when neither is given."""

    accepted_at: datetime
    ip_address: str | None = None
    user_agent: str | None = None

    def __post_init__(self) -> None:
        if self.accepted_at.tzinfo is None:
            raise ValueError("accepted_at must be an aware datetime")
        if (self.ip_address is None) != (self.user_agent is None):
            raise ValueError("an online acceptance has both an IP address and a user agent")


def setup_idempotency_key(account_number: str, payment_method_id: str) -> str:
    """One SetupIntent per method saved on an account, however often it is retried."""
    return f"seti-{account_number}-{payment_method_id}"


def customer_idempotency_key(account_number: str) -> str:
    """One processor customer per account, however often (and from wherever: the portal,
    the IVR) its creation is retried."""
    return f"cus-{account_number}"


class PaymentError(Exception):
    """Base of every gateway failure. Messages never hold card data or keys."""


class CardDeclined(PaymentError):
    """The processor declined the method (a business outcome, not a fault).

    Say a generic decline to the caller; keep ``code`` (the processor's decline code,
    e.g. ``insufficient_funds`` or ``card_declined``) and ``processor_id`` for the ledger.
    """

    def __init__(self, code: str | None, *, processor_id: str | None = None) -> None:
        self.code = code
        self.processor_id = processor_id  # the PaymentIntent (or charge) id, when known
        super().__init__(f"payment method declined (code {code or 'unknown'})")


class ActionRequired(PaymentError):
    """The issuer wants the cardholder to authenticate (3-D Secure): not possible by
    phone. Nothing was charged; offer another method."""

    def __init__(self, *, processor_id: str | None = None) -> None:
        self.processor_id = processor_id
        super().__init__("the payment needs cardholder authentication")


class InvalidPaymentMethod(PaymentError):
    """The payment method is unknown to the processor, or unusable for this request
    (wrong type, detached, belongs elsewhere)."""


class ProcessorUnavailable(PaymentError):
    """The processor could not be reached, or refused to work for now (rate limit, server
    error), and nothing is known to have been done. Retrying with the same idempotency
    key is safe; a new key is not needed and must not be used for the same attempt."""


class OutcomeUnknown(PaymentError):
    """The request may have been processed: a read timeout after it was sent, a 5xx or an
    idempotency error on a write (Stripe saves a 500 once execution began and replays it;
    the first request under a key may have charged).

    Resolve with ``find_charge(key)`` or by retrying with the SAME idempotency key;
    never charge again under a new key.
    """


class PaymentUnsettled(OutcomeUnknown):
    """The processor holds the payment but has not settled it either way: a PaymentIntent
    waiting (``requires_payment_method`` without a payment error, ``requires_confirmation``)
    or in a state we do not take. Not a decline and not a payment: the attempt stays
    open for ``payments reconcile``."""

    def __init__(self, status: str, *, processor_id: str | None = None) -> None:
        self.status = status
        self.processor_id = processor_id
        super().__init__(f"payment {processor_id or '-'} is {status}, neither paid nor declined")


class LookupIncomplete(PaymentError):
    """A deep lookup could not look everywhere (the processor refused its search): the
    payment was not found, which is not the same as "there is none"."""


class ProcessorRejected(PaymentError):
    """The processor refused the request itself: a bad parameter, a bad key, a missing
    permission. A bug or a misconfiguration, not the member's doing."""


class PaymentGateway(Protocol):
    def create_customer(self, account_number: str, *, idempotency_key: str) -> str:
        """A processor customer for one utility account; returns its id (``cus_...``)."""
        ...

    def attach_method(self, customer_id: str, payment_method_id: str) -> MethodInfo:
        """Save a method on the customer (the member chose to keep it, or the portal
        posted it). May raise ``CardDeclined``: processors check a card when saving it."""
        ...

    def setup_method(
        self,
        customer_id: str,
        payment_method_id: str,
        *,
        idempotency_key: str,
        acceptance: MandateAcceptance | None = None,
    ) -> MethodInfo:
        """Save a method on the customer the way the processor wants it saved for later
        payments (a SetupIntent, https://docs.stripe.com/payments/setup-intents): checked,
        attached, and for a bank account with ``acceptance``, its mandate recorded
        (``MethodInfo.mandate_id``). Raises as ``attach_method``."""
        ...

    def detach_method(self, payment_method_id: str) -> None: ...

    def describe_method(self, payment_method_id: str) -> MethodInfo: ...

    def charge(
        self,
        *,
        amount_cents: int,
        currency: str,
        payment_method_id: str,
        customer_id: str | None,
        idempotency_key: str,
        metadata: Mapping[str, str],
        save_for_future: bool = False,
        cardholder_present: bool = True,
        mandate_id: str | None = None,
    ) -> ChargeResult:
        """Charge the method now. The member cannot authenticate (no 3-D Secure by
        phone): a payment that needs it fails with ``ActionRequired``.

        ``idempotency_key`` is the payment-attempt id; it is also stored on the payment
        as metadata ``attempt_id`` so ``find_charge`` can find it later.
        ``save_for_future``: the member chose to keep the method; the processor saves it
        on ``customer_id`` when the payment succeeds (no separate attach).
        ``cardholder_present``: False for Auto Pay (an off-session charge).
        ``mandate_id``: a bank account's debit authorization, where it has one.
        """
        ...

    def find_charge(
        self, idempotency_key: str, *, customer_id: str | None, since: datetime | None = None
    ) -> ChargeResult | None:
        """The outcome of the charge made under this key: its result, the exception
        ``charge`` would have raised (``CardDeclined``, ``ActionRequired``,
        ``PaymentUnsettled``), or ``None`` when the processor has no such payment.

        ``since`` (in a call: when the attempt was opened): one quick, strongly
        consistent look at the payments made since then. Without it (reconcile): a deep
        scan, then the processor's search; ``LookupIncomplete`` when the search is
        refused after the scan found nothing."""
        ...

    def get_charge(self, processor_id: str) -> ChargeResult:
        """The processor's current word on a payment (``pi_...``); raises as ``charge``."""
        ...

    def refund(self, processor_id: str, *, amount_cents: int | None, idempotency_key: str) -> RefundResult:
        """Refund a payment, in full when ``amount_cents`` is None."""
        ...


AdjustmentKind = Literal["refund", "dispute"]


@dataclass(frozen=True)
class Adjustment:
    """Money that left the utility at the processor after a payment: a refund (made in
    its dashboard, or by us) or a dispute (a chargeback). Posted as its own line."""

    kind: AdjustmentKind
    processor_id: str  # re_... or du_...
    payment_processor_id: str  # the payment's pi_...
    amount_cents: int  # positive: what was taken back
    created_at: datetime  # aware UTC
    status: str  # the processor's word


@runtime_checkable
class ProcessorAdjustments(Protocol):
    """The refunds and disputes the processor holds (a port apart from ``PaymentGateway``:
    only posting asks it)."""

    def adjustments(self, since: datetime, until: datetime) -> list[Adjustment]:
        """Refunds that took money back (succeeded or pending) and disputes not won,
        created in ``[since, until)``, oldest first."""
        ...
