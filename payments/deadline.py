"""A deadline for the processor calls of one webhook step.

Twilio waits 15 s for a webhook; a confirm step may make several processor calls
(customer, charge, retries, lookup), each with its own timeouts. Rather than hoping
their sum stays short, the step sets one deadline and the Stripe adapter's HTTP client
fits every try, every retry pause and every timeout inside what is left of it: a try
that would start after the deadline is not sent (so it is surely "not charged"), and a
retry that cannot fit is not made. The count is in docs/decisions/0003.

The deadline lives in a ``ContextVar``: it belongs to the request being served, in
whatever thread or task serves it. Nested deadlines only ever shorten it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["processor_deadline", "remaining_seconds"]

_ENDS: ContextVar[float | None] = ContextVar("securepay_processor_deadline", default=None)


@contextmanager
def processor_deadline(seconds: float) -> Iterator[None]:
    """Processor calls inside the block end within ``seconds`` (or the enclosing
    deadline, if sooner)."""
    if seconds < 0:
        raise ValueError("a deadline is a non-negative number of seconds")
    ends = time.monotonic() + seconds
    outer = _ENDS.get()
    token = _ENDS.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _ENDS.reset(token)


def remaining_seconds() -> float | None:
    """Seconds left before the current deadline (never negative); None without one."""
    ends = _ENDS.get()
    return None if ends is None else max(0.0, ends - time.monotonic())
