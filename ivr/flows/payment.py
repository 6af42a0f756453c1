"""Choosing what to pay and with what: full balance or another amount, a stored method
or a new card collected by Twilio ``<Pay>`` (contract 2.4-2.6).

Card-testing guards (SECURITY 15a): payment states require a verified PIN; at most
``new_cards_per_call`` new cards per call; a daily cap of declines per account and per
caller number. The card's digits never reach this service: ``<Pay>`` hands back a
PaymentMethod id, the masked number, the brand and the expiry.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from ivr.flows.amounts import parse_amount_keys
from ivr.flows.context import Ctx
from ivr.flows.machine import Action, CardPrompt, Go, Phrase, speaks
from ivr.flows.ports import MAX_STORED_METHODS
from ivr.flows.speech import say_amount, say_date, say_digits, say_method
from ivr.flows.wallet import account_id, wallet

PM_ID = re.compile(r"pm_[A-Za-z0-9_]{1,60}")
CUSTOMER_ID = re.compile(r"cus_[A-Za-z0-9_]{1,60}")
MENU = "account_menu"
METHOD_STATES = ("choose_method", "save_card")


def payments_refused(ctx: Ctx) -> Go | None:
    """None when a payment may start; otherwise where to go instead, and why."""
    if ctx.gateway is None:
        return Go(MENU, notice=Phrase("payments_unavailable"))
    if declines_capped(ctx):
        ctx.event("payment_refused", success=False, reason="decline_cap")
        return Go(MENU, notice=Phrase("decline_limit"))
    return None


def declines_capped(ctx: Ctx) -> bool:
    """The day's declines on the account, or from the caller's number, reached their cap
    (both counted in one read; a withheld number counts nothing)."""
    since = ctx.clock.now() - timedelta(hours=24)
    caller = ctx.caller
    declines = ctx.uow.ledger.declines(since, account_id=account_id(ctx), caller=caller)
    if declines.account >= ctx.config.declines_per_account_day:
        return True
    return caller is not None and declines.caller >= ctx.config.declines_per_caller_day


def amount_limits(ctx: Ctx, cents: int) -> Phrase | None:
    config = ctx.config
    if cents < config.payment_min_cents:
        return Phrase("amount_below_min", {"minimum": say_amount(config.payment_min_cents, ctx.lang)})
    if cents > config.payment_max_cents:
        return Phrase("amount_above_max", {"maximum": say_amount(config.payment_max_cents, ctx.lang)})
    return None


def to_methods(ctx: Ctx) -> Go:
    """The method menu, or straight to a new card when none is stored."""
    ctx.call.data.pop("method", None)
    if wallet(ctx).methods:
        return Go("choose_method")
    return _new_card(ctx)


def _pay_full(ctx: Ctx, _digits: str) -> Go:
    refused = payments_refused(ctx)
    if refused is not None:
        return refused
    balance = ctx.account().balance_cents
    if balance <= 0:
        return Go(MENU, notice=Phrase("nothing_due"))
    limit = amount_limits(ctx, balance)
    if limit is not None:
        return Go("enter_amount", notice=limit)
    ctx.call.data.update(amount_cents=balance, pay_full=True)
    ctx.event("menu_chosen", choice="pay_full_balance")
    return to_methods(ctx)


pay_full = Action(_pay_full, (MENU, "enter_amount", *METHOD_STATES))


def _pay_other(ctx: Ctx, _digits: str) -> Go:
    refused = payments_refused(ctx)
    if refused is not None:
        return refused
    ctx.event("menu_chosen", choice="pay_other_amount")
    return Go("enter_amount")


pay_other = Action(_pay_other, (MENU, "enter_amount"))


@speaks("enter_amount")
def speak_enter_amount(ctx: Ctx) -> list[Phrase]:
    return [Phrase("enter_amount")]


def _amount_entered(ctx: Ctx, digits: str) -> Go:
    cents = parse_amount_keys(digits)
    if cents is None:
        return Go("enter_amount", notice=Phrase("amount_invalid"), miss=True)
    limit = amount_limits(ctx, cents)
    if limit is not None:
        return Go("enter_amount", notice=limit, miss=True)
    ctx.call.data.update(amount_cents=cents, pay_full=False)
    ctx.event("amount_entered", amount_cents=cents)
    return to_methods(ctx)


amount_entered = Action(_amount_entered, ("enter_amount", *METHOD_STATES, MENU))


def _full_balance_keyed(ctx: Ctx, _digits: str) -> Go:
    """``#`` alone at the amount prompt: the full balance (contract 2.5)."""
    balance = ctx.account().balance_cents
    if balance <= 0:
        return Go(MENU, notice=Phrase("nothing_due"))
    limit = amount_limits(ctx, balance)
    if limit is not None:
        return Go("enter_amount", notice=limit, miss=True)
    ctx.call.data.update(amount_cents=balance, pay_full=True)
    ctx.event("amount_entered", amount_cents=balance, full_balance=True)
    return to_methods(ctx)


