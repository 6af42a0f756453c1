"""Checking a PIN or the SSN/tax-ID last four, in a fixed order.

1. throttle: the caller number's hourly budget, then the account's failure budget,
   both taken atomically *before* verifying (two calls cannot share the last try);
2. verify in constant time (an unknown account or a locked one costs a dummy hash,
   so "no such account", "wrong" and "locked" take about the same time);
3. rehash a good PIN whose stored parameters are out of date;
4. a failure keeps its reservation and locks the account once the budget is spent.

The caller hears the same words for every failure; only the trail tells them apart.
"""

from __future__ import annotations

from datetime import timedelta
from enum import Enum
from typing import Literal

from ivr.flows.context import Ctx

Secret = Literal["pin", "ssn"]


class Check(Enum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"  # the account is locked now (by this failure or before)
    THROTTLED = "throttled"  # this caller number has used its hourly budget


def check_secret(ctx: Ctx, kind: Secret, entry: str) -> Check:
    """Verify ``entry`` against the call's account; record the attempt in the trail."""
    creds = ctx.uow.credentials
    config = ctx.config
    now = ctx.clock.now()
    account_id = ctx.call.account_id
    caller = ctx.caller
    if caller and not creds.reserve_caller_attempt(
        caller, now, config.caller_failures_per_hour, timedelta(hours=1)
    ):
        ctx.hasher.dummy_verify()
        ctx.event(f"{kind}_rejected", success=False, reason="caller_throttled", entry_length=len(entry))
        return Check.THROTTLED
    if account_id is None:
        ctx.hasher.dummy_verify()
        ctx.event(f"{kind}_rejected", success=False, reason="unknown_account", entry_length=len(entry))
        return Check.WRONG
    stored = _stored(ctx, kind, account_id)
    if not creds.reserve_attempt(
        account_id, now, config.pin_failures_per_account, config.pin_failure_window
    ):
        ctx.hasher.dummy_verify()
        creds.lock_if_exhausted(account_id, now, config.pin_failures_per_account)
        ctx.event(f"{kind}_rejected", success=False, reason="locked", entry_length=len(entry))
        return Check.LOCKED
    if stored is not None and ctx.hasher.verify(stored, entry):
        creds.release_attempt(account_id)
        if caller:
            creds.release_caller_attempt(caller)
        if kind == "pin" and ctx.hasher.needs_rehash(stored):
            creds.replace_hash(account_id, ctx.hasher.hash(entry))
            ctx.event("pin_rehashed")
        ctx.event(f"{kind}_verified", entry_length=len(entry))
        return Check.OK
    if stored is None:
        ctx.hasher.dummy_verify()
    ctx.event(f"{kind}_rejected", success=False, reason="mismatch", entry_length=len(entry))
    if creds.lock_if_exhausted(account_id, now, config.pin_failures_per_account):
        ctx.event("pin_locked", success=False, failures=config.pin_failures_per_account)
        return Check.LOCKED
    return Check.WRONG


def _stored(ctx: Ctx, kind: Secret, account_id: int) -> str | None:
    credential = ctx.uow.credentials.get(account_id)
    return credential.pin_hash if kind == "pin" else credential.ssn_hash
