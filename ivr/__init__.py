"""SecurePay IVR: the Flask application factory."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from db.engine import build_engine, session_factory
from ivr.pinhash import Argon2PinHasher
from ivr.services import Services, SystemClock
from ivr.settings import Settings, SettingsError

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, cli: bool = False) -> Flask:
    """Build the app. ``gunicorn "ivr:create_app()"`` serves it in production.

    Settings come from the environment unless given. The webhooks need
    ``TWILIO_AUTH_TOKEN``; command-line tools (``cli=True``) may run without it.
    """
    if settings is None:
        settings = Settings.from_env(os.environ)
    if not cli and settings.twilio_auth_token is None:
        raise SettingsError("TWILIO_AUTH_TOKEN is not set: webhooks cannot be verified")
    app = Flask(__name__, instance_relative_config=True)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    url = settings.database_url
    if url is None:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(app.instance_path) / 'securepay.db'}"
    engine = build_engine(url)
    Services(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        hasher=Argon2PinHasher(settings.pepper),
        clock=SystemClock(),
    ).init_app(app)
    return app
