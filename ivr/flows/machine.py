"""The building blocks of a call flow, and the checks made when a flow is defined.

A flow is a table of ``State`` rows. Each row names what the caller hears, what input
is gathered, and where each key, a timeout and a wrong key lead. Targets are state
names or ``Action``s: named functions that touch the world and return a ``Go``. Each
action declares the states it may lead to, so the whole graph is known at import time
and ``Flow`` refuses a table with an unknown target, an unreachable state or a state
from which no end can be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from ivr.flows.context import Ctx


class FlowDefinitionError(ValueError):
    """The flow table is inconsistent (found at import, never during a call)."""


@dataclass(frozen=True)
class Phrase:
    """A prompt key of the catalogs and the values for its placeholders."""

    key: str
    args: Mapping[str, str] = field(default_factory=dict)
    language: str | None = None  # None: the call's language


@dataclass(frozen=True)
class Go:
    """Where an action sends the call, with an optional notice said before the prompt."""

    state: str
    notice: Phrase | None = None
    outcome: str | None = None
    miss: bool = False  # a wrong entry: counted like a wrong key (three end the call)


Speaker = Callable[["Ctx"], list[Phrase]]


@dataclass(frozen=True)
class Action:
    """A named step that touches the world; ``leads_to`` lists every state it may return."""

    run: Callable[[Ctx, str], Go]
    leads_to: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.run.__name__


Target = str | Action
REPEAT = "@repeat"  # say the state again, without counting a miss (the `9` key)
MISS = "@miss"  # a wrong key or no input: counted; three in a row end the call


# Which configured wait a gather uses (SECUREPAY_*_TIMEOUT): the language prompt is
# short on purpose (no input there is a choice, not a miss).
Wait = Literal["language", "menu", "entry", "card"]


@dataclass(frozen=True)
class Menu:
    """One key press (numDigits=1); keys not in ``on`` are a miss."""

    kind: Literal["menu"] = "menu"
    wait: Wait = "menu"


@dataclass(frozen=True)
class Entry:
    """Several digits, ended by ``#`` or by reaching ``digits``; handed to ``on['entered']``.

    ``*`` alone and ``#`` alone may have rows of their own (``#`` alone: the full balance)."""

    digits: int | None = None
    max_digits: int = 20
    kind: Literal["entry"] = "entry"
    wait: Wait = "entry"


@dataclass(frozen=True)
class Say:
    """No input: the state is said, then the call ends."""

    kind: Literal["end"] = "end"


@dataclass(frozen=True)
class CardPrompt:
    """What Twilio says at one step of ``<Pay>`` (``step`` is its ``<Prompt for>``)."""

    step: str
    phrase: Phrase
    error_type: str | None = None


CardPrompts = Callable[["Ctx"], list[CardPrompt]]


@dataclass(frozen=True)
class Pay:
    """A card collected by Twilio ``<Pay>`` (tokenize only); its ``Result`` is handed to
    ``on['result']`` with the other callback parameters in ``ctx.payload``. ``prompts``
    are our own wording for Twilio's steps (else Twilio's voice says its own)."""

    kind: Literal["pay"] = "pay"
    max_attempts: int = 2
    wait: Wait = "card"
    prompts: CardPrompts | None = None


@dataclass(frozen=True)
class Transfer:
    """A ``<Dial>`` to member services; how it ended (``DialCallStatus``) is handed to
    ``on['result']``."""

    kind: Literal["dial"] = "dial"


@dataclass(frozen=True)
class Record:
    """The caller's voice recorded by Twilio ``<Record>`` (an oral authorization); the
    recording's sid and duration are handed to ``on['recorded']`` in ``ctx.payload``.
    Never a ``<Pay>`` state: card digits are not recorded."""

    kind: Literal["record"] = "record"
    max_length_seconds: int = 30
    timeout_seconds: int = 5


ENTERED = "entered"
PAY_RESULT = "result"
RECORDED = "recorded"
DIAL_RESULT = "result"


@dataclass(frozen=True)
class State:
    name: str
    speak: Speaker
    input: Menu | Entry | Say | Pay | Transfer | Record
    on: Mapping[str, Target] = field(default_factory=dict)
    timeout: Target = MISS
    invalid: Target = MISS
    guard: Literal["none", "identified", "may_set_pin", "verified"] = "none"
    # how the call ended: at an end state, or when the caller hangs up here (a transfer)
    outcome: str | None = None
    # Looked up each time the state is entered (before it is said), so that what the
    # caller hears and what a key then does are one thing: e.g. the one-press offer.
    enter: Callable[[Ctx], None] | None = None

    @property
    def is_end(self) -> bool:
        return isinstance(self.input, Say)

    def targets(self) -> Iterable[Target]:
        yield from self.on.values()
        yield self.timeout
        yield self.invalid


