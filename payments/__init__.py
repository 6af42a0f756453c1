"""Payments: the gateway port (``payments.gateway``) and its adapters.

``payments.gateway`` is what the call flow and the portal depend on; ``stripe_gateway``
answers it with Stripe (or localstripe), ``emulator`` runs localstripe in-process, and
``card_tokenizer`` plays Twilio ``<Pay>``'s tokenizing part for the terminal softphone.
Nothing here imports Flask or SQLAlchemy.
"""

from payments.gateway import (
    ActionRequired,
    CardDeclined,
    ChargeResult,
    InvalidPaymentMethod,
    MethodInfo,
    OutcomeUnknown,
    PaymentError,
    PaymentGateway,
    PaymentUnsettled,
    ProcessorRejected,
    ProcessorUnavailable,
    RefundResult,
)

__all__ = [
    "ActionRequired",
    "CardDeclined",
    "ChargeResult",
    "InvalidPaymentMethod",
    "MethodInfo",
    "OutcomeUnknown",
    "PaymentError",
    "PaymentGateway",
    "PaymentUnsettled",
    "ProcessorRejected",
    "ProcessorUnavailable",
    "RefundResult",
]
