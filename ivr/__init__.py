"""SecurePay IVR: the Flask application factory.

The wiring is imported inside ``create_app``: importing a light module such as
``ivr.flows.ports`` (as ``db.repositories`` does) must not pull in the whole app.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

from flask import Flask

from ivr.settings import Settings

if TYPE_CHECKING:
    from payments.gateway import PaymentGateway

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, cli: bool = False) -> Flask:
    """Build the app. ``gunicorn "ivr:create_app()"`` serves it in production.

    Settings come from the environment unless given. The webhooks need
    ``TWILIO_AUTH_TOKEN``; command-line tools (``cli=True``) may run without it.
    """
    from db.audit_sealer import AuditSealer
    from db.audit_sealer import attach as attach_sealer
    from db.engine import build_engine, session_factory
    from ivr import health, portal, webhooks
    from ivr.flows.call_flow import CALL_FLOW
    from ivr.flows.context import FlowConfig
    from ivr.flows.engine import FlowEngine
    from ivr.flows.pin_policy import PinPolicy
    from ivr.logs import configure_logging
    from ivr.pinhash import Argon2PinHasher, DeferredPinHasher
    from ivr.prompts import Catalog
    from ivr.services import Services, SystemClock
    from payments.autopay_notices import build_autopay_notices
    from payments.receipts import build_receipt_dispatcher
    from payments.texts import build_text_receipts

    if settings is None:
        settings = Settings.from_env(os.environ)
    if not cli:
        settings.require_web()  # the webhooks verify signatures and hash PINs
    configure_logging(settings.log_format)
    app = Flask(__name__, instance_relative_config=True)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    _trust_proxies(app, settings.proxy_count)
    url = None if settings.database_url is None else settings.database_url.reveal()
    if url is None:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(app.instance_path) / 'securepay.db'}"
    engine = build_engine(url)
    sessions = session_factory(engine)
    # The trail's sealer: a thread of each web worker; commands seal after their commits.
    sealer = AuditSealer(engine, background=not cli)
    attach_sealer(sessions, sealer)
    clock = SystemClock()
    catalog = Catalog.load(settings.prompts_dir)
    policy = PinPolicy.from_file(settings.pin_blocklist_file) if settings.pin_blocklist_file else PinPolicy()
    # Built on first use: commands that hash nothing run without the pepper (SECURITY 19a).
    hasher = DeferredPinHasher(lambda: Argon2PinHasher(settings.require_pepper().reveal_bytes()))
    if not cli:
        hasher.build()  # the web app builds it now, not on the first caller's PIN
    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        hasher=hasher,
        clock=clock,
        catalog=catalog,
        policy=policy,
        flow_engine=FlowEngine(CALL_FLOW, catalog),
        flow_config=FlowConfig.from_settings(settings),
        gateway=_metered(_gateway(settings)) if settings.metrics_enabled else _gateway(settings),
        notifier=build_receipt_dispatcher(settings, sessions, clock),
        autopay_notices=build_autopay_notices(settings, sessions, clock),
        sealer=sealer,
    )
    services.texter = build_text_receipts(settings, services.unit_of_work)
    services.init_app(app)
    if settings.metrics_enabled:
        from ivr.metrics import web as metrics_web

        metrics_web.init_app(app, services)

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(portal.bp)
    return app


def _trust_proxies(app: Flask, count: int) -> None:
    """Behind ``count`` proxies (``SECUREPAY_PROXY_COUNT``), take the client's address and
    scheme from the last ``count`` X-Forwarded-For / X-Forwarded-Proto entries.

    Without it every portal client is the proxy's 127.0.0.1: one rate-limit bucket for
    the world, and security log lines that name no one. With it, only what the trusted
    proxies appended is believed: a client's own X-Forwarded-For stays to the left of
    them and is ignored. Host comes from the proxy's ``Host`` header (deploy/nginx.conf).
    """
    if count <= 0:
        return
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)  # type: ignore[method-assign]


# Each try's connect and read timeouts, and the library's retries (same key). What a
# confirm step spends at the processor in all is bounded by its deadline instead
# (ivr.flows.charge.CONFIRM_PROCESSOR_SECONDS, counted in docs/decisions/0003).
PROCESSOR_TIMEOUT_SECONDS = 4
PROCESSOR_RETRIES = 1


def _metered(gateway: PaymentGateway | None) -> PaymentGateway | None:
    """The gateway with each call to the processor timed and its errors counted."""
    from ivr.metrics import MeteredGateway

    return None if gateway is None else cast("PaymentGateway", MeteredGateway(gateway))


def _gateway(settings: Settings) -> PaymentGateway | None:
    from payments.stripe_gateway import StripeGateway, build_stripe_client

    if settings.stripe_api_key is None:
        return None
    client = build_stripe_client(
        settings.stripe_api_key.reveal(),
        settings.stripe_api_base,
        max_network_retries=PROCESSOR_RETRIES,
        timeout=PROCESSOR_TIMEOUT_SECONDS,
    )
    return StripeGateway(client)