full_balance_keyed = Action(_full_balance_keyed, ("enter_amount", *METHOD_STATES, MENU))


@speaks("method_option", "method_new_card")
def speak_methods(ctx: Ctx) -> list[Phrase]:
    methods = wallet(ctx).methods[:MAX_STORED_METHODS]
    phrases = [
        Phrase("method_option", {
            "method": say_method(method.kind, method.brand, ctx.lang),
            "last4": say_digits(method.last4),
            "key": str(position),
        })
        for position, method in enumerate(methods, start=1)
    ]
    phrases.append(Phrase("method_new_card"))
    return phrases


def _method_chosen(ctx: Ctx, digits: str) -> Go:
    methods = wallet(ctx).methods[:MAX_STORED_METHODS]
    position = int(digits) - 1 if digits.isdigit() else -1
    if not 0 <= position < len(methods):
        return Go("choose_method", notice=Phrase("invalid_entry"), miss=True)
    method = methods[position]
    ctx.call.data["method"] = {
        "processor_id": method.processor_id, "brand": method.brand, "last4": method.last4,
        "kind": method.kind, "stored": True,
    }
    ctx.event("method_chosen", stored=True, kind=method.kind)
    return to_confirm(ctx)


method_chosen = Action(_method_chosen, ("choose_method", "confirm"))


def _new_card(ctx: Ctx) -> Go:
    if int(ctx.call.data.get("new_cards", 0)) >= ctx.config.new_cards_per_call:
        ctx.event("payment_refused", success=False, reason="new_card_cap")
        return Go(MENU, notice=Phrase("new_card_limit"))
    return Go("save_card")


def _choose_new_card(ctx: Ctx, _digits: str) -> Go:
    return _new_card(ctx)


new_card = Action(_choose_new_card, (MENU, "save_card"))


def _save_choice(ctx: Ctx, digits: str) -> Go:
    ctx.call.data["save_card"] = digits == "1"
    ctx.call.data["new_cards"] = int(ctx.call.data.get("new_cards", 0)) + 1
    ctx.event("card_entry_started", save=digits == "1")
    return Go("card_entry")


save_choice = Action(_save_choice, ("card_entry",))


def _back_from_card(ctx: Ctx, _digits: str) -> Go:
    if wallet(ctx).methods:
        return Go("choose_method")
    return Go(MENU)


back_from_card = Action(_back_from_card, ("choose_method", MENU))


# Our wording for each step of Twilio's <Pay>, in the caller's language and voice
# (https://www.twilio.com/docs/voice/twiml/pay/prompt: <Prompt for=... errorType=...>).
CARD_PROMPTS: tuple[tuple[str, str | None, str], ...] = (
    ("payment-card-number", None, "pay_card_number"),
    ("payment-card-number", "timeout", "pay_card_number_timeout"),
    ("payment-card-number", "invalid-card-number", "pay_card_number_invalid"),
    ("payment-card-number", "invalid-card-type", "pay_card_type_invalid"),
    ("expiration-date", None, "pay_expiration_date"),
    ("expiration-date", "timeout", "pay_expiration_date_timeout"),
    ("expiration-date", "invalid-date", "pay_expiration_date_invalid"),
    ("security-code", None, "pay_security_code"),
    ("security-code", "timeout", "pay_security_code_timeout"),
    ("security-code", "invalid-security-code", "pay_security_code_invalid"),
    ("payment-processing", None, "pay_processing"),
)


