"""Auto Pay by phone (contract 2.10, issue 10): enroll, change the method, cancel.

Not enrolled: what Auto Pay is, then ``1`` enroll. A stored card (keys ``1``-``7``) or a
new card (``8``, collected by ``<Pay>`` and saved: it is for later payments); the terms
are read (the full balance of each bill, on its due date, the method's last four, the
first bill covered, how to cancel) and ``1`` agrees, ``2`` declines. The bill already
issued is not covered: after agreeing, the member hears so and may pay it at once
with the enrolled method: the fast lane's one-press offer (``ivr.flows.fast_lane``: the
same rules decide it, it names the amount, the account's and the method's last four,
and ``1`` charges it as the fast lane does). Enrolled: the method and the next draft; ``1`` change the method,
``2`` cancel (then ``1`` to confirm), ``*`` back.

Bank accounts: the network's rules for a recurring debit authorized by telephone want
the oral authorization recorded. With ``SECUREPAY_AUTOPAY_RECORD_CONSENT`` on, a bank
account on file may be chosen, and after ``1`` the member's spoken agreement is taken by
``<Record>`` (its own step, never during ``<Pay>``); the RecordingSid is kept with the
enrollment. Off (the default), only cards are offered and the member is pointed to the
portal for a bank account. A card is enrolled with the member's consent to keeping it on
file for these charges, made later without the member on the line (Stripe's
off-session use of a saved card). The written terms go out after the commit.
"""

from __future__ import annotations

import re
from typing import Any

from ivr.flows import fast_lane
from ivr.flows.context import Ctx
from ivr.flows.machine import Action, Go, Phrase, speaks
from ivr.flows.payment import CARD_RESULTS, PM_ID
from ivr.flows.ports import MAX_STORED_METHODS, MethodNotStored, MethodOnFile
from ivr.flows.speech import say_amount, say_date, say_digits, say_method
from payments.autopay_terms import EnrollmentView, Wording
from payments.gateway import PaymentError, card_expired, customer_idempotency_key

MENU = "account_menu"
INTRO = "autopay_intro"
ENROLLED = "autopay_enrolled"
METHODS = "autopay_choose_method"
CARD = "autopay_card_entry"
RETRY = "autopay_card_retry"
TERMS = "autopay_terms"
PAY_NOW = "autopay_pay_now"
CANCEL = "autopay_cancel_confirm"
RECORD = "autopay_record"
RECORDING_SID = re.compile(r"RE[0-9a-f]{32}")

SUSPENDED = {
    "method_removed": "autopay_suspended_method_removed",
    "method_unusable": "autopay_suspended_method_unusable",
    "declines": "autopay_suspended_declines",
}


def _wording(ctx: Ctx) -> Wording:
    config = ctx.config
    return Wording(config.utility_name, config.member_services_number, texts=config.texts_on,
                   templates_dir=config.templates_dir)


def _cards(ctx: Ctx) -> list[MethodOnFile]:
    """The stored methods the phone may enroll: cards not expired (every draft on an
    expired one would be declined), and bank accounts when their authorization is
    recorded (else: the portal)."""
    methods = ctx.uow.methods.for_account(ctx.account().id)[:MAX_STORED_METHODS]
    today = ctx.clock.now().astimezone(ctx.config.timezone).date()
    return [
        method for method in methods
        if (method.kind == "card" or ctx.config.autopay_record_consent)
        and not card_expired(method.exp_year, method.exp_month, today)
    ]


def _has_bank(ctx: Ctx) -> bool:
    """A bank account on file that the phone may not enroll (pointed to the portal)."""
    if ctx.config.autopay_record_consent:
        return False
    return any(method.kind == "bank" for method in ctx.uow.methods.for_account(ctx.account().id))


def say_phone(number: str) -> str:
    """``+12025550100`` -> ``2 0 2, 5 5 5, 0 1 0 0`` (a US number, as it is dialled)."""
    digits = number.lstrip("+")
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) == 10:
        return ", ".join(say_digits(part) for part in (digits[:3], digits[3:6], digits[6:]))
    return say_digits(digits)


# --- the menu key and the suspension said once ---------------------------------------------


def suspension_notice(ctx: Ctx) -> list[Phrase]:
    """Said at the account menu on the first call after a suspension (then marked said)."""
    if ctx.call.account_id is None or not ctx.call.verified:
        return []
    suspended = ctx.uow.autopay.take_untold_suspension(ctx.call.account_id, ctx.clock.now())
    if suspended is None:
        return []
    ctx.event("autopay_suspension_told", enrollment_id=suspended.id)
    return [Phrase(SUSPENDED.get(suspended.status_reason or "", "autopay_suspended_declines")),
            Phrase("autopay_suspended_notice")]


