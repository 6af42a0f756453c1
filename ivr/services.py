"""The application's services, built once by ``create_app`` and found by views and commands."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.audit_sealer import AuditSealer
from db.unit_of_work import SqlUnitOfWork
from ivr.flows.context import Ctx, FlowConfig, NoNotices, NoNotifier, Notifier, ReceiptTexter
from ivr.flows.engine import FlowEngine
from ivr.flows.pin_policy import PinPolicy
from ivr.flows.ports import CallRecord, Clock, PinHasher, UnitOfWork
from ivr.prompts import Catalog
from ivr.settings import Settings
from ivr.signature import SignatureChecker
from ivr.twiml import Style
from payments.autopay_notices import AutopayNotices
from payments.gateway import PaymentGateway

EXTENSION_KEY = "securepay"
_STYLES_KEPT = 64


class SystemClock:
    """Implements ``ivr.flows.ports.Clock``."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    hasher: PinHasher
    clock: Clock
    catalog: Catalog
    policy: PinPolicy
    flow_engine: FlowEngine
    flow_config: FlowConfig
    gateway: PaymentGateway | None = None  # None without STRIPE_API_KEY: payments are off
    notifier: Notifier = field(default_factory=NoNotifier)
    texter: ReceiptTexter | None = None  # None without SECUREPAY_SMS_FROM: texts are off
    autopay_notices: AutopayNotices | None = None  # Auto Pay's written notices (issue 10)
    process: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    sealer: AuditSealer | None = None  # the trail's sealer (db.audit_sealer), attached to sessions
    # Built from ``settings`` on first use and again whenever ``settings`` is replaced.
    _signatures: tuple[Settings, SignatureChecker | None] | None = field(default=None, init=False, repr=False)
    _styles: tuple[Settings, dict[str, Style]] | None = field(default=None, init=False, repr=False)

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION_KEY] = self

    def signature_checker(self) -> SignatureChecker | None:
        """The webhooks' signature checker (current auth token, then the previous one);
        None without a token (a CLI-built app: the webhooks are off)."""
        settings = self.settings
        if self._signatures is None or self._signatures[0] is not settings:
            token = settings.twilio_auth_token
            previous = settings.twilio_auth_token_previous
            tokens = (
                []
                if token is None
                else [token.reveal(), *([previous.reveal()] if previous is not None else [])]
            )
            self._signatures = (settings, SignatureChecker(tokens) if tokens else None)
        return self._signatures[1]

    def twiml_style(self, base_url: str) -> Style:
        """This deployment's TwiML on ``base_url`` (the public URL, else the request's
        own): its voices and ``<Pay>`` languages. Built once per base URL."""
        settings = self.settings
        if self._styles is None or self._styles[0] is not settings:
            self._styles = (settings, {})
        styles = self._styles[1]
        style = styles.get(base_url)
        if style is None:
            voices = {
                lang: voice for lang, voice in (("en", settings.voice_en), ("es", settings.voice_es)) if voice
            }
            style = Style(
                base_url=base_url,
                voices=voices,
                pay_languages={"en": "en-US", "es": settings.pay_language_es},
            )
            if len(styles) < _STYLES_KEPT:  # a Host header per request, without a public URL
                styles[base_url] = style
        return style

    def unit_of_work(self, *, os_user: str | None = None, host: str | None = None) -> SqlUnitOfWork:
        """A new transaction (use as a context manager); staff commands name who and where."""
        return SqlUnitOfWork(
            self.sessions, process=self.process, os_user=os_user, host=host, clock=self.clock.now
        )

    def context(self, call: CallRecord, uow: UnitOfWork) -> Ctx:
        """What one step of ``call`` needs, inside ``uow``."""
        return Ctx(
            call=call,
            uow=uow,
            hasher=self.hasher,
            policy=self.policy,
            clock=self.clock,
            config=self.flow_config,
            gateway=self.gateway,
            notifier=self.notifier,
            texter=self.texter,
            notices=self.autopay_notices or NoNotices(),
        )


def current_services() -> Services:
    """The services of the running app (inside a request or a CLI command)."""
    services: Services = current_app.extensions[EXTENSION_KEY]
    return services
