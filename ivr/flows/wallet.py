"""The account's methods on file as the payment steps see them, read once per request.

One request can ask several times: the amount step lists the methods to decide where
to go, then says them; the one-press `1` checks its method is still on file, and the
charge then needs that method's mandate and the account's processor customer. The
store's ``wallet`` answers all of it in one statement, and the answer is kept on the
request's ``Ctx`` (``ctx.memo``) for the rest of the request, across the confirm step's
two transactions too: what the charge takes from it does not change once written (a
processor customer, once recorded, stays; a stored method's id, kind and mandate are
never rewritten), and what can change (a method added or removed meanwhile) is checked
again where it matters, under the account's lock (``StoredMethods.add``). A write
through the flow forgets it (``forget_wallet``).
"""

from __future__ import annotations

from ivr.flows.context import Ctx
from ivr.flows.ports import Wallet

__all__ = ["account_id", "forget_wallet", "wallet"]

_KEY = "wallet"


def account_id(ctx: Ctx) -> int:
    """The id of the account this call is about, without reading the account."""
    selected = ctx.call.account_id
    if selected is None:
        raise LookupError("no account is selected on this call")
    return selected


def wallet(ctx: Ctx) -> Wallet:
    """The selected account's methods, customer and last paid method (read once)."""
    selected = account_id(ctx)
    kept = ctx.memo.get(_KEY)
    if isinstance(kept, Wallet) and kept.account_id == selected:
        return kept
    found = ctx.uow.methods.wallet(selected)
    ctx.memo[_KEY] = found
    return found


def forget_wallet(ctx: Ctx) -> None:
    """After a write to the account's methods or customer: read it again when next asked."""
    ctx.memo.pop(_KEY, None)
