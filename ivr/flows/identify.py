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

CAPTURE_STATES = ("choose_account", "enter_account")
IDENTIFIED_STATES = ("pin_entry", "ssn_entry", "new_pin", "pin_referral")
FOUND_STATES = (*CAPTURE_STATES, *IDENTIFIED_STATES)
# What the call knows of the account it is about, forgotten when it is about another.
FORGOTTEN = (
    "unknown_account", "may_set_pin", "pending_pin", "creating_pin", "found_last4", "found_notice", "offer",
)


def capture_caller(ctx: Ctx) -> None:
    """As the call comes in: the accounts the caller ID is on file for (ids, last fours,
    languages), and the greeting's language: Spanish when every one has Spanish on file."""
    caller = ctx.caller
    if caller is None:
        ctx.event("call_capture", matches="caller_id_unusable")
        return
    limit = ctx.config.max_captured_accounts
    found = ctx.uow.accounts.by_phone(caller, limit + 1)
    ctx.event("call_capture", matches=len(found) if len(found) <= limit else f"over_{limit}")
    if not found or len(found) > limit:
        return
    ctx.call.data["captured_ids"] = [account.id for account in found]
    ctx.call.data["captured_last4"] = [account.number[-4:] for account in found]
    if all(account.language == "es" for account in found):
        ctx.call.data["spanish_default"] = True
        ctx.call.language = "es"


@speaks("language_menu", "language_menu_es")
def speak_language_menu(ctx: Ctx) -> list[Phrase]:
    """The other language's offer, in its own voice: no input keeps the greeting's."""
    if ctx.call.data.get("spanish_default"):
        return [Phrase("language_menu", language="en")]
    return [Phrase("language_menu_es", language="es")]


def _choose_language(ctx: Ctx, digits: str) -> Go:
    if digits in ("1", "2"):
        ctx.call.language = "es" if digits == "2" else "en"
    else:
        ctx.call.language = "es" if ctx.call.data.get("spanish_default") else "en"
    ctx.event("language_chosen", language=ctx.call.language, by="key" if digits else "default")
    return offer_accounts(ctx, exclude=())


choose_language = Action(_choose_language, FOUND_STATES)


def offer_accounts(ctx: Ctx, *, exclude: tuple[int, ...]) -> Go:
    """The caller ID's accounts but ``exclude``: one goes straight to its PIN step (with
    ``*`` for another account), several are a choice, none is keyed entry."""
    data = ctx.call.data
    captured = zip(data.get("captured_ids", []), data.get("captured_last4", []), strict=True)
    choices = [(int(i), str(last4)) for i, last4 in captured if int(i) not in exclude]
    data["choices"] = [account_id for account_id, _ in choices]
    data["choices_last4"] = [last4 for _, last4 in choices]
    if not choices:
        return Go("enter_account")
    if len(choices) > 1:
        return Go("choose_account")
    go = select_account(ctx, choices[0][0])
    data["found_last4"] = choices[0][1]
    if go.notice is not None:  # said after "we found the account ...", not before it
        data["found_notice"] = go.notice.key
        return Go(go.state, outcome=go.outcome)
    return go


def _captured_ids(ctx: Ctx) -> list[int]:
    return [int(i) for i in ctx.call.data.get("captured_ids", [])]


def found_phrases(ctx: Ctx, prompt: list[Phrase], *, star: bool = True) -> list[Phrase]:
    """A step reached straight from Call Capture: the account's last four before it,
    and "for a different account, press star" after it."""
    data = ctx.call.data
    last4 = data.get("found_last4")
    if not last4:
        return prompt
    found = [Phrase("capture_one", {"last4": say_digits(str(last4))})]
    if data.get("found_notice"):
        found.append(Phrase(str(data["found_notice"])))
    return [*found, *prompt, Phrase("capture_star")] if star else [*found, *prompt]


@speaks("capture_one", "capture_star", "pin_entry", "pin_create_intro")
def speak_pin_entry(ctx: Ctx) -> list[Phrase]:
    return found_phrases(ctx, [Phrase("pin_entry")])


