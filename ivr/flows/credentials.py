"""Checking a PIN or the SSN/tax-ID last four, in a fixed order.

1. throttle: the caller number's hourly budget, then the account's failure budget,
   both taken atomically *before* verifying (two calls cannot share the last try);
   a withheld, anonymous or unparseable caller ID is no way around the first: all such
   calls share one budget (``WITHHELD_CALLER``, ``withheld_failures_per_hour``);
2. verify in constant time (an unknown account or a locked one costs a dummy hash,
   so "no such account", "wrong" and "locked" take about the same time);
3. rehash a good PIN whose stored parameters are out of date;
4. a failure keeps its reservation and locks the account once the budget is spent.

Every failure is also counted line-wide (``LINE``), for guessers who spoof a new caller
ID every call (SECURITY 7a, 9a). When the line's failures in the hour reach
``line_failures_per_hour``, the alarm trips: a warning ``pin_failure_alarm_raised`` in
the log and a ``pin_failure_alarm`` event in the trail (once per window), and until the
hour's window closes every call gets one PIN or SSN try instead of
``pin_failures_per_call`` (a wrong entry ends the call): each guess then costs the
guesser a whole call, while a member who types the right PIN is not hindered. Each
failure during the alarm carries ``line_failures`` (the count) in its trail event.

The caller hears the same words for every failure; only the trail tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any, Literal

import structlog

from ivr.flows.context import Ctx
from ivr.flows.ports import PinOrigin

Secret = Literal["pin", "ssn"]

log = structlog.get_logger("securepay.security")

HOUR = timedelta(hours=1)
# Throttle keys beside the E.164 caller numbers (which start with "+": no clash).
WITHHELD_CALLER = "withheld"  # every withheld, anonymous or invalid caller ID
LINE = "line"  # every failure on the line, for the alarm


class Check(Enum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"  # the account is locked now (by this failure or before)
    THROTTLED = "throttled"  # this caller number has used its hourly budget


@dataclass(frozen=True)
class Checked:
    """How a check went, and the origin of the PIN on file (``none`` before the verify)."""

    check: Check
    origin: PinOrigin = "none"


def check_secret(ctx: Ctx, kind: Secret, entry: str) -> Checked:
    """Verify ``entry`` against the call's account; record the attempt in the trail.

    The account's try is reserved and its credential read in one statement
    (``Credentials.reserve_attempt``): the hash verified is the one the reservation saw.
    """
    creds = ctx.uow.credentials
    config = ctx.config
    now = ctx.clock.now()
    account_id = ctx.call.account_id
    caller = ctx.caller
    throttle_key, throttle_limit = (
        (caller, config.caller_failures_per_hour) if caller
        else (WITHHELD_CALLER, config.withheld_failures_per_hour)
    )
    if not creds.reserve_caller_attempt(throttle_key, now, throttle_limit, HOUR):
        ctx.hasher.dummy_verify()
        _rejected(ctx, kind, entry, "caller_throttled")
        return Checked(Check.THROTTLED)
    if account_id is None:
        ctx.hasher.dummy_verify()
        _rejected(ctx, kind, entry, "unknown_account")
        return Checked(Check.WRONG)
    credential = creds.reserve_attempt(
        account_id, now, config.pin_failures_per_account, config.pin_failure_window
    )
    if credential is None:
        ctx.hasher.dummy_verify()
        creds.lock_if_exhausted(account_id, now, config.pin_failures_per_account)
        _rejected(ctx, kind, entry, "locked")
        return Checked(Check.LOCKED)
    stored = credential.pin_hash if kind == "pin" else credential.ssn_hash
    if stored is not None and ctx.hasher.verify(stored, entry):
        creds.release_attempt(account_id)
        creds.release_caller_attempt(throttle_key)
        if kind == "pin" and ctx.hasher.needs_rehash(stored):
            creds.replace_hash(account_id, ctx.hasher.hash(entry))
            ctx.event("pin_rehashed")
        ctx.event(f"{kind}_verified", entry_length=len(entry))
        return Checked(Check.OK, credential.origin)
    if stored is None:
        ctx.hasher.dummy_verify()
    _rejected(ctx, kind, entry, "mismatch")
    if creds.lock_if_exhausted(account_id, now, config.pin_failures_per_account):
        ctx.event("pin_locked", success=False, failures=config.pin_failures_per_account)
        return Checked(Check.LOCKED)
    return Checked(Check.WRONG)


def _rejected(ctx: Ctx, kind: Secret, entry: str, reason: str) -> None:
    """Count a failure line-wide (the alarm), then put it in the trail."""
    limit = ctx.config.line_failures_per_hour
    count = ctx.uow.credentials.count_failure(LINE, ctx.clock.now(), HOUR)
    detail: dict[str, Any] = {"reason": reason, "entry_length": len(entry)}
    if count >= limit:
        ctx.call.data["line_alarm"] = True  # this call: one try (``ivr.flows.pin``)
        detail["line_failures"] = count
    if count == limit:
        log.warning(
            "pin_failure_alarm_raised", failures=count, limit=limit, window_minutes=60,
            effect="one PIN or SSN try per call until the window closes",
        )
        ctx.event("pin_failure_alarm", success=False, failures=count, limit=limit, window_minutes=60)
    ctx.event(f"{kind}_rejected", success=False, **detail)

