"""A wrapper of our own ``PaymentGateway`` port around the real Stripe adapter, that loses
answers or fails the way networks and processes do (never a fake of the processor: the
charges really happen at localstripe)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from payments.gateway import (
    ChargeResult,
    MandateAcceptance,
    MethodInfo,
    OutcomeUnknown,
    PaymentGateway,
    ProcessorUnavailable,
    RefundResult,
)

Fault = Literal[
    "none",
    "timeout_before_charge",  # the request never reached the processor, and we could not tell
    "timeout_after_charge",  # the processor charged; its answer was lost
    "unavailable",  # connection refused: surely not charged
    "crash_before_charge",  # the worker dies before the processor hears of it
    "crash_after_charge",  # the worker dies after the processor charged
]


class WorkerCrashed(Exception):
    """Stands for a worker process dying mid-request (the transaction is rolled back)."""


@dataclass
class FaultyGateway:
    real: PaymentGateway
    faults: list[Fault] = field(default_factory=list)  # one per charge() call, then none
    charges_sent: int = 0

    def _next(self) -> Fault:
        return self.faults.pop(0) if self.faults else "none"

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
        fault = self._next()
        if fault == "timeout_before_charge":
            raise OutcomeUnknown("read timed out")
        if fault == "unavailable":
            raise ProcessorUnavailable("connection refused")
        if fault == "crash_before_charge":
            raise WorkerCrashed
        self.charges_sent += 1
        result = self.real.charge(
            amount_cents=amount_cents, currency=currency, payment_method_id=payment_method_id,
            customer_id=customer_id, idempotency_key=idempotency_key, metadata=metadata,
            save_for_future=save_for_future, cardholder_present=cardholder_present, mandate_id=mandate_id,
        )
        if fault == "timeout_after_charge":
            raise OutcomeUnknown("read timed out")
        if fault == "crash_after_charge":
            raise WorkerCrashed
        return result

    def create_customer(self, account_number: str, *, idempotency_key: str) -> str:
        return self.real.create_customer(account_number, idempotency_key=idempotency_key)

    def attach_method(self, customer_id: str, payment_method_id: str) -> MethodInfo:
        return self.real.attach_method(customer_id, payment_method_id)

    def setup_method(
        self, customer_id: str, payment_method_id: str, *, idempotency_key: str,
        acceptance: MandateAcceptance | None = None,
    ) -> MethodInfo:
        return self.real.setup_method(
            customer_id, payment_method_id, idempotency_key=idempotency_key, acceptance=acceptance
        )

    def detach_method(self, payment_method_id: str) -> None:
        self.real.detach_method(payment_method_id)

    def describe_method(self, payment_method_id: str) -> MethodInfo:
        return self.real.describe_method(payment_method_id)

    def find_charge(
        self, idempotency_key: str, *, customer_id: str | None, since: datetime | None = None
    ) -> ChargeResult | None:
        return self.real.find_charge(idempotency_key, customer_id=customer_id, since=since)

    def get_charge(self, processor_id: str) -> ChargeResult:
        return self.real.get_charge(processor_id)

    def refund(self, processor_id: str, *, amount_cents: int | None, idempotency_key: str) -> RefundResult:
        return self.real.refund(processor_id, amount_cents=amount_cents, idempotency_key=idempotency_key)
