"""What happened on a simulated call: events in order, and every HTTP exchange.

Tests assert on these (``transcript.said_text()``, ``transcript.events``); the terminal
printer renders the same events live. Events are frozen values, so a test can compare
whole sequences: ``assert transcript.events[:2] == [Said(...), Gathered(...)]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Said:
    text: str
    language: str = "en-US"


@dataclass(frozen=True)
class Played:
    url: str


@dataclass(frozen=True)
class Paused:
    seconds: int


@dataclass(frozen=True)
class Gathered:
    """One ``<Gather>``: what the caller pressed and what Twilio posted.

    ``digits_posted`` is ``None`` when nothing was posted (no input, and no
    ``actionOnEmptyResult``), in which case ``url`` is ``None`` too.
    """

    keys: str
    digits_posted: str | None
    url: str | None


@dataclass(frozen=True)
class Redirected:
    url: str


@dataclass(frozen=True)
class Dialed:
    number: str
    status: str = "completed"  # the DialCallStatus played: busy, no-answer, ...


@dataclass(frozen=True)
class Paid:
    """A ``<Pay>``: the parameters the pay handler returned, as posted to the action (or,
    when Twilio went on to the next verb instead, as it would have posted them)."""

    params: dict[str, str]


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass(frozen=True)
class HungUp:
    by: Literal["ivr", "caller"]


@dataclass(frozen=True)
class Error:
    """The walk stopped: a bad reply, a verb we cannot play, a loop, a foreign host."""

    message: str
    url: str | None = None
    status: int | None = None


Event = Said | Played | Paused | Gathered | Redirected | Dialed | Paid | Rejected | HungUp | Error


@dataclass(frozen=True)
class Exchange:
    """One request the walker made, and the reply it got (status 0: unreachable)."""

    method: str
    url: str
    params: dict[str, str]
    status: int
    body: str


@dataclass
class CallTranscript:
    call_sid: str
    events: list[Event] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    final_status: str = "completed"

    def said_text(self) -> str:
        """Everything the IVR said, one ``<Say>`` per line."""
        return "\n".join(event.text for event in self.events if isinstance(event, Said))

    def last_said(self) -> str:
        """The last thing the IVR said ("" if it said nothing)."""
        said = [event.text for event in self.events if isinstance(event, Said)]
        return said[-1] if said else ""

    @property
    def errors(self) -> list[Error]:
        return [event for event in self.events if isinstance(event, Error)]

    @property
    def ok(self) -> bool:
        """True when the call ended as a call ends (hang-up, end of document), not on an error."""
        return not self.errors

    @property
    def hung_up_by(self) -> Literal["ivr", "caller"] | None:
        hangups = [event for event in self.events if isinstance(event, HungUp)]
        return hangups[-1].by if hangups else None

    @property
    def digits_posted(self) -> list[str]:
        """The ``Digits`` of every ``<Gather>`` that posted, in order."""
        return [
            event.digits_posted
            for event in self.events
            if isinstance(event, Gathered) and event.digits_posted is not None
        ]

    def check(self) -> CallTranscript:
        """Raise ``WalkFailed`` if the walk ended on an error; return self for chaining."""
        if self.errors:
            raise WalkFailed(self.errors)
        return self


class WalkFailed(AssertionError):
    """A walk expected to succeed ended on an error (raised by ``CallTranscript.check``)."""

    def __init__(self, errors: list[Error]) -> None:
        super().__init__("; ".join(f"{e.message} ({e.url}, status {e.status})" for e in errors))
        self.errors = errors
