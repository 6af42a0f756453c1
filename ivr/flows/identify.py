"""Language and identification: Call Capture, or the account number keyed in.

Call Capture identifies; it never authenticates (caller ID can be spoofed). Nothing
said here tells whose account it is or what it owes: only the last four digits of an
account the caller's own number is on file for. A keyed account number that does not
exist still leads to the PIN prompt, so the IVR cannot be used to probe for accounts.
"""

from __future__ import annotations

from ivr.flows.context import Ctx
from ivr.flows.machine import Action, Go, Phrase, speaks
from ivr.flows.speech import say_digits

CAPTURE_STATES = ("confirm_found", "choose_account", "enter_account")
IDENTIFIED_STATES = ("pin_entry", "ssn_entry", "new_pin", "pin_referral")


@speaks("language_menu", "language_menu_es")
def speak_language_menu(_ctx: Ctx) -> list[Phrase]:
    """Each half in its own voice, before any language is chosen."""
    return [Phrase("language_menu", language="en"), Phrase("language_menu_es", language="es")]


def _capture(ctx: Ctx) -> Go:
    caller = ctx.caller
    if caller is None:
        ctx.event("call_capture", matches="caller_id_unusable")
        return Go("enter_account")
    limit = ctx.config.max_captured_accounts
    found = ctx.uow.accounts.by_phone(caller, limit + 1)
    ctx.event("call_capture", matches=len(found) if len(found) <= limit else f"over_{limit}")
    if not found or len(found) > limit:
        return Go("enter_account")
    ctx.call.data["captured_ids"] = [account.id for account in found]
    ctx.call.data["captured_last4"] = [account.number[-4:] for account in found]
    return Go("confirm_found" if len(found) == 1 else "choose_account")


def _choose_language(ctx: Ctx, digits: str) -> Go:
    ctx.call.language = "es" if digits == "2" else "en"
    ctx.event("language_chosen", language=ctx.call.language, by="key" if digits else "default")
    return _capture(ctx)


choose_language = Action(_choose_language, CAPTURE_STATES)


def _captured_ids(ctx: Ctx) -> list[int]:
    return [int(i) for i in ctx.call.data.get("captured_ids", [])]


def _captured_last4(ctx: Ctx) -> list[str]:
    return [say_digits(str(last4)) for last4 in ctx.call.data.get("captured_last4", [])]


@speaks("capture_one")
def speak_capture_one(ctx: Ctx) -> list[Phrase]:
    return [Phrase("capture_one", {"last4": _captured_last4(ctx)[0]})]


@speaks("capture_option", "capture_other")
def speak_capture_choices(ctx: Ctx) -> list[Phrase]:
    phrases = [
        Phrase("capture_option", {"last4": last4, "key": str(position)})
        for position, last4 in enumerate(_captured_last4(ctx), start=1)
    ]
    phrases.append(Phrase("capture_other"))
    return phrases


def select_account(ctx: Ctx, account_id: int | None) -> Go:
    """The call is now about ``account_id`` (None: a keyed number that does not exist)."""
    call = ctx.call
    call.account_id = account_id
    call.verified = False
    for key in ("unknown_account", "may_set_pin", "pending_pin", "creating_pin"):
        call.data.pop(key, None)
    if account_id is None:
        call.data["unknown_account"] = True
        ctx.event("account_identified", known=False)
        return Go("pin_entry")
    via = "caller_id" if account_id in _captured_ids(ctx) else "keyed"
    ctx.event("account_identified", known=True, via=via)
    if ctx.uow.credentials.get(account_id).origin == "none":
        return begin_pin_creation(ctx, first_time=True)
    return Go("pin_entry")


def caller_matches_account(ctx: Ctx) -> bool:
    """True when the caller's own number is on file for the call's account."""
    if ctx.caller is None or ctx.call.account_id is None:
        return False
    if ctx.call.account_id in _captured_ids(ctx):
        return True
    on_file = ctx.uow.accounts.by_phone(ctx.caller, 1000)
    return any(account.id == ctx.call.account_id for account in on_file)


def begin_pin_creation(ctx: Ctx, *, first_time: bool) -> Go:
    """Creating a PIN first proves identity with the SSN / tax-ID last four.

    With none on file, only a caller whose caller ID matches the account may go on;
    anyone else is referred to member services.
    """
    call = ctx.call
    call.data["creating_pin"] = True
    intro = Phrase("pin_create_intro") if first_time else None
    if call.account_id is None or ctx.account().has_ssn:
        return Go("ssn_entry", notice=intro)
    if caller_matches_account(ctx):
        call.data["may_set_pin"] = True
        ctx.event("pin_creation_allowed", via="caller_id")
        return Go("new_pin", notice=intro)
    ctx.event("pin_creation_referred", success=False, reason="no_ssn_and_caller_id_differs")
    return Go("pin_referral")


def _select_captured(ctx: Ctx, digits: str) -> Go:
    ids = _captured_ids(ctx)
    position = int(digits) - 1 if digits.isdigit() else -1
    if not 0 <= position < len(ids):
        return Go(ctx.call.state, notice=Phrase("invalid_entry"), miss=True)
    return select_account(ctx, ids[position])


select_captured = Action(_select_captured, ("confirm_found", "choose_account", *IDENTIFIED_STATES))


def _account_entered(ctx: Ctx, digits: str) -> Go:
    if not (digits.isdigit() and 4 <= len(digits) <= 20):
        tries = int(ctx.call.data.get("account_tries", 0)) + 1
        ctx.call.data["account_tries"] = tries
        ctx.event("account_entry_invalid", success=False, tries=tries, entry_length=len(digits))
        if tries >= ctx.config.account_entry_tries:
            return Go("account_not_found", outcome="unidentified")
        return Go("enter_account", notice=Phrase("account_invalid"))
    account = ctx.uow.accounts.by_number(digits)
    return select_account(ctx, account.id if account else None)


account_entered = Action(_account_entered, ("enter_account", "account_not_found", *IDENTIFIED_STATES))


def _back_to_capture(ctx: Ctx, _digits: str) -> Go:
    ids = _captured_ids(ctx)
    if not ids:
        return Go("enter_account", notice=Phrase("invalid_entry"), miss=True)
    return Go("confirm_found" if len(ids) == 1 else "choose_account")


back_to_capture = Action(_back_to_capture, CAPTURE_STATES)


def _switch_account(ctx: Ctx, _digits: str) -> Go:
    ctx.call.account_id = None
    ctx.call.verified = False
    ctx.call.data.pop("unknown_account", None)
    return Go("enter_account")


switch_account = Action(_switch_account, ("enter_account",))
