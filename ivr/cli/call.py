"""``securepay call``: a whole call in the terminal, driven as Twilio would drive it.

In-process by default (the app from the environment, signed with its own token and
public URL), or against a running IVR with ``--url``. The walker is the test suite's,
so what works here works in the tests and on a real phone.

A ``<Pay>`` is played as Twilio plays it with its Stripe connector
(``ivr.softphone.pay.TwilioPayEmulator``): the cards come from ``--card`` (one per
attempt) or are typed at the terminal, and are tokenized with ``STRIPE_API_KEY`` and
``STRIPE_API_BASE``, the key Twilio's connector would hold for the utility.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import Literal

import click
from flask import current_app, has_app_context
from flask.cli import ScriptInfo

from ivr.secrets import Secret, SecretSourceError, read_secret
from ivr.services import current_services
from ivr.softphone import (
    DEFAULT_TO_NUMBER,
    FlaskTransport,
    HttpTransport,
    InteractiveKeys,
    KeySource,
    PayHandler,
    TerminalPrinter,
    Transport,
    WalkStopped,
    no_pay_handler,
    parse_keys,
    walk,
)
from ivr.softphone.pay import CardSource, InteractiveCards, ScriptedCards, TwilioPayEmulator
from payments.stripe_gateway import build_stripe_client

__all__ = ["call_command", "make_call_command"]

_CALL_SID_HELP = "CallSid of the simulated call (CA + 32 lowercase hex); random by default."


def _check_call_sid(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"CA[0-9a-f]{32}", value):
        raise click.BadParameter(f"a CallSid is CA and 32 lowercase hex digits, got {value!r}")
    return value


def _keys(value: str | None) -> KeySource:
    if value is None:
        # At a terminal: asked per <Gather>. Piped: one line per <Gather>, EOF hangs up.
        return InteractiveKeys()
    try:
        return parse_keys(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keys") from None


def _in_process(ctx: click.Context) -> tuple[Transport, str, str]:
    """The app of this command line, its token and its public URL."""
    if not has_app_context():
        app = ctx.ensure_object(ScriptInfo).load_app()
        ctx.with_resource(app.app_context())
    settings = current_services().settings
    if settings.twilio_auth_token is None:
        raise click.ClickException("TWILIO_AUTH_TOKEN is not set: the softphone signs its webhooks with it")
    public_url = settings.public_url or "http://localhost"
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return FlaskTransport(app, base_url=public_url), settings.twilio_auth_token.reveal(), public_url


def _remote(base_url: str) -> tuple[Transport, str, str]:
    """A running IVR at ``base_url``, signed with the token it checks."""
    try:
        transport = HttpTransport(base_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    # The command line's edge: no app here, only the token the remote IVR checks.
    token = _secret_from_env("TWILIO_AUTH_TOKEN")
    if token is None:
        raise click.ClickException("TWILIO_AUTH_TOKEN is not set: export the token the IVR at --url checks")
    return transport, token.reveal(), base_url.rstrip("/")


def _secret_from_env(name: str) -> Secret | None:
    try:
        return read_secret(os.environ, name)
    except SecretSourceError as exc:
        raise click.ClickException(str(exc)) from None


def _check_cards(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    try:
        ScriptedCards(value)
    except ValueError as exc:  # the message names the entry by position, never its digits
        raise click.BadParameter(str(exc)) from None
    return value


class _EmulatedPay:
    """Twilio's ``<Pay>`` for one ``securepay call``, set up when the first ``<Pay>`` is met:
    a call that never reaches one needs no Stripe key."""

    def __init__(self, cards: Sequence[str], stripe_key: str | None, stripe_base: str | None) -> None:
        self._cards = cards
        self._stripe_key = stripe_key
        self._stripe_base = stripe_base
        self._emulator: TwilioPayEmulator | None = None

    def __call__(self, attributes: dict[str, str]) -> dict[str, str]:
        if self._emulator is None:
            if self._stripe_key is None:
                raise click.ClickException(
                    "STRIPE_API_KEY is not set: the softphone plays Twilio's Stripe connector at <Pay> "
                    "and tokenizes the card with the utility's key (a test key, or localstripe's)"
                )
            source: CardSource
            if self._cards:
                source = ScriptedCards(self._cards)
            elif sys.stdin.isatty():
                source = InteractiveCards()
            else:
                raise WalkStopped("a <Pay> needs a card: pass --card 'NUMBER MM/YY CVC' (one per attempt)")
            client = build_stripe_client(self._stripe_key, self._stripe_base)
            self._emulator = TwilioPayEmulator(client, source)
        return self._emulator(attributes)


def _stripe_in_process() -> tuple[str | None, str | None]:
    settings = current_services().settings
    key = settings.stripe_api_key
    return (None if key is None else key.reveal()), settings.stripe_api_base


def _stripe_remote() -> tuple[str | None, str | None]:
    # As for the token: only what the softphone itself needs.
    key = _secret_from_env("STRIPE_API_KEY")
    base = os.environ.get("STRIPE_API_BASE", "").strip() or None
    return (None if key is None else key.reveal()), base


def make_call_command(pay: PayHandler | Literal["emulate"] = no_pay_handler) -> click.Command:
    """The ``call`` command, with ``pay`` playing Twilio's part in ``<Pay>``.

    ``pay="emulate"`` (``securepay call``): the softphone plays it as Twilio does with its
    Stripe connector, with the cards of ``--card`` or typed at the terminal.
    """

    @click.command("call")
    @click.option("--from", "from_number", required=True, help="The caller ID, e.g. +12025550123.")
    @click.option(
        "--to",
        "to_number",
        default=DEFAULT_TO_NUMBER,
        show_default=True,
        help="The SecurePay number called.",
    )
    @click.option(
        "--url",
        "base_url",
        default=None,
        help="A running IVR, e.g. http://127.0.0.1:5000 (default: in-process).",
    )
    @click.option(
        "--keys",
        default=None,
        help="Keys per menu, e.g. 1,1,6789#,-,2 ('-': no input, 'h': hang up); default: asked at each menu.",
    )
    @click.option("--call-sid", default=None, callback=_check_call_sid, help=_CALL_SID_HELP)
    @click.pass_context
    def call(
        ctx: click.Context,
        from_number: str,
        to_number: str,
        base_url: str | None,
        keys: str | None,
        call_sid: str | None,
        cards: tuple[str, ...] = (),
    ) -> None:
        """Place a simulated call to the IVR, as Twilio would drive it."""
        key_source = _keys(keys)
        transport, token, public_url = _in_process(ctx) if base_url is None else _remote(base_url)
        handler: PayHandler
        if pay == "emulate":
            handler = _EmulatedPay(cards, *(_stripe_in_process() if base_url is None else _stripe_remote()))
        else:
            handler = pay
        transcript = walk(
            transport,
            auth_token=token,
            public_url=public_url,
            from_number=from_number,
            to_number=to_number,
            keys=key_source,
            call_sid=call_sid,
            pay=handler,
            observer=TerminalPrinter(show_keys=keys is not None),
        )
        if not transcript.ok:
            click.echo(f"Call {transcript.call_sid} ended on an error.", err=True)
            ctx.exit(1)
        click.echo(f"Call {transcript.call_sid} ended: {transcript.final_status}.")

    if pay == "emulate":
        call.params.append(
            click.Option(
                ["--card", "cards"],
                multiple=True,
                callback=_check_cards,
                help="A test card for <Pay>, e.g. '4242424242424242 12/30 123' (repeat: one per "
                "attempt; '*': cancel, 'timeout', 'hangup'); default: typed at the terminal.",
            )
        )
    return call


call_command = make_call_command(pay="emulate")
