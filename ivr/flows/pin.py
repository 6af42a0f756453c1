"""PIN steps: verify, forgot, prove identity with the SSN last four, choose and confirm.

The digits typed are never kept: a new PIN awaiting confirmation is held only as a
keyed digest (HMAC with the pepper and the CallSid) in the call's context.
"""

from __future__ import annotations

from ivr.flows.context import Ctx
from ivr.flows.credentials import Check, check_secret
from ivr.flows.identify import begin_pin_creation, found_phrases
from ivr.flows.machine import Action, Go, Phrase, speaks

AUTH_FAILED = "auth_failed"


def _is_four_digits(entry: str) -> bool:
    return len(entry) == 4 and entry.isdigit()


def _leave_found(ctx: Ctx) -> None:
    """The first entry at a step reached from Call Capture: its preamble is not said again."""
    for key in ("found_last4", "found_notice"):
        ctx.call.data.pop(key, None)


def _failed(ctx: Ctx, check: Check, retry: Go) -> Go:
    """Count a failure in this call; the last one allowed ends the call politely.

    While the line-wide PIN failure alarm is on (``ivr.flows.credentials``), the first
    failure is the last one allowed."""
    failures = int(ctx.call.data.get("auth_failures", 0)) + 1
    ctx.call.data["auth_failures"] = failures
    if check is Check.LOCKED:
        ctx.call.data["locked"] = True
    allowed = 1 if ctx.call.data.get("line_alarm") else ctx.config.pin_failures_per_call
    if failures >= allowed:
        outcome = "locked-out" if ctx.call.data.get("locked") else "auth-failed"
        return Go(AUTH_FAILED, outcome=outcome)
    return retry


def _pin_entered(ctx: Ctx, digits: str) -> Go:
    _leave_found(ctx)
    if not _is_four_digits(digits):
        return Go("pin_entry", notice=Phrase("pin_format"), miss=True)
    checked = check_secret(ctx, "pin", digits)
    if checked.check is not Check.OK:
        return _failed(ctx, checked.check, Go("pin_wrong"))
    call = ctx.call
    call.verified = True
    if checked.origin == "legacy":
        call.data["may_set_pin"] = True
        return Go("new_pin", notice=Phrase("pin_legacy_choose_new"))
    return Go("account_menu")


pin_entered = Action(_pin_entered, ("pin_entry", "pin_wrong", "new_pin", "account_menu", AUTH_FAILED))


def _forgot_pin(ctx: Ctx, _digits: str) -> Go:
    ctx.event("pin_forgotten")
    return begin_pin_creation(ctx, first_time=False)


forgot_pin = Action(_forgot_pin, ("ssn_entry", "new_pin", "pin_referral"))


@speaks("capture_one", "capture_star", "pin_create_intro", "ssn_entry_residential", "ssn_entry_commercial")
def speak_ssn_entry(ctx: Ctx) -> list[Phrase]:
    commercial = ctx.call.account_id is not None and ctx.account().account_type == "commercial"
    return found_phrases(ctx, [Phrase("ssn_entry_commercial" if commercial else "ssn_entry_residential")])


@speaks("capture_one", "capture_star", "pin_create_intro", "new_pin")
def speak_new_pin(ctx: Ctx) -> list[Phrase]:
    return found_phrases(ctx, [Phrase("new_pin")])


@speaks("capture_one", "pin_create_intro", "pin_referral")
def speak_pin_referral(ctx: Ctx) -> list[Phrase]:
    return found_phrases(ctx, [Phrase("pin_referral")], star=False)


def _ssn_entered(ctx: Ctx, digits: str) -> Go:
    _leave_found(ctx)
    if not _is_four_digits(digits):
        return Go("ssn_entry", notice=Phrase("ssn_format"), miss=True)
    check = check_secret(ctx, "ssn", digits).check
    if check is not Check.OK:
        return _failed(ctx, check, Go("ssn_entry", notice=Phrase("ssn_wrong")))
    ctx.call.data["may_set_pin"] = True
    return Go("new_pin")


ssn_entered = Action(_ssn_entered, ("ssn_entry", "new_pin", AUTH_FAILED))


def _pin_chosen(ctx: Ctx, digits: str) -> Go:
    _leave_found(ctx)
    if not _is_four_digits(digits):
        return Go("new_pin", notice=Phrase("pin_format"), miss=True)
    account = ctx.account()
    ssn_hash = ctx.uow.credentials.get(account.id).ssn_hash
    rejection = ctx.policy.check(
        digits,
        account_number=account.number,
        caller_number=ctx.caller,
        matches_ssn=(lambda pin: ctx.hasher.verify(ssn_hash, pin)) if ssn_hash else None,
    )
    if rejection is not None:
        ctx.event("pin_choice_refused", success=False, reason=rejection.name.lower())
        return Go("new_pin", notice=Phrase(rejection.prompt_key), miss=True)
    ctx.call.data["pending_pin"] = ctx.hasher.digest(digits, ctx.call.call_sid)
    return Go("new_pin_confirm")


pin_chosen = Action(_pin_chosen, ("new_pin", "new_pin_confirm"))


def _pin_confirmed(ctx: Ctx, digits: str) -> Go:
    call = ctx.call
    pending = call.data.pop("pending_pin", None)
    if pending is None or ctx.hasher.digest(digits, call.call_sid) != pending:
        ctx.event("pin_confirmation_mismatch", success=False)
        return Go("new_pin", notice=Phrase("pin_mismatch"))
    account = ctx.account()
    ctx.uow.credentials.set_pin(account.id, ctx.hasher.hash(digits), "member", ctx.clock.now())
    for key in ("may_set_pin", "creating_pin"):
        call.data.pop(key, None)
    call.verified = True
    ctx.event("pin_created")
    return Go("account_menu", notice=Phrase("pin_saved"))


pin_confirmed = Action(_pin_confirmed, ("new_pin", "account_menu"))


def _back_to_new_pin(ctx: Ctx, _digits: str) -> Go:
    ctx.call.data.pop("pending_pin", None)
    return Go("new_pin")


back_to_new_pin = Action(_back_to_new_pin, ("new_pin",))
