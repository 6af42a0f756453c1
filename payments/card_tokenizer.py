"""Turn test card digits into a PaymentMethod: the part Twilio ``<Pay>`` plays in a call.

FOR THE TERMINAL SOFTPHONE AND TESTS ONLY. In a real call SecurePay never sees card
digits: Twilio ``<Pay>`` collects them and hands the card to Stripe itself, and our
action URL receives only the resulting ``pm_...`` id (SECURITY rule 1). When the demo's
terminal softphone stands in for Twilio, it needs to do that tokenizing step itself,
against localstripe or a Stripe *test* key; this function is that step.

No endpoint, view or flow of SecurePay calls this. The digits are sent once, to the
processor, and are not logged, kept, or put in any exception message. (Stripe itself
refuses raw card numbers on its API unless an account was specially enabled for them.)
"""

from __future__ import annotations

import stripe
from stripe.params import PaymentMethodCreateParams

from payments.gateway import MethodInfo, PaymentError
from payments.stripe_gateway import method_info, translated_errors


def tokenize_card(
    client: stripe.StripeClient,
    *,
    number: str,
    exp_month: int,
    exp_year: int,
    cvc: str,
    postal_code: str | None = None,
) -> MethodInfo:
    """Create a card PaymentMethod from raw test-card data; returns what we may keep of it.

    Raises ``CardDeclined`` when the processor refuses the card data as a card error,
    ``ProcessorRejected`` for a malformed request, and the gateway's transport errors.
    Each is raised without the library's exception chained to it, so no traceback can
    carry anything of the request.
    """
    params: PaymentMethodCreateParams = {
        "type": "card",
        "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc},
    }
    if postal_code:
        params["billing_details"] = {"address": {"postal_code": postal_code}}
    try:
        # "read": creating a PaymentMethod charges nothing, so an interrupted attempt
        # is simply made again.
        with translated_errors("read"):
            pm = client.v1.payment_methods.create(params)
    except PaymentError as exc:
        raise exc from None
    return method_info(pm)