@speaks(*(key for _, _, key in CARD_PROMPTS))
def card_prompts(ctx: Ctx) -> list[CardPrompt]:
    return [CardPrompt(step, Phrase(key), error) for step, error, key in CARD_PROMPTS]


PAY_ERRORS = {"PaymentError": "payment_error", "PayErrorCode": "pay_error_code",
              "ConnectorError": "connector_error"}

CARD_RESULTS = {
    "too-many-failed-attempts": "card_not_accepted",
    "validation-error": "card_not_accepted",
    "payment-connector-error": "card_connector_error",
}


def _card_collected(ctx: Ctx, result: str) -> Go:
    """Twilio's ``<Pay>`` callback: a PaymentMethod id on success, else a plain reason."""
    payload = ctx.payload
    token = payload.get("PaymentToken", "")
    if result == "success" and PM_ID.fullmatch(token):
        masked = payload.get("PaymentCardNumber", "")
        ctx.call.data["method"] = {
            "processor_id": token,
            "brand": (payload.get("PaymentCardType") or "card").lower()[:32],
            "last4": masked[-4:] if masked[-4:].isdigit() else "0000",
            "kind": "card",
            "stored": False,
        }
        # With the Stripe connector Twilio may also post ``ProfileId``: the customer the
        # method was put on (not card data). Charged with it, saved on it (issue 8, item 2).
        profile = payload.get("ProfileId", "")
        if CUSTOMER_ID.fullmatch(profile):
            ctx.call.data["method"]["profile_id"] = profile
        ctx.event("card_tokenized", brand=ctx.call.data["method"]["brand"])
        return to_confirm(ctx)
    # Twilio's reasons hold no card data; they show a wrong connector, language or card type.
    reasons = {
        field: payload[name] for name, field in PAY_ERRORS.items() if payload.get(name)
    }
    ctx.event("card_not_collected", success=False, result=result or "none", **reasons)
    if result == "caller-interrupted-with-star":
        return _back_from_card(ctx, "")
    return Go("card_retry", notice=Phrase(CARD_RESULTS.get(result, "card_not_accepted")))


card_collected = Action(_card_collected, ("confirm", "card_retry", "choose_method", MENU))


def _retry_card(ctx: Ctx, _digits: str) -> Go:
    went = _new_card(ctx)
    if went.state == "save_card":  # the save choice stands: collect the card again
        ctx.call.data["new_cards"] = int(ctx.call.data.get("new_cards", 0)) + 1
        return Go("card_entry")
    return went


retry_card = Action(_retry_card, ("card_entry", MENU))


def to_confirm(ctx: Ctx) -> Go:
    """Each confirm screen gets its own attempt number: one charge per confirmation."""
    ctx.call.data["confirm_no"] = int(ctx.call.data.get("confirm_no", 0)) + 1
    return Go("confirm")


@speaks("confirm_payment")
def speak_confirm(ctx: Ctx) -> list[Phrase]:
    data: dict[str, Any] = ctx.call.data
    method = data["method"]
    return [Phrase("confirm_payment", {
        "amount": say_amount(int(data["amount_cents"]), ctx.lang),
        "account_last4": say_digits(ctx.account().number[-4:]),
        "method": say_method(method["kind"], method["brand"], ctx.lang),
        "method_last4": say_digits(method["last4"]),
    })]


def _say_last_payment(ctx: Ctx, _digits: str) -> Go:
    ctx.event("menu_chosen", choice="last_payment")
    last = ctx.uow.ledger.last_payment(ctx.account().id)
    if last is None:
        return Go(MENU, notice=Phrase("no_last_payment"))
    local_day = last.taken_at.astimezone(ctx.config.timezone).date()
    return Go(MENU, notice=Phrase("last_payment", {
        "amount": say_amount(last.amount_cents, ctx.lang),
        "date": say_date(local_day, ctx.lang),
        "confirmation": say_digits(last.confirmation),
    }))


say_last_payment = Action(_say_last_payment, (MENU,))
