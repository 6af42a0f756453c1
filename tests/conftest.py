"""Shared fixtures: a clean database on each backend, settings for tests.

Every database test runs on SQLite and, where ``SECUREPAY_TEST_POSTGRES_URL`` is set, on
PostgreSQL; elsewhere the PostgreSQL variants are reported as skipped, by name.
Each test gets empty tables (truncated, not rolled back), so tests may use several
connections at once, as concurrent calls do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, text

from db.engine import build_engine
from db.models import Base

if TYPE_CHECKING:
    import stripe
    from flask import Flask

    from ivr.softphone import Softphone
    from payments.emulator import LocalStripe
    from tests.fakes import FakeClock

pytest_plugins = ["tests.stripe_fixtures"]

POSTGRES_URL = os.environ.get("SECUREPAY_TEST_POSTGRES_URL")

TEST_ENV = {
    "SECUREPAY_PEPPER": "test-pepper-0123456789abcdef",
    "TWILIO_AUTH_TOKEN": "test-auth-token",
    "SECUREPAY_PUBLIC_URL": "https://ivr.example.test",
    "SECUREPAY_UTILITY_NAME": "Test Valley Electric",
    "SECUREPAY_MEMBER_SERVICES_NUMBER": "+12025550100",
    "SECUREPAY_TIMEZONE": "America/Chicago",
}


@pytest.fixture(scope="session")
def _postgres_engine() -> Iterator[Engine]:
    assert POSTGRES_URL is not None
    engine = build_engine(POSTGRES_URL)
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    Base.metadata.create_all(engine)
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


def _truncate(engine: Engine) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    POSTGRES_URL is None, reason="SECUREPAY_TEST_POSTGRES_URL is not set"
                ),
            ],
        ),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this test: ``sqlite`` or ``postgresql``."""
    return str(request.param)


@pytest.fixture
def engine(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A fresh, empty schema on the test's backend."""
    if backend == "postgresql":
        pg: Engine = request.getfixturevalue("_postgres_engine")
        _truncate(pg)
        yield pg
        return
    engine = build_engine(f"sqlite:///{tmp_path / 'securepay.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def test_env(database_url: str) -> dict[str, str]:
    return {**TEST_ENV, "SECUREPAY_DATABASE_URL": database_url}


@pytest.fixture
def clock() -> FakeClock:
    from tests.fakes import FakeClock

    return FakeClock()


@pytest.fixture
def app(
    test_env: dict[str, str], clock: FakeClock, stripe_client: stripe.StripeClient, localstripe: LocalStripe
) -> Iterator[Flask]:
    """The real application on the test's database, with a clock the test controls and
    the processor played by localstripe (emptied for each test)."""
    from ivr import create_app
    from ivr.services import EXTENSION_KEY
    from ivr.settings import Settings
    from payments.stripe_gateway import StripeGateway

    env = {**test_env, "STRIPE_API_KEY": "sk_test_securepay", "STRIPE_API_BASE": localstripe.base_url}
    application = create_app(Settings.from_env(env))
    services = application.extensions[EXTENSION_KEY]
    services.clock = clock
    services.gateway = StripeGateway(stripe_client)  # no network retries in tests
    engine = services.engine  # a test may swap in another; this one is ours to close
    yield application
    engine.dispose()


@pytest.fixture
def phone(app: Flask) -> Softphone:
    """The Twilio simulator, signing every request as Twilio would; every answer is
    checked against the TwiML schema (tests/twiml.xsd)."""
    from ivr.softphone import FlaskTransport, Softphone
    from tests.twiml_checks import CheckingTransport

    return Softphone(
        CheckingTransport(FlaskTransport(app)),
        auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
        public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"],
    )


@pytest.fixture
def card_phone(app: Flask, stripe_client: stripe.StripeClient) -> Callable[..., Softphone]:
    """``card_phone("4242424242424242 12/30 123", ...)``: a softphone that plays Twilio's
    ``<Pay>`` with these cards (one per attempt), tokenizing them at localstripe."""
    from ivr.softphone import FlaskTransport, Softphone
    from ivr.softphone.pay import ScriptedCards, TwilioPayEmulator
    from tests.twiml_checks import CheckingTransport

    def make(*cards: str) -> Softphone:
        return Softphone(
            CheckingTransport(FlaskTransport(app)),
            auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
            public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"],
            pay=TwilioPayEmulator(stripe_client, ScriptedCards(cards)),
        )

    return make