def _open_autopay(ctx: Ctx, _digits: str) -> Go:
    ctx.event("menu_chosen", choice="autopay")
    return Go(ENROLLED if ctx.uow.autopay.live(ctx.account().id) else INTRO)


open_autopay = Action(_open_autopay, (INTRO, ENROLLED))


def _back(ctx: Ctx, _digits: str) -> Go:
    return Go(ENROLLED if ctx.uow.autopay.live(ctx.account().id) else INTRO)


back = Action(_back, (INTRO, ENROLLED))


# --- choosing the method ---------------------------------------------------------------------


def _to_methods(ctx: Ctx, *, change: bool) -> Go:
    if ctx.gateway is None:
        return Go(MENU, notice=Phrase("payments_unavailable"))
    ctx.call.data["autopay"] = {"change": change}
    notice = Phrase("autopay_bank_in_portal") if _has_bank(ctx) else None
    if _cards(ctx):
        return Go(METHODS, notice=notice)
    return _new_card(ctx, notice)


def _new_card(ctx: Ctx, notice: Phrase | None = None) -> Go:
    data = ctx.call.data
    if int(data.get("new_cards", 0)) >= ctx.config.new_cards_per_call:
        ctx.event("payment_refused", success=False, reason="new_card_cap")
        return Go(MENU, notice=Phrase("new_card_limit"))
    data["new_cards"] = int(data.get("new_cards", 0)) + 1
    ctx.event("card_entry_started", save=True, purpose="autopay")
    return Go(CARD, notice=notice)


def _start_enroll(ctx: Ctx, _digits: str) -> Go:
    ctx.event("autopay_enroll_started")
    return _to_methods(ctx, change=False)


start_enroll = Action(_start_enroll, (MENU, METHODS, CARD))


def _change_method(ctx: Ctx, _digits: str) -> Go:
    ctx.event("autopay_change_started")
    return _to_methods(ctx, change=True)


change_method = Action(_change_method, (MENU, METHODS, CARD))


@speaks("autopay_method_option", "autopay_method_new_card")
def speak_methods(ctx: Ctx) -> list[Phrase]:
    phrases = [
        Phrase("autopay_method_option", {
            "method": say_method(method.kind, method.brand, ctx.lang),
            "last4": say_digits(method.last4),
            "key": str(position),
        })
        for position, method in enumerate(_cards(ctx), start=1)
    ]
    phrases.append(Phrase("autopay_method_new_card"))
    return phrases


def _chosen(ctx: Ctx, method: MethodOnFile) -> Go:
    ctx.call.data["autopay"] = {
        **ctx.call.data.get("autopay", {}),
        "method_id": method.id, "kind": method.kind, "brand": method.brand, "last4": method.last4,
        "processor_id": method.processor_id,
    }
    ctx.event("autopay_method_chosen", kind=method.kind)
    return Go(TERMS)


def _method_chosen(ctx: Ctx, digits: str) -> Go:
    cards = _cards(ctx)
    position = int(digits) - 1 if digits.isdigit() else -1
    if not 0 <= position < len(cards):
        return Go(METHODS, notice=Phrase("invalid_entry"), miss=True)
    return _chosen(ctx, cards[position])


method_chosen = Action(_method_chosen, (METHODS, TERMS))


def _choose_new_card(ctx: Ctx, _digits: str) -> Go:
    return _new_card(ctx)


new_card = Action(_choose_new_card, (MENU, CARD))


def _save_card(ctx: Ctx, token: str) -> MethodOnFile:
    """Attach the new card to the account's processor customer and keep it on file."""
    gateway = ctx.gateway
    if gateway is None:
        raise PaymentError("payments are off")
    account = ctx.account()
    methods = ctx.uow.methods
    customer_id = methods.customer_id(account.id)
    if customer_id is None:
        key = customer_idempotency_key(account.number)
        created = gateway.create_customer(account.number, idempotency_key=key)
        customer_id = methods.set_customer_id(account.id, created)
    info = gateway.attach_method(customer_id, token)
    return methods.add(account.id, info, created_via="ivr", now=ctx.clock.now(), limit=MAX_STORED_METHODS)


