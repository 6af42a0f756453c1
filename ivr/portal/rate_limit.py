"""Flood control for the portal API: token buckets per bearer token and per client address.

Only ``/api`` paths are limited. The Twilio webhooks (``/ivr/*``) never are: Twilio
counts any 4xx as a failed call, so a real surge is load to carry, and a forged flood
is refused by the signature check, which costs no database work.

A request takes one token from its client address's bucket and one from its bearer
token's bucket; when either is empty it is answered 429 with ``Retry-After`` (whole
seconds until a token is back), in the API's JSON error shape. It runs before the
bearer check, so a flood of wrong tokens is slowed too; the token's bucket is keyed by
a digest of what was presented, never by the token itself.

The buckets live in this process's memory: with several workers each keeps its own,
so the ceiling a client meets is the worker count times the rate. That is the intent
(a guard against a runaway script or a brute-force loop, not an accounting of use).
The client address is ``request.remote_addr``: behind a proxy the app must be wrapped
in Werkzeug's ``ProxyFix`` or every client shares the proxy's bucket.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from flask import Response, current_app, request

from ivr import metrics
from ivr.portal.errors import error_response, is_api_path
from ivr.services import current_services

# A person in the portal makes a request every few seconds; the portal's own server
# (one bearer token for all its members) may batch a few dozen. 20 a second with a burst
# of 40 carries that with room, and stops a loop at once.
RATE_PER_SECOND = 20.0
BURST = 40
# Buckets kept at most, the least recently used dropped first: a flood of made-up tokens
# or addresses cannot grow memory without bound (a dropped bucket comes back full).
MAX_BUCKETS = 10_000
EXTENSION_KEY = "securepay.portal_rate_limit"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by string; thread-safe. ``clock`` is monotonic seconds."""

    def __init__(
        self,
        rate_per_second: float = RATE_PER_SECOND,
        burst: int = BURST,
        *,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.rate = rate_per_second
        self.burst = burst
        self._max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, *keys: str) -> float:
        """Take one token from each key's bucket, or none when any is empty.

        Returns 0.0 when taken, else the seconds until every bucket holds a token again.
        """
        with self._lock:
            now = self._clock()
            buckets = [self._bucket(key, now) for key in keys]
            short = [bucket for bucket in buckets if bucket.tokens < 1.0]
            if short:
                return max((1.0 - bucket.tokens) / self.rate for bucket in short)
            for bucket in buckets:
                bucket.tokens -= 1.0
            return 0.0

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_buckets:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        return bucket


def limiter() -> RateLimiter:
    """This app's limiter, made with the module's defaults on first use. A test (or a
    future setting) may put its own in ``app.extensions[EXTENSION_KEY]`` first."""
    extensions = current_app.extensions
    found = extensions.get(EXTENSION_KEY)
    if not isinstance(found, RateLimiter):
        found = extensions.setdefault(EXTENSION_KEY, RateLimiter())
    return found


def _token_key() -> str:
    header = request.headers.get("Authorization", "")
    digest = hashlib.sha256(header.strip().encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"token:{digest}"


def limit_portal_requests() -> Response | None:
    """``before_app_request`` hook: 429 for an ``/api`` request over its budget."""
    if not is_api_path(request.path) or current_services().settings.portal_token is None:
        return None  # not the API, or the API is off (its 404 must not tell otherwise)
    wait = limiter().take(f"addr:{request.remote_addr or 'unknown'}", _token_key())
    if wait <= 0.0:
        return None
    metrics.portal_rate_limited()
    return error_response(
        429,
        "rate_limited",
        "too many requests; slow down and retry after the number of seconds in Retry-After",
        {"Retry-After": str(max(1, math.ceil(wait)))},
    )
