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
from payments.autopay_notices import AutopayNotices
from payments.gateway import PaymentGateway

EXTENSION_KEY = "securepay"


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

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION_KEY] = self

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