def _card_collected(ctx: Ctx, result: str) -> Go:
    token = ctx.payload.get("PaymentToken", "")
    if result == "success" and PM_ID.fullmatch(token):
        try:
            saved = _save_card(ctx, token)
        except MethodNotStored as exc:
            ctx.event("method_not_saved", success=False, reason=type(exc).__name__, purpose="autopay")
            return Go(RETRY, notice=Phrase("autopay_card_not_saved"))
        except PaymentError as exc:
            ctx.event("card_not_saved", success=False, reason=type(exc).__name__, purpose="autopay")
            return Go(RETRY, notice=Phrase("card_not_accepted"))
        ctx.event("method_saved", kind=saved.kind, purpose="autopay")
        return _chosen(ctx, saved)
    ctx.event("card_not_collected", success=False, result=result or "none", purpose="autopay")
    if result == "caller-interrupted-with-star":
        return _back(ctx, "")
    return Go(RETRY, notice=Phrase(CARD_RESULTS.get(result, "card_not_accepted")))


card_collected = Action(_card_collected, (TERMS, RETRY, INTRO, ENROLLED))


def _retry_card(ctx: Ctx, _digits: str) -> Go:
    return _new_card(ctx)


retry_card = Action(_retry_card, (MENU, CARD))


# --- the terms -------------------------------------------------------------------------------


@speaks("autopay_terms", "autopay_terms_card", "autopay_terms_bank", "autopay_terms_cancel",
        "autopay_terms_options")
def speak_terms(ctx: Ctx) -> list[Phrase]:
    chosen: dict[str, Any] = ctx.call.data["autopay"]
    account = ctx.account()
    live = ctx.uow.autopay.live(account.id)
    after = live.first_due_after if live is not None and chosen.get("change") else account.due_date
    utility = ctx.config.utility_name
    return [
        Phrase("autopay_terms", {
            "utility": utility,
            "after": say_date(after, ctx.lang),
            "method": say_method(chosen["kind"], chosen["brand"], ctx.lang),
            "last4": say_digits(chosen["last4"]),
        }),
        Phrase(f"autopay_terms_{'bank' if chosen['kind'] == 'bank' else 'card'}", {"utility": utility}),
        Phrase("autopay_terms_cancel", {"member_services": say_phone(ctx.config.member_services_number)}),
        Phrase("autopay_terms_options"),
    ]


def _agree(ctx: Ctx, _digits: str) -> Go:
    if ctx.call.data["autopay"]["kind"] == "bank":  # the authorization is recorded first
        ctx.event("autopay_terms_agreed", kind="bank")
        return Go(RECORD)
    return _enroll(ctx, None)


def _recorded(ctx: Ctx, _digits: str) -> Go:
    """Twilio's ``<Record>`` callback: the spoken authorization, kept by its sid."""
    sid = ctx.payload.get("RecordingSid", "")
    duration = ctx.payload.get("RecordingDuration", "0")
    if not RECORDING_SID.fullmatch(sid) or not duration.isdigit() or int(duration) < 1:
        ctx.event("autopay_authorization_not_recorded", success=False)
        return Go(RECORD, notice=Phrase("autopay_record_failed"), miss=True)
    ctx.event("autopay_authorization_recorded", recording_sid=sid, seconds=int(duration))
    return _enroll(ctx, sid)


def _enroll(ctx: Ctx, recording_sid: str | None) -> Go:
    chosen: dict[str, Any] = ctx.call.data["autopay"]
    account = ctx.account()
    try:
        done = ctx.uow.autopay.enroll(
            account.id, int(chosen["method_id"]), actor=ctx.call.call_sid, wording=_wording(ctx),
            now=ctx.clock.now(), recording_sid=recording_sid,
        )
    except LookupError:  # the method was removed meanwhile (the portal)
        return Go(MENU, notice=Phrase("autopay_not_enrolled"))
    enrollment = done.enrollment
    ctx.event(f"autopay_{done.change}", enrollment_id=enrollment.id, method_last4=enrollment.method_last4,
              terms_version=enrollment.terms_version)
    if done.notice_ids:
        notices, notice_ids = ctx.notices, list(done.notice_ids)
        ctx.after_commit.append(lambda: notices.dispatch(notice_ids))
    words = {"method": say_method(enrollment.method_kind, enrollment.method_brand, ctx.lang),
             "last4": say_digits(enrollment.method_last4)}
    said = Phrase("autopay_changed_now" if done.change == "method_changed" else "autopay_enrolled_now", words)
    account = ctx.refresh_account()
    if done.change != "enrolled" or account.balance_cents <= 0 or enrollment.covers(account.due_date):
        return Go(MENU, notice=said)
    if _offer_current_bill(ctx, enrollment):
        return Go(PAY_NOW, notice=said)
    # Not offered (a bank account, an amount over the limit...): still said, not covered.
    return Go(MENU, notice=Phrase("autopay_enrolled_not_covered", {
        **words, "amount": say_amount(account.balance_cents, ctx.lang),
        "due_date": say_date(account.due_date, ctx.lang),
    }))