def _next_states(state: State) -> set[str]:
    found: set[str] = set()
    for target in state.targets():
        if isinstance(target, Action):
            found.update(target.leads_to)
        elif target in (REPEAT, MISS):
            continue
        else:
            found.add(target)
    return found


@dataclass(frozen=True)
class Flow:
    """A validated flow: ``Flow(start, states, on_misses)``."""

    start: str
    states: Mapping[str, State]
    too_many_misses: str
    # Run once as a call comes in, before the start state is said (Call Capture).
    on_call: Callable[[Ctx], None] | None = None

    @classmethod
    def define(
        cls,
        start: str,
        too_many_misses: str,
        states: Iterable[State],
        on_call: Callable[[Ctx], None] | None = None,
    ) -> Flow:
        table: dict[str, State] = {}
        for state in states:
            if state.name in table:
                raise FlowDefinitionError(f"state {state.name!r} is defined twice")
            table[state.name] = state
        flow = cls(start, table, too_many_misses, on_call)
        flow._validate()
        return flow

    def _validate(self) -> None:
        for required in (self.start, self.too_many_misses):
            if required not in self.states:
                raise FlowDefinitionError(f"state {required!r} is not defined")
        if not self.states[self.too_many_misses].is_end:
            raise FlowDefinitionError("the too-many-misses state must end the call")
        edges: dict[str, set[str]] = {}
        for name, state in self.states.items():
            nexts = _next_states(state)
            if not state.is_end:
                nexts.add(self.too_many_misses)
            unknown = nexts - self.states.keys()
            if unknown:
                raise FlowDefinitionError(f"state {name!r} leads to unknown {sorted(unknown)}")
            if state.is_end and (state.on or state.timeout != MISS or state.invalid != MISS):
                raise FlowDefinitionError(f"end state {name!r} takes no input")
            if isinstance(state.input, Pay | Transfer) and set(state.on) != {PAY_RESULT}:
                raise FlowDefinitionError(f"{state.input.kind} state {name!r} only takes 'result'")
            if isinstance(state.input, Record) and set(state.on) != {RECORDED}:
                raise FlowDefinitionError(f"record state {name!r} only takes 'recorded'")
            if isinstance(state.input, Entry) and set(state.on) - {ENTERED, "*", "#"}:
                raise FlowDefinitionError(f"entry state {name!r} only takes 'entered', '*' and '#'")
            if isinstance(state.input, Menu) and any(len(key) != 1 for key in state.on):
                raise FlowDefinitionError(f"menu state {name!r} has a key longer than one")
            if not state.is_end and not state.on:
                raise FlowDefinitionError(f"state {name!r} takes no key and does not end")
            edges[name] = nexts
        reachable = _closure({self.start}, edges)
        unreachable = self.states.keys() - reachable
        if unreachable:
            raise FlowDefinitionError(f"unreachable states: {sorted(unreachable)}")
        ends = {name for name, state in self.states.items() if state.is_end}
        reverse: dict[str, set[str]] = {name: set() for name in self.states}
        for name, nexts in edges.items():
            for nxt in nexts:
                reverse[nxt].add(name)
        can_end = _closure(ends, reverse)
        dead = self.states.keys() - can_end
        if dead:
            raise FlowDefinitionError(f"states that cannot reach an end: {sorted(dead)}")

    def __getitem__(self, name: str) -> State:
        return self.states[name]

    def prompt_keys(self) -> set[str]:
        """Every prompt key the states declare they may say (checked against the catalogs)."""
        keys: set[str] = set()
        for state in self.states.values():
            keys.update(getattr(state.speak, "prompt_keys", ()))
            if isinstance(state.input, Pay):
                keys.update(getattr(state.input.prompts, "prompt_keys", ()))
        return keys


def _closure(seeds: set[str], edges: Mapping[str, set[str]]) -> set[str]:
    seen = set(seeds)
    todo = list(seeds)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


SpeakerT = TypeVar("SpeakerT", bound=Callable[..., object])


def speaks(*keys: str) -> Callable[[SpeakerT], SpeakerT]:
    """Declare the prompt keys a speaker may say, so tests can check every catalog."""

    def mark(speaker: SpeakerT) -> SpeakerT:
        speaker.prompt_keys = keys  # type: ignore[attr-defined]
        return speaker

    return mark


def said(*keys: str) -> Speaker:
    """A speaker that says fixed prompt keys (the common case)."""

    @speaks(*keys)
    def speak(_ctx: Ctx) -> list[Phrase]:
        return [Phrase(key) for key in keys]

    return speak
