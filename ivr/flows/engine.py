"""Walks a ``Flow`` one webhook at a time.

Each request carries the step number it answers (``?n=``, signed by Twilio with the
URL). The engine only acts on the step the call is at: a replayed, reordered or stale
request changes nothing and hears the current prompt again; an ended call accepts
nothing more. State lives in the ``CallRecord``, so any worker can answer any step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ivr.flows.context import CallMoved, Ctx
from ivr.flows.machine import (
    DIAL_RESULT,
    ENTERED,
    MISS,
    PAY_RESULT,
    RECORDED,
    REPEAT,
    Action,
    Entry,
    Flow,
    Go,
    Menu,
    Pay,
    Phrase,
    Record,
    Say,
    State,
    Transfer,
)
from ivr.flows.reply import Dial, Gather, PayPrompt, PayRequest, RecordRequest, Reply, Speech
from ivr.flows.speech import say_card_types
from ivr.prompts import Catalog

MISSES_ALLOWED = 3


@dataclass(frozen=True)
class Input:
    """What Twilio posted for a step: ``digits`` is None on a timeout (no input).

    ``payload`` holds the non-secret parameters of a ``<Pay>`` callback (Result,
    PaymentToken, the masked card number, card type, expiry).
    """

    step: int
    digits: str | None
    payload: Mapping[str, str] = field(default_factory=dict)


class FlowEngine:
    def __init__(self, flow: Flow, catalog: Catalog) -> None:
        self.flow = flow
        self.catalog = catalog

    def start(self, ctx: Ctx) -> Reply:
        """The first webhook of a call: ``ctx.call`` is the call as announced, not yet
        stored. It enters the start state and is stored so, in one insert. A replayed
        first webhook (the call exists) keeps nothing of this request (its reads and
        trail events are rolled back) and hears the stored call's prompt again."""
        call = ctx.call
        call.state = self.flow.start
        call.step = 1
        ctx.event("call_started", to_number=call.to_number)
        if self.flow.on_call is not None:
            self.flow.on_call(ctx)
        call.data["notice"] = {"key": "welcome", "args": {"utility": ctx.config.utility_name}}
        if not ctx.uow.calls.create(call):
            ctx.uow.rollback()
            ctx.after_commit.clear()
            stored = ctx.uow.calls.load_for_update(call.call_sid)
            if stored is None:  # not insertable, yet not there: a database in trouble
                raise RuntimeError("the call could be neither stored nor loaded")
            ctx.call = stored
        return self.render(ctx)

    def handle(self, ctx: Ctx, received: Input) -> Reply:
        call = ctx.call
        if call.status == "ended":
            ctx.event("step_refused", success=False, reason="call_ended")
            return Reply(step=call.step, hangup=True)
        if received.step != call.step:
            ctx.event("step_refused", success=False, reason="stale_step", got=received.step)
            return self.render(ctx)
        state = self.flow[call.state]
        if not self._guard_holds(ctx, state):
            return self._refuse(ctx, "guard")
        target = self._target(state, received.digits)
        if target == REPEAT:
            self._enter(ctx, Go(call.state), same_state=True)
        elif target == MISS:
            notice = Phrase("invalid_entry") if received.digits else None
            self._miss(ctx, notice, "invalid_key" if received.digits else "no_input")
        elif isinstance(target, Action):
            ctx.payload = received.payload
            try:
                go = target.run(ctx, received.digits or "")
            except CallMoved as moved:
                # Another request for this call moved it on while this one waited (a
                # replay during a charge): answer where the call is, change nothing.
                if moved.current is not None:
                    ctx.call = moved.current
                ctx.event("step_superseded", success=False)
                return self.render(ctx)
            if go.state not in target.leads_to:
                raise RuntimeError(f"action {target.name} went to undeclared {go.state!r}")
            if go.miss:
                self._miss(ctx, go.notice, "invalid_entry")
            else:
                self._enter(ctx, go, same_state=go.state == state.name)
        else:
            self._enter(ctx, Go(target), same_state=target == state.name)
        return self.render(ctx)

    def end(self, ctx: Ctx, outcome: str) -> None:
        """The call ended (status callback): record the outcome if none was reached."""
        call = ctx.call
        if call.status == "ended":
            return
        state = self.flow.states.get(call.state)
        call.status = "ended"
        call.outcome = call.outcome or (state.outcome if state is not None else None) or outcome
        call.ended_at = ctx.clock.now()
        ctx.event("call_ended", outcome=call.outcome, last_state=call.state)

    # -- transitions -------------------------------------------------------------

    def _miss(self, ctx: Ctx, notice: Phrase | None, kind: str) -> None:
        """No input or a wrong key: say the state again; the third miss ends the call."""
        call = ctx.call
        misses = int(call.data.get("misses", 0)) + 1
        call.data["misses"] = misses
        if misses >= MISSES_ALLOWED:
            ctx.event("menu_abandoned", success=False, misses=misses)
            self._enter(ctx, Go(self.flow.too_many_misses))
        else:
            ctx.event("input_missed", success=False, kind=kind)
            self._enter(ctx, Go(call.state, notice=notice), same_state=True, keep_misses=True)

    def _target(self, state: State, digits: str | None) -> str | Action:
        if isinstance(state.input, Pay):
            return state.on[PAY_RESULT]
        if isinstance(state.input, Record):
            return state.on[RECORDED] if digits is not None else state.timeout
        if isinstance(state.input, Transfer):
            return state.on[DIAL_RESULT]
        if isinstance(state.input, Menu):
            if not digits:
                return state.timeout
            return state.on.get(digits, state.invalid)
        if digits in ("*", "#") and digits in state.on:
            return state.on[digits]
        if not digits:
            return state.timeout
        return state.on[ENTERED]

    def _enter(
        self, ctx: Ctx, go: Go, *, same_state: bool = False, keep_misses: bool = False
    ) -> None:
        call = ctx.call
        target = self.flow[go.state]
        if not self._guard_holds(ctx, target):
            raise RuntimeError(f"state {target.name!r} entered without {target.guard}")
        if not (same_state and keep_misses):
            call.data.pop("misses", None)
        if go.notice is not None:
            call.data["notice"] = {"key": go.notice.key, "args": dict(go.notice.args)}
        else:
            call.data.pop("notice", None)
        if not same_state:
            ctx.event("state_entered", to_state=target.name)
        call.state = target.name
        call.step += 1
        if target.enter is not None:
            target.enter(ctx)
        if target.is_end:
            call.status = "ended"
            call.outcome = go.outcome or target.outcome or call.outcome or "completed"
            call.ended_at = ctx.clock.now()
            ctx.event("call_ended", outcome=call.outcome, last_state=target.name)

    @staticmethod
    def _guard_holds(ctx: Ctx, state: State) -> bool:
        call = ctx.call
        if state.guard == "identified":
            return call.account_id is not None or bool(call.data.get("unknown_account"))
        if state.guard == "may_set_pin":
            return call.account_id is not None and bool(call.data.get("may_set_pin"))
        if state.guard == "verified":
            return call.account_id is not None and call.verified
        return True

    def _refuse(self, ctx: Ctx, reason: str) -> Reply:
        call = ctx.call
        ctx.event("step_refused", success=False, reason=reason)
        call.status = "ended"
        call.outcome = call.outcome or "error"
        call.ended_at = ctx.clock.now()
        return Reply(step=call.step, speech=(self._speech(ctx, Phrase("error_apology")),), hangup=True)

    # -- rendering ---------------------------------------------------------------

    def render(self, ctx: Ctx) -> Reply:
        call = ctx.call
        state = self.flow[call.state]
        phrases: list[Phrase] = []
        notice = call.data.get("notice")
        if notice:
            phrases.append(Phrase(notice["key"], notice.get("args", {})))
        phrases.extend(state.speak(ctx))
        speech = tuple(self._speech(ctx, phrase) for phrase in phrases)
        if isinstance(state.input, Say):
            return Reply(step=call.step, speech=speech, hangup=True)
        spec = state.input
        if isinstance(spec, Transfer):
            return Reply(step=call.step, speech=speech, dial=Dial(ctx.config.member_services_number))
        if isinstance(spec, Record):
            record = RecordRequest(spec.max_length_seconds, spec.timeout_seconds)
            return Reply(step=call.step, speech=speech, record=record)
        seconds = ctx.config.timeouts.seconds(spec.wait)
        if isinstance(spec, Pay):
            return Reply(step=call.step, speech=speech, pay=self._pay_request(ctx, spec, seconds))
        if isinstance(spec, Entry):
            gather = Gather(speech, spec.digits, "#", seconds, empty_result="#" in state.on)
        else:
            gather = Gather(speech, 1, "", seconds)
        return Reply(step=call.step, gather=gather)

    def _pay_request(self, ctx: Ctx, spec: Pay, seconds: int) -> PayRequest:
        config = ctx.config
        # Every card prompt may name the accepted cards ("We accept Visa and ...").
        names = {"card_types": say_card_types(config.card_types, ctx.lang)}
        prompts = tuple(
            PayPrompt(
                prompt.step,
                self._speech(ctx, Phrase(prompt.phrase.key, {**names, **prompt.phrase.args})),
                prompt.error_type,
            )
            for prompt in (spec.prompts(ctx) if spec.prompts is not None else ())
        )
        return PayRequest(
            config.pay_connector, spec.max_attempts, seconds, ctx.lang,
            card_types=config.card_types, prompts=prompts,
        )

    def _speech(self, ctx: Ctx, phrase: Phrase) -> Speech:
        language = phrase.language or ctx.lang
        return Speech(self.catalog.text(language, phrase.key, phrase.args), language)
