"""The fast lane (contract 2.4): one press pays a returning member's bill.

When the account menu is entered, ``prepare_offer`` decides whether the full balance
can be paid at once with a stored method, and keeps the offer in the call's context:
what the caller hears ("To pay $123.45 on the account ending in 4 8 2 1 with the Visa
ending in 4 2 4 2, press 1") and what `1` then charges are one record, so a method
added in the portal a second later cannot be charged unsaid.

The offer is made only where the charge can go through as said: payments on, nothing
capping them, a balance due within the limits, the account's processor customer on
file, and a method that can be charged off-session (a card not expired; a bank account
only with a recorded authorization, which the store does not hold yet, so never).

`1` is then the confirmation: the attempt number is fixed once per menu step, so a
replay, a double press or a retry while the first request waits finds the same attempt
(``charge.charge_confirmed``'s exactly-once rules do the rest).

Auto Pay's offer to pay the bill already issued (``ivr.flows.autopay``) is the same
offer with the enrolled method: ``offer_with`` decides it, ``keep_offer`` keeps it,
``offer_words`` says it and ``charge_offer`` charges it, for both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

from ivr.flows import charge, payment
from ivr.flows.context import Ctx
from ivr.flows.machine import Action, Go, Phrase
from ivr.flows.ports import MAX_STORED_METHODS, MethodOnFile
from ivr.flows.speech import say_amount, say_digits, say_method
from ivr.flows.wallet import wallet

MENU = "account_menu"


@dataclass(frozen=True)
class Offer:
    amount_cents: int
    processor_id: str
    kind: str
    brand: str
    last4: str


def chargeable(method: MethodOnFile, today: date) -> bool:
    """Whether a stored method can be charged with no one entering anything."""
    if not (len(method.last4) == 4 and method.last4.isdigit()):
        return False  # the offer must name its last four
    if method.kind == "bank":
        # A bank debit needs the member's recorded authorization (SECURITY 16a), which
        # the one-press offer is not; the method menu (key 2) takes bank accounts.
        return False
    if method.exp_year is not None and method.exp_month is not None:
        return (method.exp_year, method.exp_month) >= (today.year, today.month)
    return True


def offer_with(ctx: Ctx, method: MethodOnFile | None) -> Offer | None:
    """The full balance with ``method`` (one of the account's, as the store reads it
    now), or None when one press could not pay it as said. The decline cap, the one
    question that costs a read of its own, is asked last."""
    if method is None or ctx.gateway is None:
        return None
    balance = ctx.account().balance_cents
    if balance <= 0 or payment.amount_limits(ctx, balance) is not None:
        return None
    if wallet(ctx).customer_id is None:
        return None
    today = ctx.clock.now().astimezone(ctx.config.timezone).date()
    if not chargeable(method, today) or payment.declines_capped(ctx):
        return None
    return Offer(balance, method.processor_id, method.kind, method.brand, method.last4)


def one_press_offer(ctx: Ctx) -> Offer | None:
    """The full balance with the method this account paid with last (else the one
    stored last), or None when one press could not pay it as said."""
    on_file = wallet(ctx)
    methods = list(on_file.methods[:MAX_STORED_METHODS])
    if not methods:
        return None
    last_used = on_file.last_paid
    return offer_with(ctx, next((m for m in methods if m.processor_id == last_used), methods[-1]))


def keep_offer(ctx: Ctx, offer: Offer | None) -> None:
    """Keep the offer about to be said for the `1` that follows (or forget the last)."""
    if offer is None:
        ctx.call.data.pop("offer", None)
    else:
        ctx.call.data["offer"] = asdict(offer)


def prepare_offer(ctx: Ctx) -> None:
    """On entering the account menu: the offer it will say, kept for its key `1`."""
    keep_offer(ctx, one_press_offer(ctx))


def offer_words(ctx: Ctx) -> dict[str, str]:
    """The kept offer's words: amount, account last four, method and its last four."""
    offer = ctx.call.data["offer"]
    return {
        "amount": say_amount(int(offer["amount_cents"]), ctx.lang),
        "account_last4": say_digits(ctx.account().number[-4:]),
        "method": say_method(str(offer["kind"]), str(offer["brand"]), ctx.lang),
        "method_last4": say_digits(str(offer["last4"])),
    }


def offer_phrase(ctx: Ctx) -> Phrase | None:
    """The menu's offer as said, or None without one."""
    if not ctx.call.data.get("offer"):
        return None
    return Phrase("menu_pay_offer", offer_words(ctx))


def _pay_now(ctx: Ctx, digits: str) -> Go:
    """Key `1` at the account menu: the offer charged at once, or the full-balance path."""
    if not ctx.call.data.get("offer"):
        return payment.pay_full.run(ctx, digits)
    return charge_offer(ctx)


def charge_offer(ctx: Ctx) -> Go:
    """The `1` to a kept offer: charged at once, as said, if its method is still on file."""
    data = ctx.call.data
    offer = data["offer"]
    refused = payment.payments_refused(ctx)
    if refused is not None:
        return refused
    if not any(method.processor_id == offer["processor_id"] for method in wallet(ctx).methods):
        ctx.event("payment_refused", success=False, reason="method_removed")
        return Go(MENU, notice=Phrase("method_gone"))
    if data.get("one_press_step") != ctx.call.step:
        data["confirm_no"] = int(data.get("confirm_no", 0)) + 1
        data["one_press_step"] = ctx.call.step
        ctx.event("menu_chosen", choice="pay_now_stored_method")
    data.update(
        amount_cents=int(offer["amount_cents"]),
        pay_full=True,
        method={
            "processor_id": offer["processor_id"], "brand": offer["brand"], "last4": offer["last4"],
            "kind": offer["kind"], "stored": True,
        },
    )
    return charge.charge_confirmed(ctx)


CHARGE_OFFER_LEADS_TO = tuple(dict.fromkeys((MENU, *charge.confirm_payment.leads_to)))
pay_now = Action(_pay_now, tuple(dict.fromkeys((*payment.pay_full.leads_to, *CHARGE_OFFER_LEADS_TO))))
