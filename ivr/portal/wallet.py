"""Saving and removing an account's payment methods: at the processor, then on file.

The order keeps "nothing half-written" true: a row exists only for a method attached to
the account's processor customer. Saving attaches first and writes the row after; if
the write fails, the method is detached again (best effort, logged when that fails too).
Removing detaches first and deletes the row after; if the processor cannot be reached,
the row stays and the request can be repeated.

No database transaction is held open while the processor is called: on SQLite a
transaction holds the write lock, and the IVR must not wait on a slow processor.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from db.autopay import SqlAutopay
from db.stored_methods import (
    MethodAlreadyStored,
    MethodCreatedVia,
    SqlStoredMethods,
    StoredMethod,
    TooManyMethods,
)
from ivr.flows.ports import MAX_STORED_METHODS, AccountSummary
from ivr.services import Services
from payments.autopay_notices import wording_from, write_notice
from payments.gateway import (
    InvalidPaymentMethod,
    MandateAcceptance,
    PaymentError,
    PaymentGateway,
    customer_idempotency_key,
    setup_idempotency_key,
)

__all__ = [
    "MethodNotFound",
    "MethodOnAnotherAccount",
    "Saved",
    "remove_method",
    "save_method",
]

log = structlog.get_logger()

@dataclass(frozen=True)
class Saved:
    method: StoredMethod
    created: bool  # False: it was already on file for this account


class MethodOnAnotherAccount(Exception):
    """The processor method is on file for a different account."""


class MethodNotFound(LookupError):
    """No such method on this account."""


def save_method(
    services: Services,
    gateway: PaymentGateway,
    account: AccountSummary,
    payment_method_id: str,
    *,
    created_via: MethodCreatedVia,
    acceptance: MandateAcceptance | None = None,
) -> Saved:
    """Save ``payment_method_id`` on the account's customer and put it on file.

    ``acceptance``: how the member authorized debits, for a bank account; without it a
    bank account is kept without a mandate, and the IVR does not offer it.

    Idempotent: a method already on file for the account is returned as it is, without
    calling the processor. Raises ``MethodOnAnotherAccount``, ``TooManyMethods``, and
    the gateway's errors (``InvalidPaymentMethod``, ``CardDeclined``,
    ``ProcessorUnavailable``, ``OutcomeUnknown``, ``ProcessorRejected``), each with
    nothing written but the account's processor customer, which is real and is kept.
    """
    with services.unit_of_work() as uow:
        methods = SqlStoredMethods(uow.session)
        existing = methods.by_processor_id(payment_method_id)
        if existing is not None:
            if existing.account_id != account.id:
                raise MethodOnAnotherAccount(payment_method_id)
            return Saved(existing, created=False)
        if methods.count(account.id) >= MAX_STORED_METHODS:
            raise TooManyMethods(MAX_STORED_METHODS)
        customer_id = methods.customer_id(account.id)
    if customer_id is None:
        customer_id = _create_customer(services, gateway, account)

    # A SetupIntent rather than a bare attach: Stripe checks the method for later use
    # and records a bank account's mandate (https://docs.stripe.com/payments/setup-intents).
    info = gateway.setup_method(
        customer_id,
        payment_method_id,
        idempotency_key=setup_idempotency_key(account.number, payment_method_id),
        acceptance=acceptance,
    )
    try:
        with services.unit_of_work() as uow:
            stored = SqlStoredMethods(uow.session).add(
                account.id, info, created_via=created_via, now=services.clock.now(), limit=MAX_STORED_METHODS
            )
            uow.commit()
    except MethodAlreadyStored as exc:
        if exc.existing.account_id == account.id:  # a simultaneous request stored it first
            return Saved(exc.existing, created=False)
        _detach_quietly(gateway, info.processor_id, account)
        raise MethodOnAnotherAccount(payment_method_id) from None
    except BaseException:
        _detach_quietly(gateway, info.processor_id, account)
        raise
    log.info(
        "payment_method_saved",
        account_id=account.id,
        method_id=stored.id,
        kind=stored.kind,
        created_via=created_via,
    )
    return Saved(stored, created=True)


def remove_method(
    services: Services, gateway: PaymentGateway, account: AccountSummary, method_id: int
) -> None:
    """Detach the method at the processor, then take it off file.

    Raises ``MethodNotFound`` (none such on this account) and the gateway's transport
    errors, with the row kept. A method the processor no longer knows or holds is
    taken off file: that is what was asked. An Auto Pay agreement that uses it is
    suspended (the member is written to, and told on the next call).
    """
    with services.unit_of_work() as uow:
        method = SqlStoredMethods(uow.session).get(account.id, method_id)
    if method is None:
        raise MethodNotFound(method_id)
    try:
        gateway.detach_method(method.processor_id)
    except InvalidPaymentMethod:
        log.info("payment_method_already_detached", account_id=account.id, method_id=method_id)
    notices: tuple[int, ...] = ()
    with services.unit_of_work() as uow:
        now = services.clock.now()
        # An Auto Pay agreement with this method is suspended, not left to fail.
        suspended = SqlAutopay(uow.session).suspend_for_method(
            account.id, method_id, channel="portal", actor="portal", now=now
        )
        if suspended is not None:
            wording = wording_from(services.settings)
            notices = write_notice(uow.session, "suspended", suspended, wording=wording, now=now)
            uow.events.record("autopay_suspended", account_id=account.id, actor="portal",
                              reason="method_removed", enrollment_id=suspended.id)
        SqlStoredMethods(uow.session).remove(account.id, method_id)
        uow.commit()
    log.info("payment_method_removed", account_id=account.id, method_id=method_id)
    if notices and services.autopay_notices is not None:
        services.autopay_notices.dispatch(list(notices))


def _create_customer(services: Services, gateway: PaymentGateway, account: AccountSummary) -> str:
    created = gateway.create_customer(
        account.number, idempotency_key=customer_idempotency_key(account.number)
    )
    with services.unit_of_work() as uow:
        recorded = SqlStoredMethods(uow.session).set_customer_id(account.id, created)
        uow.commit()
    log.info("processor_customer_created", account_id=account.id)
    return recorded


def _detach_quietly(gateway: PaymentGateway, processor_id: str, account: AccountSummary) -> None:
    """Undo an attach whose row could not be written. A failure is logged, not raised:
    the error the caller must see is the one that made the undo necessary."""
    try:
        gateway.detach_method(processor_id)
    except PaymentError as exc:
        log.error(
            "payment_method_detach_failed",
            account_id=account.id,
            processor_id=processor_id,  # for a manual clean-up at the processor
            error_type=type(exc).__name__,
        )
