"""Whole scripted calls against a WSGI app in this process, each request a measured region.

``make bench-count`` drives the same plans as ``make bench`` (``bench.driver``), but with
no sockets between the caller and the app: ``WsgiTransport`` builds each request's WSGI
environ (outside the region), then the region is exactly what gunicorn's worker would
run: ``app(environ, start_response)`` and the body read to its end. The walker's own
work (signing, parsing the TwiML, choosing keys) stays outside every region, so the
counts are the server's. PostgreSQL and localstripe are other processes: their work is
not in the counts, the app's side of talking to them is.

Each reply is checked for the prompt the plan expects, as the driver checks it, so a
count is never taken of a call that went somewhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from bench.callgrind import Probe
from bench.driver import CallPlan, Expect
from ivr.flows.ports import PinHasher
from ivr.softphone import HttpReply, ScriptedKeys, walk


@dataclass
class RequestLabel:
    """Where the runner is: which call, which request of it, what the plan expects."""

    group: str = ""
    call: int = 0
    request: int = 0
    expect: Expect | None = None

    def text(self, part: str = "") -> str:
        kind, state = (self.expect.kind, self.expect.state) if self.expect else ("unplanned", "")
        return f"{self.group}|{self.call}|{self.request}|{kind}|{state}|{part}"


class WsgiTransport:
    """Implements ``ivr.softphone.Transport`` by calling the WSGI app in this process."""

    def __init__(self, app: Flask, base_url: str, probe: Probe, label: RequestLabel) -> None:
        self._app = app
        self._base_url = base_url
        self._probe = probe
        self._label = label

    def post(self, path_and_query: str, params: dict[str, str], headers: dict[str, str]) -> HttpReply:
        return self._send("POST", path_and_query, params, headers)

    def get(self, path_and_query: str, headers: dict[str, str]) -> HttpReply:
        return self._send("GET", path_and_query, None, headers)

    def _send(
        self, method: str, path_and_query: str, params: dict[str, str] | None, headers: dict[str, str]
    ) -> HttpReply:
        path, _, query = path_and_query.partition("?")
        builder = EnvironBuilder(
            path=path,
            query_string=query or None,
            base_url=self._base_url,
            method=method,
            data=params,
            headers=list(headers.items()),
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        started: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, response_headers]
            return None

        label = self._label.text()
        self._probe.begin(label)
        body_iter: Iterable[bytes] = self._app(environ, start_response)
        try:
            body = b"".join(body_iter)
        finally:
            close = getattr(body_iter, "close", None)
            if close is not None:
                close()
        self._probe.end(label)
        status = int(str(started[0]).split()[0])
        content_type = next((v for k, v in started[1] if k.lower() == "content-type"), "")
        return HttpReply(status, body.decode("utf-8", "replace"), content_type)


class SplitHasher:
    """A ``PinHasher`` that puts each Argon2 verification in a region of its own.

    Wraps the app's hasher: the PIN request is then three regions (before the verify,
    the verify, after it) whose sum is the request, so a call's count can be given with
    and without the verify.
    """

    def __init__(self, inner: PinHasher, probe: Probe, label: RequestLabel) -> None:
        self._inner = inner
        self._probe = probe
        self._label = label

    def hash(self, secret: str) -> str:
        return self._inner.hash(secret)

    def verify(self, stored: str, secret: str) -> bool:
        self._probe.split(self._label.text("before-argon2"))
        try:
            return self._inner.verify(stored, secret)
        finally:
            self._probe.split(self._label.text("argon2"))

    def needs_rehash(self, stored: str) -> bool:
        return self._inner.needs_rehash(stored)

    def dummy_verify(self) -> None:
        self._probe.split(self._label.text("before-argon2"))
        try:
            self._inner.dummy_verify()
        finally:
            self._probe.split(self._label.text("argon2"))

    def digest(self, secret: str, context: str) -> str:
        return self._inner.digest(secret, context)


def _check(plan: CallPlan, exchanges: Sequence[tuple[int, str]], walk_errors: list[str]) -> list[str]:
    problems = list(walk_errors)
    for position, ((status, body), expect) in enumerate(zip(exchanges, plan.expects, strict=False)):
        if status != 200:
            problems.append(f"request {position} ({expect.state}): HTTP {status}")
        elif expect.marker not in body:
            problems.append(
                f"request {position} ({expect.state}): expected {expect.marker!r}, got {body[:200]!r}"
            )
    if len(exchanges) != len(plan.expects):
        problems.append(f"{len(exchanges)} requests, expected {len(plan.expects)}")
    return problems


class _Positioned:
    """A transport that moves the label to each request's place in the plan."""

    def __init__(self, inner: WsgiTransport, label: RequestLabel, plan: CallPlan) -> None:
        self._inner = inner
        self._label = label
        self._plan = plan
        self.replies: list[tuple[int, str]] = []

    def _place(self) -> None:
        position = len(self.replies)
        self._label.request = position
        self._label.expect = self._plan.expects[position] if position < len(self._plan.expects) else None

    def post(self, path_and_query: str, params: dict[str, str], headers: dict[str, str]) -> HttpReply:
        self._place()
        reply = self._inner.post(path_and_query, params, headers)
        self.replies.append((reply.status, reply.body))
        return reply

    def get(self, path_and_query: str, headers: dict[str, str]) -> HttpReply:
        self._place()
        reply = self._inner.get(path_and_query, headers)
        self.replies.append((reply.status, reply.body))
        return reply


def run_plans(
    app: Flask,
    plans: Sequence[CallPlan],
    *,
    group: str,
    public_url: str,
    auth_token: str,
    probe: Probe,
    label: RequestLabel,
    before_call: Callable[[], object] | None = None,
) -> list[str]:
    """Play each plan as one call; the problems found (empty: every call as planned).

    ``before_call`` runs before each call, outside every region.
    """
    label.group = group
    transport = WsgiTransport(app, public_url, probe, label)
    problems: list[str] = []
    for number, plan in enumerate(plans):
        label.call = number
        if before_call is not None:
            before_call()
        positioned = _Positioned(transport, label, plan)
        transcript = walk(
            positioned,
            auth_token=auth_token,
            public_url=public_url,
            from_number=plan.from_number,
            keys=ScriptedKeys(plan.keys),
            max_requests=len(plan.expects) + 2,
        )
        found = _check(plan, positioned.replies, [e.message for e in transcript.errors])
        problems.extend(f"{group} call {number}: {p}" for p in found)
    return problems
