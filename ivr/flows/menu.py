"""The account menu (after a verified PIN) and member services."""

from __future__ import annotations

from datetime import datetime

from ivr.flows.autopay import suspension_notice
from ivr.flows.context import Ctx
from ivr.flows.machine import Action, Go, Phrase, speaks
from ivr.flows.speech import say_amount, say_date, say_hours


@speaks(
    "balance_due",
    "balance_overdue",
    "balance_past_due_part",
    "balance_zero",
    "balance_credit",
    "account_menu_options",
    "autopay_suspended_method_removed",
    "autopay_suspended_method_unusable",
    "autopay_suspended_declines",
    "autopay_suspended_notice",
)
def speak_account_menu(ctx: Ctx) -> list[Phrase]:
    account = ctx.account()
    lang = ctx.lang
    today = ctx.clock.now().astimezone(ctx.config.timezone).date()
    phrases: list[Phrase] = suspension_notice(ctx)  # Auto Pay suspended: said once
    balance = account.balance_cents
    if balance > 0:
        key = "balance_overdue" if account.due_date < today else "balance_due"
        phrases.append(
            Phrase(key, {"amount": say_amount(balance, lang), "due_date": say_date(account.due_date, lang)})
        )
        past_due = min(account.past_due_cents, balance)
        if past_due > 0:
            phrases.append(Phrase("balance_past_due_part", {"amount": say_amount(past_due, lang)}))
    elif balance == 0:
        phrases.append(Phrase("balance_zero"))
    else:
        phrases.append(Phrase("balance_credit", {"amount": say_amount(-balance, lang)}))
    phrases.append(Phrase("account_menu_options"))
    return phrases


def in_business_hours(ctx: Ctx, moment: datetime) -> bool:
    hours = ctx.config.business_hours
    local = moment.astimezone(ctx.config.timezone)
    return local.weekday() in hours.days and hours.opens <= local.time() < hours.closes


def member_services_from(state: str) -> Action:
    """Key `0`: a transfer in business hours; outside them the hours, and back to ``state``."""

    def member_services(ctx: Ctx, _digits: str) -> Go:
        if in_business_hours(ctx, ctx.clock.now()):
            ctx.event("transfer_requested")
            return Go("transfer", outcome="transferred")
        ctx.event("transfer_closed", success=False)
        hours = say_hours(ctx.config.business_hours, ctx.lang)
        return Go(state, notice=Phrase("member_services_closed", {"hours": hours}))

    return Action(member_services, ("transfer", state))


def notice_then(state: str, key: str) -> Action:
    """A key that says ``key`` and comes back to ``state`` (e.g. Auto Pay is in the portal)."""

    def say_notice(ctx: Ctx, _digits: str) -> Go:
        ctx.event("menu_chosen", choice=key)
        return Go(state, notice=Phrase(key))

    say_notice.__name__ = f"say_{key}"
    return Action(say_notice, (state,))
