"""PIN and SSN-last-four hashing: Argon2id over an HMAC-SHA256 keyed with the pepper.

The pepper lives outside the database (``SECUREPAY_PEPPER``), so a stolen database alone
does not let anyone try the 10,000 possible PINs offline. Argon2 parameters are stored
in each hash (PHC string), so raising them later rehashes on the next good entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ivr.flows.ports import PinHasher

# Every Argon2 computation of a process runs on one thread of its own. Each takes a core
# and 19 MiB: more at once would only queue on the cores, and each request thread's
# malloc arena would keep its own 19 MiB (measured: 179 MB per gunicorn worker with 4
# threads, against 118 MB with one hashing thread).
_ARGON2_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
T = TypeVar("T")


def _on_argon2_thread(work: Callable[[], T]) -> T:
    return _ARGON2_THREAD.submit(work).result()

# OWASP Password Storage cheat sheet minimum for Argon2id: m=19 MiB, t=2, p=1.
OWASP_MEMORY_KIB = 19 * 1024
OWASP_TIME_COST = 2
OWASP_PARALLELISM = 1


class Argon2PinHasher:
    """Implements ``ivr.flows.ports.PinHasher``."""

    def __init__(
        self,
        pepper: bytes,
        *,
        time_cost: int = OWASP_TIME_COST,
        memory_cost: int = OWASP_MEMORY_KIB,
        parallelism: int = OWASP_PARALLELISM,
    ) -> None:
        if len(pepper) < 16:
            raise ValueError("the pepper must be at least 16 bytes")
        self._pepper = pepper
        self._argon2 = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        self._dummy = self._argon2.hash(self._keyed("dummy"))

    def _keyed(self, secret: str) -> bytes:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).digest()

    def hash(self, secret: str) -> str:
        keyed = self._keyed(secret)
        return _on_argon2_thread(lambda: self._argon2.hash(keyed))

    def verify(self, stored: str, secret: str) -> bool:
        keyed = self._keyed(secret)
        try:
            return _on_argon2_thread(lambda: self._argon2.verify(stored, keyed))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._argon2.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def dummy_verify(self) -> None:
        self.verify(self._dummy, "not-a-pin")

    def digest(self, secret: str, context: str) -> str:
        mac = hmac.new(self._pepper, f"{context}\x00{secret}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


class DeferredPinHasher:
    """Implements ``ivr.flows.ports.PinHasher``, built on first use (SECURITY 19a).

    A command that hashes nothing (``pin status``, ``calls``, ``audit``) never builds the
    real hasher, so it runs without the pepper; one that does (``import accounts``)
    fails then, in one line naming ``SECUREPAY_PEPPER`` (``build`` raises it).
    """

    def __init__(self, build: Callable[[], PinHasher]) -> None:
        self._build = build
        self._built: PinHasher | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._built is not None

    def build(self) -> None:
        """Build the hasher now (the web app, at start: not on the first caller's PIN)."""
        self._hasher()

    def _hasher(self) -> PinHasher:
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build()
        return self._built

    def hash(self, secret: str) -> str:
        return self._hasher().hash(secret)

    def verify(self, stored: str, secret: str) -> bool:
        return self._hasher().verify(stored, secret)

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher().needs_rehash(stored)

    def dummy_verify(self) -> None:
        self._hasher().dummy_verify()

    def digest(self, secret: str, context: str) -> str:
        return self._hasher().digest(secret, context)