def _offer_current_bill(ctx: Ctx, enrollment: EnrollmentView) -> bool:
    """The bill already issued (not covered) may be paid now with the enrolled method,
    where the fast lane would offer that method for it."""
    account = ctx.account()
    on_file = ctx.uow.methods.for_account(account.id)
    method = next((m for m in on_file if m.processor_id == enrollment.method_processor_id), None)
    offer = fast_lane.offer_with(ctx, method)
    fast_lane.keep_offer(ctx, offer)
    return offer is not None


agree = Action(_agree, (RECORD, PAY_NOW, MENU))
recorded = Action(_recorded, (RECORD, PAY_NOW, MENU))


def _decline(ctx: Ctx, _digits: str) -> Go:
    ctx.event("autopay_terms_declined")
    ctx.call.data.pop("autopay", None)
    return Go(MENU, notice=Phrase("autopay_terms_declined"))


decline = Action(_decline, (MENU,))


@speaks("autopay_not_covered", "autopay_pay_now_offer")
def speak_pay_now(ctx: Ctx) -> list[Phrase]:
    words = fast_lane.offer_words(ctx)
    due_date = say_date(ctx.account().due_date, ctx.lang)
    return [
        Phrase("autopay_not_covered", {"amount": words["amount"], "due_date": due_date}),
        Phrase("autopay_pay_now_offer", words),
    ]


def _pay_now(ctx: Ctx, _digits: str) -> Go:
    return fast_lane.charge_offer(ctx)


pay_now = Action(_pay_now, fast_lane.CHARGE_OFFER_LEADS_TO)


# --- enrolled: the method, the next draft, change or cancel ----------------------------------


@speaks(
    "autopay_status_active", "autopay_suspended_method_removed", "autopay_suspended_method_unusable",
    "autopay_suspended_declines", "autopay_next_draft", "autopay_next_bill", "autopay_not_enrolled",
    "autopay_enrolled_options",
)
def speak_enrolled(ctx: Ctx) -> list[Phrase]:
    account = ctx.account()
    live = ctx.uow.autopay.live(account.id)
    if live is None:
        return [Phrase("autopay_not_enrolled"), Phrase("autopay_enrolled_options")]
    phrases = [Phrase("autopay_status_active", {
        "method": say_method(live.method_kind, live.method_brand, ctx.lang),
        "last4": say_digits(live.method_last4),
    })]
    if live.status == "suspended":
        phrases.append(Phrase(SUSPENDED.get(live.status_reason or "", "autopay_suspended_declines")))
    else:
        today = ctx.clock.now().astimezone(ctx.config.timezone).date()
        due = account.due_date
        if (live.covers(due) and due >= today and account.balance_cents > 0
                and not ctx.uow.autopay.drafted(account.id, due)):
            phrases.append(Phrase("autopay_next_draft", {
                "amount": say_amount(account.balance_cents, ctx.lang), "date": say_date(due, ctx.lang),
            }))
        else:
            phrases.append(Phrase("autopay_next_bill"))
    phrases.append(Phrase("autopay_enrolled_options"))
    return phrases


def _cancel(ctx: Ctx, _digits: str) -> Go:
    account = ctx.account()
    try:
        done = ctx.uow.autopay.cancel(account.id, actor=ctx.call.call_sid, wording=_wording(ctx),
                                      now=ctx.clock.now())
    except LookupError:  # cancelled meanwhile (the portal, staff)
        return Go(MENU, notice=Phrase("autopay_not_enrolled"))
    ctx.event("autopay_cancelled", enrollment_id=done.enrollment.id)
    if done.notice_ids:
        notices, notice_ids = ctx.notices, list(done.notice_ids)
        ctx.after_commit.append(lambda: notices.dispatch(notice_ids))
    return Go(MENU, notice=Phrase("autopay_cancelled"))


cancel = Action(_cancel, (MENU,))
