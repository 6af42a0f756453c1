"""The account menu (after a verified PIN) and member services."""

from __future__ import annotations

from datetime import datetime

from ivr.flows.autopay import suspension_notice
from ivr.flows.context import Ctx
from ivr.flows.fast_lane import offer_phrase, prepare_offer
from ivr.flows.machine import Action, Go, Phrase, speaks
from ivr.flows.speech import say_amount, say_date, say_hours, say_phone
from ivr.flows.texting import REFUSED_PROMPTS, news_phrases, take_text_news


@speaks(
    "balance_due",
    "balance_overdue",
    "balance_past_due_part",
    "balance_zero",
    "balance_credit",
    "menu_pay_offer",
    "menu_pay_full",
    "account_menu_options",
    *REFUSED_PROMPTS.values(),
    "autopay_suspended_method_removed",
    "autopay_suspended_method_unusable",
    "autopay_suspended_declines",
    "autopay_suspended_notice",
)
def speak_account_menu(ctx: Ctx) -> list[Phrase]:
    account = ctx.account()
    lang = ctx.lang
    today = ctx.clock.now().astimezone(ctx.config.timezone).date()
    phrases: list[Phrase] = [*suspension_notice(ctx), *news_phrases(ctx)]  # said once each
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
    offer = offer_phrase(ctx)
    if offer is not None:
        phrases.append(offer)
    elif balance > 0:
        phrases.append(Phrase("menu_pay_full"))
    phrases.append(Phrase("account_menu_options"))
    return phrases


def enter_account_menu(ctx: Ctx) -> None:
    """What the menu looks up as it is entered: the one-press offer, a text's news."""
    prepare_offer(ctx)
    take_text_news(ctx)


def in_business_hours(ctx: Ctx, moment: datetime) -> bool:
    """Member services answers: a business day's hours, and not a closure day (holiday)."""
    hours = ctx.config.business_hours
    local = moment.astimezone(ctx.config.timezone)
    if local.date() in ctx.config.closed_days:
        return False
    return local.weekday() in hours.days and hours.opens <= local.time() < hours.closes


def hours_and_number(ctx: Ctx) -> dict[str, str]:
    """What a caller member services cannot take now is told: when, and where, to call."""
    return {
        "hours": say_hours(ctx.config.business_hours, ctx.lang),
        "number": say_phone(ctx.config.member_services_number),
    }


def member_services_from(state: str) -> Action:
    """Key `0`: a transfer in business hours; outside them the hours, and back to ``state``."""

    def member_services(ctx: Ctx, _digits: str) -> Go:
        if in_business_hours(ctx, ctx.clock.now()):
            ctx.event("transfer_requested")
            ctx.call.data["transfer_from"] = state
            return Go("transfer")
        local_day = ctx.clock.now().astimezone(ctx.config.timezone).date()
        holiday = local_day in ctx.config.closed_days
        ctx.event("transfer_closed", success=False, closure_day=holiday)
        key = "member_services_closed_today" if holiday else "member_services_closed"
        return Go(state, notice=Phrase(key, hours_and_number(ctx)))

    return Action(member_services, ("transfer", state))


# https://www.twilio.com/docs/voice/twiml/dial#attributes-action: when the dialed call
# ends, Twilio requests the <Dial action> with DialCallStatus; "completed" is a
# conversation held, the others mean nobody took the call.
DIAL_TALKED = frozenset({"completed", "answered"})


def after_transfer(back_to: tuple[str, ...]) -> Action:
    """The ``<Dial>`` ended: after a conversation, goodbye; when member services was busy,
    did not answer or could not be reached, its hours and number are said and the menu
    comes back."""

    def transfer_ended(ctx: Ctx, status: str) -> Go:
        if status in DIAL_TALKED:
            ctx.event("transfer_ended", dial_status=status)
            return Go("transferred", outcome="transferred")
        ctx.event("transfer_failed", success=False, dial_status=status[:20] or "none")
        state = str(ctx.call.data.pop("transfer_from", back_to[0]))
        return Go(state if state in back_to else back_to[0],
                  notice=Phrase("member_services_unavailable", hours_and_number(ctx)))

    return Action(transfer_ended, ("transferred", *back_to))


def notice_then(state: str, key: str) -> Action:
    """A key that says ``key`` and comes back to ``state`` (e.g. Auto Pay is in the portal)."""

    def say_notice(ctx: Ctx, _digits: str) -> Go:
        ctx.event("menu_chosen", choice=key)
        return Go(state, notice=Phrase(key))

    say_notice.__name__ = f"say_{key}"
    return Action(say_notice, (state,))
