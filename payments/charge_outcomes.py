"""What came of asking the processor for a charge, besides the money taken
(``payments.gateway.ChargeResult``): one set of outcome types for the phone's confirm
step (``ivr.flows.charge``) and the Auto Pay drafts (``payments.autopay``).

Each is a case the caller treats differently: a decline is said to the member and
counts towards the cap; not charged is surely not charged (offer again); unknown may
have been charged (never charged again, reconcile settles it); deferred is not known to
be charged and safe to ask again with the same key (the next draft run does).
"""

from __future__ import annotations

from dataclasses import dataclass

from payments.gateway import ChargeResult

__all__ = ["Declined", "Deferred", "DraftOutcome", "NotCharged", "Outcome", "Unknown"]


@dataclass(frozen=True)
class Declined:
    code: str
    method_unusable: bool = False  # the processor no longer accepts the method at all


@dataclass(frozen=True)
class NotCharged:
    """The processor surely did not take the money (never reached, or refused our call)."""

    reason: str


@dataclass(frozen=True)
class Unknown:
    reason: str
    processor_id: str | None = None


@dataclass(frozen=True)
class Deferred:
    """Not known to be charged, and safe to ask again with the same key: the draft
    stays pending for the next run."""

    reason: str


Outcome = ChargeResult | Declined | NotCharged | Unknown  # the phone's confirm step
DraftOutcome = Outcome | Deferred  # an Auto Pay draft may also wait for the next run
