"""``PaymentGateway`` over Stripe's API, with the official library's ``StripeClient``.

The same code talks to Stripe and to localstripe (the emulator used by the demo and the
tests); where the emulator differs, the difference is tolerated here and named.

Transport failures are sorted by whether the request can have reached the processor.
The library wraps every network failure into one ``APIConnectionError`` (retrying some),
so ``build_stripe_client`` installs an HTTP client that notes, per request, whether any
attempt got past opening the connection or got any HTTP answer. A charge or refund is
``ProcessorUnavailable`` only when no attempt did; otherwise ``OutcomeUnknown``, the safe
answer. A 5xx or an ``idempotency_error`` to a write is ``OutcomeUnknown`` too: Stripe
saves the first answer under a key once execution began and replays it, 500s included
(https://docs.stripe.com/api/idempotent_requests).

The same HTTP client keeps every try, retry pause and timeout inside the deadline of the
webhook step it serves (``payments.deadline``), and sends nothing once it has passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

import stripe
import urllib3.exceptions
from stripe.params import (
    CustomerCreateParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    RefundCreateParams,
    SetupIntentCreateParams,
    SetupIntentCreateParamsMandateDataCustomerAcceptance,
)

from payments.deadline import remaining_seconds
from payments.gateway import (
    MAX_CHARGE_CENTS,
    METADATA_MAX_KEY_LENGTH,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_LENGTH,
    MIN_CHARGE_CENTS,
    ActionRequired,
    Adjustment,
    CardDeclined,
    ChargeResult,
    InvalidPaymentMethod,
    LookupIncomplete,
    MandateAcceptance,
    MethodInfo,
    OutcomeUnknown,
    PaymentError,
    PaymentUnsettled,
    ProcessorRejected,
    ProcessorUnavailable,
    RefundResult,
)

Effect = Literal["read", "write"]

ATTEMPT_METADATA_KEY = "attempt_id"
CHARGEABLE_TYPES = ("card", "us_bank_account")
# Stripe's limit on an idempotency key; our keys are attempt ids, far shorter.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,255}")
_CURRENCY_PATTERN = re.compile(r"[a-z]{3}")
# How many recent PaymentIntents find_charge scans before falling back to search.
_SCAN_LIMIT = 500
# The in-call lookup lists from the attempt's opening less this, for clock skew.
_LOOKUP_MARGIN_SECONDS = 300
_MAYBE_SENT = "securepay_maybe_sent"
# Under a deadline: no try starts with less than this left, no retry with less than that.
_TRY_FLOOR_SECONDS = 0.2
_RETRY_FLOOR_SECONDS = 1.0


# -- the client ------------------------------------------------------------------------


class _OutcomeTrackingHTTPClient(stripe.RequestsClient):
    """``RequestsClient`` that tags a final ``APIConnectionError`` with whether any attempt
    of the request (the library retries) may have reached the server."""

    def request_with_retries(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        post_data: Any = None,
        max_network_retries: int | None = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        self._thread_local.securepay_maybe_sent = False
        try:
            return super().request_with_retries(
                method, url, headers, post_data, max_network_retries, _usage=_usage
            )
        except stripe.APIConnectionError as exc:
            setattr(exc, _MAYBE_SENT, bool(self._thread_local.securepay_maybe_sent))
            raise

    # -- the step's deadline (payments.deadline) -----------------------------------------

    @property
    def _timeout(self) -> Any:
        """What ``requests`` is given for each try: the configured (connect, read)
        timeouts, cut to what is left of the deadline."""
        configured = self._configured_timeout
        left = remaining_seconds()
        if left is None:
            return configured
        connect, read = configured if isinstance(configured, tuple) else (configured, configured)
        return (min(connect, left), min(read, left))

    @_timeout.setter
    def _timeout(self, value: Any) -> None:
        self._configured_timeout = value

    def _should_retry(
        self,
        response: tuple[Any, int, Mapping[str, str] | None] | None,
        api_connection_error: stripe.APIConnectionError | None,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        left = remaining_seconds()
        if left is not None and left < _RETRY_FLOOR_SECONDS:
            return False  # a retry could not finish in time; its pause alone is 0.5 s
        return bool(super()._should_retry(response, api_connection_error, num_retries, max_network_retries))

    def _sleep_time_seconds(self, num_retries: int) -> float:
        pause = float(super()._sleep_time_seconds(num_retries))
        left = remaining_seconds()
        return pause if left is None else min(pause, max(0.0, left - _RETRY_FLOOR_SECONDS / 2))

    # The signature of stripe's own RequestsClient.request, which is not its base's.
    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        left = remaining_seconds()
        if left is not None and left < _TRY_FLOOR_SECONDS:
            # Not sent at all: the caller learns "not reached", which it surely was not.
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                "the step's processor deadline has passed", should_retry=False
            )
        try:
            answer = super().request(method, url, headers, post_data)
        except stripe.APIConnectionError as exc:
            if not _connection_never_opened(exc):
                self._thread_local.securepay_maybe_sent = True
            raise
        # Any HTTP answer means this try reached the server, even if a retry then
        # cannot connect: a 500 it answered may have been executed.
        self._thread_local.securepay_maybe_sent = True
        return answer


def _connection_never_opened(exc: BaseException) -> bool:
    """True when the failure happened while connecting (refused, unreachable, DNS, connect
    timeout): the request was not sent. Read timeouts, resets and anything unrecognised
    are False."""
    seen: set[int] = set()
    pending: list[object] = [exc.__cause__]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, urllib3.exceptions.ConnectTimeoutError):  # incl. NewConnectionError
            return True
        if isinstance(item, urllib3.exceptions.MaxRetryError):
            pending.append(item.reason)
        pending.extend(item.args)
        pending.append(item.__cause__)
    return False


def build_stripe_client(
    api_key: str,
    api_base: str | None,
    *,
    max_network_retries: int = 2,
    timeout: float = 10,
) -> stripe.StripeClient:
    """The one ``StripeClient`` of the process, built in ``create_app`` and injected.

    ``api_base`` overrides Stripe's API address (``STRIPE_API_BASE``: localstripe, a test
    proxy); ``None`` means Stripe's. ``timeout`` applies to connecting and to each read.
    The library retries connection failures and 409/5xx answers ``max_network_retries``
    times, always with the same idempotency key.
    """
    if not api_key:
        raise ValueError("a Stripe API key is required")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    http_client = _OutcomeTrackingHTTPClient(timeout=(timeout, timeout))
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base.rstrip("/")} if api_base else None,
        max_network_retries=max_network_retries,
        http_client=http_client,
    )


# -- error translation -----------------------------------------------------------------


def _error_detail(exc: stripe.StripeError) -> str:
    """What of a Stripe error may go in our message: no message text (it is the
    processor's prose, and may quote input), no key."""
    parts = [f"HTTP {exc.http_status}" if exc.http_status else "no HTTP status"]
    error = exc.error
    if error is not None:
        for name in ("type", "code", "param"):
            value = getattr(error, name, None)
            if value:
                parts.append(f"{name}={value}")
    if exc.request_id:
        parts.append(f"request {exc.request_id}")
    return ", ".join(parts)


def _error_body(exc: stripe.StripeError) -> Mapping[str, Any]:
    body = exc.json_body
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return error
    return {}


def _declined(exc: stripe.CardError) -> PaymentError:
    error = _error_body(exc)
    intent = error.get("payment_intent")
    intent = intent if isinstance(intent, Mapping) else {}
    processor_id = intent.get("id") or error.get("charge")
    if exc.code == "authentication_required" or intent.get("status") == "requires_action":
        return ActionRequired(processor_id=processor_id)
    return CardDeclined(error.get("decline_code") or exc.code, processor_id=processor_id)


def _is_payment_method_problem(exc: stripe.InvalidRequestError, method_not_found: bool) -> bool:
    param = exc.param or ""
    code = exc.code or ""
    if param.startswith("payment_method") or code.startswith("payment_method"):
        return True
    # Stripe names the missing object in ``param``; localstripe's 404 names nothing.
    return method_not_found and exc.http_status == 404 and not param


@contextmanager
def translated_errors(effect: Effect, *, method_not_found: bool = False) -> Iterator[None]:
    """Turn Stripe's exceptions into the port's.

    ``effect="write"``: the request changes something, so an interrupted one may have
    been done. ``method_not_found``: a 404 naming no parameter is about the payment
    method (the request's main object).
    """
    try:
        yield
    except stripe.CardError as exc:
        raise _declined(exc) from exc
    except stripe.APIConnectionError as exc:
        # Untagged (a client not built by build_stripe_client): earlier retries are
        # unknown, so the request may have been sent.
        maybe_sent = getattr(exc, _MAYBE_SENT, True)
        if effect == "write" and maybe_sent:
            raise OutcomeUnknown(
                "no answer from the payment processor after the request may have reached it"
            ) from exc
        raise ProcessorUnavailable("the payment processor could not be reached") from exc
    except stripe.RateLimitError as exc:
        raise ProcessorUnavailable(f"the payment processor is rate limiting ({_error_detail(exc)})") from exc
    except stripe.IdempotencyError as exc:
        if effect == "write":
            # The key was used before with other parameters: that first request may
            # have been executed (https://docs.stripe.com/error-low-level#idempotency).
            raise OutcomeUnknown(f"the key was used by another request ({_error_detail(exc)})") from exc
        raise ProcessorRejected(f"the payment processor refused the request ({_error_detail(exc)})") from exc
    except stripe.InvalidRequestError as exc:
        if _is_payment_method_problem(exc, method_not_found):
            raise InvalidPaymentMethod(f"the payment method cannot be used ({_error_detail(exc)})") from exc
        raise ProcessorRejected(f"the payment processor refused the request ({_error_detail(exc)})") from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise ProcessorRejected(f"the payment processor refused the request ({_error_detail(exc)})") from exc
    except stripe.APIError as exc:
        status = exc.http_status or 0
        if status == 409 and effect == "write":
            # Another request with this idempotency key is in flight.
            raise OutcomeUnknown(f"a request with this key is in progress ({_error_detail(exc)})") from exc
        if status >= 500 and effect == "write":
            # Stripe saves a 500 once execution began and replays it to every retry
            # (https://docs.stripe.com/api/idempotent_requests): nothing is known.
            raise OutcomeUnknown(f"the payment processor failed ({_error_detail(exc)})") from exc
        if status >= 500:
            raise ProcessorUnavailable(f"the payment processor failed ({_error_detail(exc)})") from exc
        if effect == "write":
            raise OutcomeUnknown(f"unreadable answer from the processor ({_error_detail(exc)})") from exc
        raise ProcessorUnavailable(f"unreadable answer from the processor ({_error_detail(exc)})") from exc
    except stripe.StripeError as exc:
        if effect == "write":
            raise OutcomeUnknown(f"unexpected processor error ({_error_detail(exc)})") from exc
        raise ProcessorRejected(f"unexpected processor error ({_error_detail(exc)})") from exc


# -- converting objects ----------------------------------------------------------------


def method_info(pm: stripe.PaymentMethod) -> MethodInfo:
    """Brand, last four and expiry of a PaymentMethod: what we may keep of it."""
    # A Stripe object raises on reading a field its answer lacks: test with ``in``.
    card = pm.card if "card" in pm else None
    if pm.type == "card" and card is not None:
        return MethodInfo(
            processor_id=pm.id,
            kind="card",
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )
    bank = pm.us_bank_account if "us_bank_account" in pm else None
    if pm.type == "us_bank_account" and bank is not None:
        return MethodInfo(
            processor_id=pm.id,
            kind="bank",
            brand=(bank.bank_name if "bank_name" in bank else None) or "bank",
            last4=(bank.last4 if "last4" in bank else None) or "",
            exp_month=None,
            exp_year=None,
        )
    raise InvalidPaymentMethod(f"unsupported payment method type {pm.type!r}")


def _charge_id(intent: stripe.PaymentIntent) -> str | None:
    # Stripe answers an id unless expanded; localstripe always answers the object.
    latest = getattr(intent, "latest_charge", None)
    if latest is None or isinstance(latest, str):
        return latest
    return cast(str, latest.id)


def _outcome(intent: stripe.PaymentIntent) -> ChargeResult:
    """The PaymentIntent's status is the truth (SECURITY 15b)."""
    status = intent.status
    if status in ("succeeded", "processing"):
        return ChargeResult(
            status=cast(Literal["succeeded", "processing"], status),
            processor_id=intent.id,
            charge_id=_charge_id(intent),
            amount_cents=intent.amount,
            method=_expanded_method(intent),
        )
    if status == "requires_action":
        raise ActionRequired(processor_id=intent.id)
    # Attribute access on a Stripe object raises for a field the answer lacks
    # (localstripe omits ``decline_code``): getattr with a default.
    error = getattr(intent, "last_payment_error", None)
    if status == "canceled" or (status == "requires_payment_method" and error is not None):
        code = (getattr(error, "decline_code", None) or getattr(error, "code", None)) if error else status
        if code == "authentication_required":
            raise ActionRequired(processor_id=intent.id)
        raise CardDeclined(code, processor_id=intent.id)
    # requires_payment_method without an error, requires_confirmation, requires_capture:
    # nothing was declined and nothing was paid (https://docs.stripe.com/payments/paymentintents/lifecycle).
    raise PaymentUnsettled(str(status), processor_id=intent.id)


def _expanded_method(intent: stripe.PaymentIntent) -> MethodInfo | None:
    pm = getattr(intent, "payment_method", None)
    if not isinstance(pm, stripe.PaymentMethod):
        return None  # an id only: not expanded
    try:
        return method_info(pm)
    except InvalidPaymentMethod:
        return None


def _attempt_of(intent: stripe.PaymentIntent) -> str | None:
    metadata = intent.metadata
    if metadata is None or ATTEMPT_METADATA_KEY not in metadata:
        return None
    return str(metadata[ATTEMPT_METADATA_KEY])


def _acceptance(acceptance: MandateAcceptance) -> SetupIntentCreateParamsMandateDataCustomerAcceptance:
    accepted: SetupIntentCreateParamsMandateDataCustomerAcceptance = {
        "type": "offline",
        "accepted_at": int(acceptance.accepted_at.timestamp()),
    }
    if acceptance.ip_address is not None and acceptance.user_agent is not None:
        accepted["type"] = "online"
        accepted["online"] = {"ip_address": acceptance.ip_address, "user_agent": acceptance.user_agent}
    return accepted


def _checked_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Stripe refuses more than 50 keys, a key over 40 characters (or holding square
    brackets), a value over 500 (https://docs.stripe.com/metadata): refused here first,
    with a message that names the key, never its value."""
    if len(metadata) > METADATA_MAX_KEYS:
        raise ValueError(f"metadata holds at most {METADATA_MAX_KEYS} keys, not {len(metadata)}")
    for name, value in metadata.items():
        if not 0 < len(name) <= METADATA_MAX_KEY_LENGTH or "[" in name or "]" in name:
            raise ValueError(f"a metadata key is 1-{METADATA_MAX_KEY_LENGTH} characters without brackets")
        if len(value) > METADATA_MAX_VALUE_LENGTH:
            raise ValueError(f"metadata {name!r} is longer than {METADATA_MAX_VALUE_LENGTH} characters")
    return dict(metadata)


def _checked_key(key: str) -> str:
    if not _KEY_PATTERN.fullmatch(key):
        raise ValueError("an idempotency key is 1-255 letters, digits and _ . : -")
    return key


# -- the adapter -----------------------------------------------------------------------


class StripeGateway:
    """Implements ``payments.gateway.PaymentGateway`` with a ``stripe.StripeClient``."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return "<StripeGateway>"

    def create_customer(self, account_number: str, *, idempotency_key: str) -> str:
        params: CustomerCreateParams = {"metadata": _checked_metadata({"account_number": account_number})}
        with translated_errors("write"):
            customer = self._client.v1.customers.create(
                params, options={"idempotency_key": _checked_key(idempotency_key)}
            )
        return customer.id

    def attach_method(self, customer_id: str, payment_method_id: str) -> MethodInfo:
        with translated_errors("write", method_not_found=True):
            pm = self._client.v1.payment_methods.attach(payment_method_id, {"customer": customer_id})
        return method_info(pm)

    def setup_method(
        self,
        customer_id: str,
        payment_method_id: str,
        *,
        idempotency_key: str,
        acceptance: MandateAcceptance | None = None,
    ) -> MethodInfo:
        params: SetupIntentCreateParams = {
            "customer": customer_id,
            "payment_method": payment_method_id,
            "confirm": True,
            "usage": "off_session",
            "allowed_payment_method_types": list(CHARGEABLE_TYPES),
            "expand": ["payment_method"],
        }
        if acceptance is not None:
            params["mandate_data"] = {"customer_acceptance": _acceptance(acceptance)}
        with translated_errors("write", method_not_found=True):
            setup = self._client.v1.setup_intents.create(
                params, options={"idempotency_key": _checked_key(idempotency_key)}
            )
        status = setup.status
        if status == "requires_action":
            raise ActionRequired(processor_id=setup.id)
        if status != "succeeded":
            error = getattr(setup, "last_setup_error", None)
            code = getattr(error, "decline_code", None) or getattr(error, "code", None) if error else None
            raise CardDeclined(code or str(status), processor_id=setup.id)
        pm = setup.payment_method
        info = method_info(pm if isinstance(pm, stripe.PaymentMethod) else self._retrieve_method(str(pm)))
        mandate = getattr(setup, "mandate", None)
        mandate_id = mandate if isinstance(mandate, str) or mandate is None else mandate.id
        return replace(info, mandate_id=mandate_id) if info.kind == "bank" else info

    def detach_method(self, payment_method_id: str) -> None:
        with translated_errors("write", method_not_found=True):
            self._client.v1.payment_methods.detach(payment_method_id)

    def describe_method(self, payment_method_id: str) -> MethodInfo:
        return method_info(self._retrieve_method(payment_method_id))

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
        if save_for_future and customer_id is None:
            raise ValueError("a method saved for future payments is saved on a customer")
        if type(amount_cents) is not int or amount_cents <= 0:
            raise ValueError("amount_cents must be a positive whole number of cents")
        if not MIN_CHARGE_CENTS <= amount_cents <= MAX_CHARGE_CENTS:
            raise ValueError(f"Stripe charges {MIN_CHARGE_CENTS} to {MAX_CHARGE_CENTS} cents")
        if not _CURRENCY_PATTERN.fullmatch(currency):
            raise ValueError("currency must be a lowercase ISO 4217 code, e.g. 'usd'")
        key = _checked_key(idempotency_key)
        if metadata.get(ATTEMPT_METADATA_KEY, key) != key:
            raise ValueError(f"metadata {ATTEMPT_METADATA_KEY!r} must be the idempotency key")
        params: PaymentIntentCreateParams = {
            "amount": amount_cents,
            "currency": currency,
            "payment_method": payment_method_id,
            # One shape for cards and bank accounts: Stripe keeps the listed types the
            # method is compatible with. (This API version no longer takes
            # ``payment_method_types``; dynamic payment methods would want a return_url.)
            "allowed_payment_method_types": list(CHARGEABLE_TYPES),
            "confirm": True,
            "metadata": _checked_metadata({**metadata, ATTEMPT_METADATA_KEY: key}),
            # The card's details come back with the answer: saving it costs no call.
            "expand": ["payment_method"],
        }
        if cardholder_present:
            # On the line but unable to authenticate (no 3-D Secure by phone): fail the
            # attempt rather than leave it waiting for an action nobody can take.
            params["error_on_requires_action"] = True
        else:
            params["off_session"] = True  # Auto Pay: the member is not there
        if customer_id is not None:
            params["customer"] = customer_id
        if save_for_future:
            # Saved during the payment (https://docs.stripe.com/payments/save-during-payment):
            # Stripe attaches the method to the customer when the payment succeeds.
            params["setup_future_usage"] = "off_session"
        if mandate_id is not None:
            params["mandate"] = mandate_id  # a bank debit's authorization
        with translated_errors("write", method_not_found=True):
            intent = self._client.v1.payment_intents.create(params, options={"idempotency_key": key})
        return _outcome(intent)

    def find_charge(
        self, idempotency_key: str, *, customer_id: str | None, since: datetime | None = None
    ) -> ChargeResult | None:
        key = _checked_key(idempotency_key)
        if since is not None:
            intent = self._recent_for_attempt(key, customer_id, since)
        else:
            intent = self._list_for_attempt(key, customer_id)
            if intent is None:
                intent = self._search_for_attempt(key)
        return None if intent is None else _outcome(intent)

    def get_charge(self, processor_id: str) -> ChargeResult:
        with translated_errors("read"):
            intent = self._client.v1.payment_intents.retrieve(processor_id)
        return _outcome(intent)

    def refund(self, processor_id: str, *, amount_cents: int | None, idempotency_key: str) -> RefundResult:
        if amount_cents is not None and (type(amount_cents) is not int or amount_cents <= 0):
            raise ValueError("amount_cents must be a positive whole number of cents, or None")
        params: RefundCreateParams = {"payment_intent": processor_id}
        if amount_cents is not None:
            params["amount"] = amount_cents
        with translated_errors("write"):
            refund = self._client.v1.refunds.create(
                params, options={"idempotency_key": _checked_key(idempotency_key)}
            )
        return RefundResult(processor_id=refund.id, status=str(refund.status), amount_cents=refund.amount)

    def adjustments(self, since: datetime, until: datetime) -> list[Adjustment]:
        """Implements ``ProcessorAdjustments``: https://docs.stripe.com/api/refunds/list and
        https://docs.stripe.com/api/disputes/list. Both lists come newest first: each is
        read until an object older than ``since``."""
        found: list[Adjustment] = []
        with translated_errors("read"):
            for refund in self._newest_since(self._client.v1.refunds.list, since):
                if refund.status in _REFUND_TAKEN and refund.payment_intent:
                    found.append(Adjustment(
                        "refund", refund.id, _object_id(refund.payment_intent), int(refund.amount),
                        datetime.fromtimestamp(refund.created, UTC), str(refund.status),
                    ))
            for dispute in self._newest_since(self._client.v1.disputes.list, since):
                if dispute.status not in _DISPUTE_NOT_TAKEN and dispute.payment_intent:
                    found.append(Adjustment(
                        "dispute", dispute.id, _object_id(dispute.payment_intent), int(dispute.amount),
                        datetime.fromtimestamp(dispute.created, UTC), str(dispute.status),
                    ))
        return sorted(
            (a for a in found if since <= a.created_at < until), key=lambda a: (a.created_at, a.processor_id)
        )

    @staticmethod
    def _newest_since(list_call: Any, since: datetime) -> Iterator[Any]:
        try:
            page = list_call({"limit": 100})
        except stripe.StripeError as exc:
            if exc.http_status == 404:  # localstripe has no disputes (Stripe always has the list)
                return
            raise
        floor = since.timestamp()
        for item in page.auto_paging_iter():
            if item.created < floor:
                return
            yield item

    # -- helpers -----------------------------------------------------------------------

    def _retrieve_method(self, payment_method_id: str) -> stripe.PaymentMethod:
        with translated_errors("read", method_not_found=True):
            return self._client.v1.payment_methods.retrieve(payment_method_id)

    def _recent_for_attempt(
        self, key: str, customer_id: str | None, since: datetime
    ) -> stripe.PaymentIntent | None:
        """One page of the PaymentIntents created since the attempt opened (less a margin
        for clock skew), newest first, of the customer charged: listing is strongly
        consistent, where search lags writes by up to a minute (an hour in outages), so
        only a list can see a charge made seconds ago (https://docs.stripe.com/search)."""
        params: PaymentIntentListParams = {
            "limit": 100,
            "created": {"gte": int(since.timestamp()) - _LOOKUP_MARGIN_SECONDS},
        }
        if customer_id is not None:
            params["customer"] = customer_id
        with translated_errors("read"):
            page = self._client.v1.payment_intents.list(params)
        for intent in page.data:
            if _attempt_of(intent) == key and (customer_id is None or intent.customer == customer_id):
                return intent
        return None

    def _list_for_attempt(self, key: str, customer_id: str | None) -> stripe.PaymentIntent | None:
        """Scan recent PaymentIntents, page after page up to ``_SCAN_LIMIT`` (for
        ``payments reconcile``, where time is not counted)."""
        params: PaymentIntentListParams = {"limit": 100}
        if customer_id is not None:
            params["customer"] = customer_id
        with translated_errors("read"):
            page = self._client.v1.payment_intents.list(params)
            for seen, intent in enumerate(page.auto_paging_iter()):
                if seen >= _SCAN_LIMIT:
                    return None
                if _attempt_of(intent) == key and (customer_id is None or intent.customer == customer_id):
                    return intent
        return None

    def _search_for_attempt(self, key: str) -> stripe.PaymentIntent | None:
        """Stripe's search finds older payments; it lags writes by up to a minute."""
        query = f"metadata['{ATTEMPT_METADATA_KEY}']:'{key}'"  # key checked: no quotes
        try:
            with translated_errors("read"):
                try:
                    found = self._client.v1.payment_intents.search({"query": query, "limit": 1})
                except stripe.InvalidRequestError as exc:
                    if exc.http_status == 404:  # localstripe has no search endpoint
                        return None
                    raise
        except ProcessorRejected as exc:
            # Search is not offered everywhere (https://docs.stripe.com/search): the scan
            # found nothing, and that is all that can be said.
            raise LookupIncomplete(f"the processor refused the search ({exc})") from exc
        return found.data[0] if found.data else None


# A refund that took the money back, or is about to; a dispute that has not been won
# (the money is withdrawn when it opens). https://docs.stripe.com/api/refunds/object and
# https://docs.stripe.com/api/disputes/object (status).
_REFUND_TAKEN = frozenset({"succeeded", "pending", "requires_action"})
_DISPUTE_NOT_TAKEN = frozenset({"won", "warning_closed", "warning_under_review", "warning_needs_response"})


def _object_id(value: Any) -> str:
    """An expandable field: the id, or the expanded object's id."""
    return value if isinstance(value, str) else str(value.id)
