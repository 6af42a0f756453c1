"""The application's services, built once by ``create_app`` and found by views and commands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ivr.flows.ports import PinHasher
from ivr.settings import Settings

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
    clock: SystemClock

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION_KEY] = self


def current_services() -> Services:
    """The services of the running app (inside a request or a CLI command)."""
    services: Services = current_app.extensions[EXTENSION_KEY]
    return services
