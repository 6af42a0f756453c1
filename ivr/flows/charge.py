"""The confirm step: one charge per confirmation, whatever Twilio or the network repeats.

1. The attempt row (unique per call and confirm screen) is written and COMMITTED before
   the processor is called; its id is the processor's idempotency key. A replay's
   insert meets the unique key and writes nothing (one statement either way).
2. The call and the account are locked again (charges for one account are serialized);
   a request that finds the call moved on (a replay) answers where the call is. Under
   the lock the attempt is read once: only that read says whether it is still pending.
3. An attempt found pending from an earlier request (a crash, a Twilio retry) is first
   looked up at the processor, and only charged with the SAME key if not found there.
4. An unknown outcome is looked up once more; if still unknown it is recorded as such,
   and no further charge is offered on this call (reconcile settles it later).
5. The outcome and the processor's id are committed before the caller hears them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.flows.context import Ctx
from ivr.flows.machine import Action, Go, Phrase
from ivr.flows.payment import MENU, to_methods
from ivr.flows.ports import MAX_STORED_METHODS, AttemptView, MethodNotStored, MethodRef
from ivr.flows.wallet import account_id, forget_wallet, wallet
from payments.charge_outcomes import Declined, NotCharged, Outcome, Unknown
from payments.deadline import processor_deadline
from payments.gateway import (
    ActionRequired,
    CardDeclined,
    ChargeResult,
    InvalidPaymentMethod,
    OutcomeUnknown,
    PaymentError,
    PaymentGateway,
    PaymentUnsettled,
    ProcessorRejected,
    ProcessorUnavailable,
    customer_idempotency_key,
)

CURRENCY = "usd"
# The processor's share of a confirm step (Twilio waits 15 s for the answer), and the part
# of it kept for the lookup after an unknown outcome: counted in docs/decisions/0003.
CONFIRM_PROCESSOR_SECONDS = 10.0
LOOKUP_RESERVE_SECONDS = 3.0




def _confirm_payment(ctx: Ctx, _digits: str) -> Go:
    return charge_confirmed(ctx)


def charge_confirmed(ctx: Ctx) -> Go:
    """Charge what the caller just said yes to (``data``: amount, method, ``confirm_no``):
    the confirm step's `1`, and the one-press offer's (``fast_lane``)."""
    gateway = ctx.gateway
    if gateway is None:
        return Go(MENU, notice=Phrase("payments_unavailable"))
    call = ctx.call
    data = call.data
    ledger = ctx.uow.ledger
    selected = account_id(ctx)
    method = MethodRef(data["method"]["processor_id"], data["method"]["brand"], data["method"]["last4"])
    attempt_no = int(data["confirm_no"])
    opened = ledger.try_open_attempt(
        call_sid=call.call_sid,
        attempt_no=attempt_no,
        account_id=selected,
        amount_cents=int(data["amount_cents"]),
        method=method,
        caller=ctx.caller,
        now=ctx.clock.now(),
    )
    if opened is not None:
        ctx.event("payment_attempt_opened", attempt_no=attempt_no, amount_cents=int(data["amount_cents"]))
        ctx.checkpoint()  # durable before the processor hears of it; may raise CallMoved
    # Under the lock, the attempt's one read: a request that found it pending (a replay,
    # a retry after a crash) may have charged and settled it since it was written.
    ledger.lock_account(selected)
    attempt = ledger.attempt(call.call_sid, attempt_no)
    if attempt is None:
        raise RuntimeError("the payment attempt vanished")
    if attempt.status != "pending":
        return _after(ctx, attempt, _settled_outcome(attempt))
    # Read again under the lock: a payment taken meanwhile (the portal, another call)
    # changed the balance, and "the full balance" must not charge the old one.
    if data.get("pay_full") and ctx.refresh_account().balance_cents != attempt.amount_cents:
        return _after(ctx, attempt, NotCharged("balance_changed"))
    with processor_deadline(CONFIRM_PROCESSOR_SECONDS):
        outcome = _charge(ctx, gateway, attempt, resumed=opened is None)
    return _after(ctx, attempt, outcome)


@dataclass(frozen=True)
class _Plan:
    """With which processor customer the charge is made, and whether the processor is to
    save the method on it (https://docs.stripe.com/payments/save-during-payment)."""

    account_id: int
    customer_id: str | None
    save: bool = False
    mandate_id: str | None = None  # a stored bank account's debit authorization


def _charge(ctx: Ctx, gateway: PaymentGateway, attempt: AttemptView, *, resumed: bool) -> Outcome:
    """Customer, lookup of a resumed attempt and the charge share the step's deadline
    less the time kept for the lookup after an unknown outcome."""
    reserve = min(LOOKUP_RESERVE_SECONDS, CONFIRM_PROCESSOR_SECONDS / 3)
    with processor_deadline(CONFIRM_PROCESSOR_SECONDS - reserve):
        plan = _plan(ctx, gateway, attempt.account_id)
        if resumed:
            found = _look_up(gateway, attempt, plan.customer_id)
            if not isinstance(found, Unknown) or found.reason != "not_found":
                return _kept(ctx, gateway, plan, found)
        try:
            return _kept(ctx, gateway, plan, _send_charge(gateway, attempt, plan))
        except OutcomeUnknown as exc:
            unknown = exc
    if isinstance(unknown, PaymentUnsettled):  # held by the processor, neither paid nor declined
        return Unknown(unknown.status, processor_id=unknown.processor_id)
    # A 5xx, an idempotency error, no answer after sending: look it up, in the time kept.
    found = _look_up(gateway, attempt, plan.customer_id)
    return Unknown("no_answer") if _not_found(found) else _kept(ctx, gateway, plan, found)


def _send_charge(gateway: PaymentGateway, attempt: AttemptView, plan: _Plan) -> Outcome:
    """The charge itself; raises only ``OutcomeUnknown`` (and ``PaymentUnsettled``)."""
    try:
        return gateway.charge(
            amount_cents=attempt.amount_cents,
            currency=CURRENCY,
            payment_method_id=attempt.method.processor_id,
            customer_id=plan.customer_id,
            idempotency_key=attempt.id,
            metadata={"attempt_id": attempt.id, "call_sid": attempt.call_sid},
            save_for_future=plan.save,
            mandate_id=plan.mandate_id,
        )
    except (CardDeclined, ActionRequired, InvalidPaymentMethod) as exc:
        return Declined(_code(exc))
    except ProcessorUnavailable:
        # No try of this request reached the processor (refused, rate limited, or the
        # deadline came first), and a resumed attempt was looked up first: surely not
        # charged. A lookup now would only fail the same way and say "unknown".
        return NotCharged("processor_unavailable")
    except OutcomeUnknown:
        raise
    except PaymentError as exc:  # ProcessorRejected: our request was refused outright
        return NotCharged(type(exc).__name__)


def _look_up(gateway: PaymentGateway, attempt: AttemptView, customer_id: str | None) -> Outcome:
    try:
        found = gateway.find_charge(attempt.id, customer_id=customer_id, since=attempt.opened_at)
    except (CardDeclined, ActionRequired) as exc:
        return Declined(_code(exc))
    except PaymentUnsettled as exc:
        return Unknown(exc.status, processor_id=exc.processor_id)
    except PaymentError:
        return Unknown("lookup_failed")
    return found if found is not None else Unknown("not_found")


def _not_found(outcome: Outcome) -> bool:
    return isinstance(outcome, Unknown) and outcome.reason == "not_found"


def _plan(ctx: Ctx, gateway: PaymentGateway, account: int) -> _Plan:
    """The customer to charge with, and whether to save the method on it.

    - A stored method: the account's customer.
    - A new card ``<Pay>`` already put on a customer (Twilio's ``ProfileId``): that
      customer, always (Stripe charges an attached method only with its customer). Saved
      when the member asked and the account has no other customer: it becomes the
      account's, rather than the card going on a second customer.
    - A new card to save: the account's customer, made first if there is none. When
      making it fails the payment goes on unsaved (issue 8, item 14).
    - A new card not to save: no customer.

    The methods and the customer come from the request's one read (``wallet``), which
    the one-press `1` made already in the first transaction: a customer once recorded
    stays, and a stored method's mandate is never rewritten.
    """
    method = ctx.call.data["method"]
    methods = ctx.uow.methods
    if method.get("stored"):
        on_file = wallet(ctx)
        chosen = [m for m in on_file.methods if m.processor_id == method["processor_id"]]
        mandate = chosen[0].mandate_id if chosen else None
        return _Plan(account, on_file.customer_id, mandate_id=mandate)
    wanted = bool(ctx.call.data.get("save_card"))
    profile = method.get("profile_id")
    if not wanted and isinstance(profile, str):
        return _Plan(account, profile)
    if not wanted:
        return _Plan(account, None)
    on_file = wallet(ctx)
    if len(on_file.methods) >= MAX_STORED_METHODS:
        ctx.event("method_not_saved", success=False, reason="TooManyMethods")
        return _Plan(account, profile if isinstance(profile, str) else None)
    if isinstance(profile, str):
        recorded = on_file.customer_id or methods.set_customer_id(account, profile)
        forget_wallet(ctx)
        if recorded != profile:
            ctx.event("method_not_saved", success=False, reason="card_on_another_customer")
        return _Plan(account, profile, save=recorded == profile)
    customer_id = on_file.customer_id
    if customer_id is None:
        number = ctx.account().number
        try:
            created = gateway.create_customer(number, idempotency_key=customer_idempotency_key(number))
        except (ProcessorUnavailable, OutcomeUnknown, ProcessorRejected) as exc:
            ctx.event("method_not_saved", success=False, reason=type(exc).__name__)
            return _Plan(account, None)
        customer_id = methods.set_customer_id(account, created)
        forget_wallet(ctx)
    return _Plan(account, customer_id, save=True)


def _kept(ctx: Ctx, gateway: PaymentGateway, plan: _Plan, outcome: Outcome) -> Outcome:
    """After a payment that saved its method at the processor, put the method on file
    (from the processor's answer; asked for it when the answer did not describe it)."""
    if not plan.save or not isinstance(outcome, ChargeResult):
        return outcome
    info = outcome.method
    try:
        if info is None:
            info = gateway.describe_method(ctx.call.data["method"]["processor_id"])
        ctx.uow.methods.add(
            plan.account_id, info, created_via="ivr", now=ctx.clock.now(), limit=MAX_STORED_METHODS
        )
        forget_wallet(ctx)
    except (MethodNotStored, PaymentError) as exc:  # the payment stands either way
        ctx.event("method_not_saved", success=False, reason=type(exc).__name__)
    else:
        ctx.event("method_saved", kind=info.kind)
    return outcome


def _code(exc: PaymentError) -> str:
    if isinstance(exc, CardDeclined):
        return exc.code or "card_declined"
    if isinstance(exc, ActionRequired):
        return "authentication_required"
    return "invalid_payment_method"


def _settled_outcome(attempt: AttemptView) -> Outcome:
    if attempt.status in ("succeeded", "processing"):
        return ChargeResult(attempt.status, attempt.processor_id or "", None, attempt.amount_cents)
    if attempt.status == "declined":
        return Declined("card_declined")
    if attempt.status == "unknown":
        return Unknown("earlier")
    return NotCharged("earlier")


def _after(ctx: Ctx, attempt: AttemptView, outcome: Outcome) -> Go:
    """Record the outcome (committed with this step, before the caller hears it)."""
    ledger = ctx.uow.ledger
    now = ctx.clock.now()
    call = ctx.call
    if isinstance(outcome, ChargeResult):
        if attempt.status == "pending":
            ledger.settle(attempt.id, status=outcome.status, processor_id=outcome.processor_id, now=now)
        payment = ledger.record_payment(
            attempt, processor_id=outcome.processor_id, status=outcome.status, now=now
        )
        call.outcome = "paid"
        call.data["paid"] = {
            "amount_cents": attempt.amount_cents,
            "confirmation": payment.confirmation,
            "payment_id": payment.id,
        }
        ctx.event("payment_succeeded", processor_id=outcome.processor_id, amount_cents=attempt.amount_cents)
        notifier = ctx.notifier
        ctx.after_commit.append(lambda: notifier.payment_taken(payment.id))
        return Go("payment_done")
    if isinstance(outcome, Declined):
        if attempt.status == "pending":
            ledger.settle(attempt.id, status="declined", decline_code=outcome.code, now=now)
        if call.outcome != "paid":
            call.outcome = "declined"
        ctx.event("payment_declined", success=False, decline_code=outcome.code)
        return Go("payment_declined")
    if isinstance(outcome, Unknown):
        if attempt.status == "pending":
            ledger.settle(attempt.id, status="unknown", processor_id=outcome.processor_id, now=now)
        ctx.event("payment_outcome_unknown", success=False, reason=outcome.reason)
        return Go("payment_unknown", outcome="payment-unknown")
    if attempt.status == "pending":
        ledger.settle(attempt.id, status="failed", now=now)
    ctx.event("payment_not_charged", success=False, reason=outcome.reason)
    notice = "balance_changed" if outcome.reason == "balance_changed" else "payment_not_processed"
    return Go(MENU, notice=Phrase(notice))


confirm_payment = Action(
    _confirm_payment, ("payment_done", "payment_declined", "payment_unknown", MENU)
)


def _cancel_payment(ctx: Ctx, _digits: str) -> Go:
    ctx.event("payment_cancelled")
    return Go(MENU, notice=Phrase("payment_cancelled"))


cancel_payment = Action(_cancel_payment, (MENU,))


def _another_method(ctx: Ctx, _digits: str) -> Go:
    return to_methods(ctx)


another_method = Action(_another_method, ("choose_method", "save_card", MENU))