@speaks("capture_option", "capture_other")
def speak_capture_choices(ctx: Ctx) -> list[Phrase]:
    phrases = [
        Phrase("capture_option", {"last4": say_digits(str(last4)), "key": str(position)})
        for position, last4 in enumerate(ctx.call.data.get("choices_last4", []), start=1)
    ]
    phrases.append(Phrase("capture_other"))
    return phrases


def select_account(ctx: Ctx, account_id: int | None) -> Go:
    """The call is now about ``account_id`` (None: a keyed number that does not exist)."""
    call = ctx.call
    call.account_id = account_id
    call.verified = False
    for key in FORGOTTEN:
        call.data.pop(key, None)
    if account_id is None:
        call.data["unknown_account"] = True
        ctx.event("account_identified", known=False)
        return Go("pin_entry")
    captured = _captured_ids(ctx)
    if account_id in captured:  # its last four are known since Call Capture
        via, last4 = "caller_id", str(call.data["captured_last4"][captured.index(account_id)])
    else:
        via, last4 = "keyed", ctx.account().number[-4:]
    ctx.event("account_identified", known=True, via=via, account_last4=last4)
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
    ids = [int(i) for i in ctx.call.data.get("choices", [])]
    position = int(digits) - 1 if digits.isdigit() else -1
    if not 0 <= position < len(ids):
        return Go(ctx.call.state, notice=Phrase("invalid_entry"), miss=True)
    return select_account(ctx, ids[position])


select_captured = Action(_select_captured, ("choose_account", *IDENTIFIED_STATES))


def _account_entered(ctx: Ctx, digits: str) -> Go:
    if not (digits.isdigit() and 4 <= len(digits) <= 20):
        tries = int(ctx.call.data.get("account_tries", 0)) + 1
        ctx.call.data["account_tries"] = tries
        ctx.event("account_entry_invalid", success=False, tries=tries, entry_length=len(digits))
        if tries >= ctx.config.account_entry_tries:
            return Go("account_not_found", outcome="unidentified")
        return Go("enter_account", notice=Phrase("account_invalid"))
    account = ctx.uow.accounts.by_number(digits)
    if account is not None:
        ctx.remember_account(account)
    return select_account(ctx, account.id if account else None)


account_entered = Action(_account_entered, ("enter_account", "account_not_found", *IDENTIFIED_STATES))


def _back_to_capture(ctx: Ctx, _digits: str) -> Go:
    """``*`` at keyed entry: back to the caller ID's accounts, when there are some."""
    if not ctx.call.data.get("choices"):
        return Go("enter_account", notice=Phrase("invalid_entry"), miss=True)
    done = tuple(int(i) for i in ctx.call.data.get("done_accounts", []))
    return offer_accounts(ctx, exclude=done)


back_to_capture = Action(_back_to_capture, FOUND_STATES)


def _forget_account(ctx: Ctx) -> None:
    call = ctx.call
    call.account_id = None
    call.verified = False
    for key in FORGOTTEN:
        call.data.pop(key, None)


def _switch_account(ctx: Ctx, _digits: str) -> Go:
    """A different account number, keyed (``*`` at a PIN step, ``2`` at the referral)."""
    _forget_account(ctx)
    return Go("enter_account")


switch_account = Action(_switch_account, ("enter_account",))


def _another_account(ctx: Ctx, _digits: str) -> Go:
    """Key 5 (contract 2.11): pay another account in the same call. The caller ID's
    other accounts, or keyed entry; that account's own PIN. The one just handled is
    neither offered again nor said again."""
    call = ctx.call
    if call.account_id is not None:
        done = [int(i) for i in call.data.get("done_accounts", [])]
        if call.account_id not in done:
            done.append(call.account_id)
        call.data["done_accounts"] = done
    ctx.event("another_account_chosen", accounts_done=len(call.data.get("done_accounts", [])))
    for key in ("paid", "method", "amount_cents", "pay_full", "save_card"):
        call.data.pop(key, None)
    _forget_account(ctx)
    return offer_accounts(ctx, exclude=tuple(int(i) for i in call.data.get("done_accounts", [])))


another_account = Action(_another_account, FOUND_STATES)
