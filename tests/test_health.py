"""``/livez``, ``/readyz`` and ``/healthz`` (issue 13): liveness never touches the
database; readiness needs the database, the schema at head and a processor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from db.engine import build_engine
from db.migrate import head, upgrade
from ivr import create_app
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from ivr.version import build
from tests.conftest import TEST_ENV

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

PROCESSOR = {"STRIPE_API_KEY": "sk_test_readyz", "STRIPE_API_BASE": "http://127.0.0.1:9"}


def _app(database_url: str, **extra: str) -> Flask:
    return create_app(Settings.from_env({**TEST_ENV, "SECUREPAY_DATABASE_URL": database_url, **extra}))


@pytest.fixture
def migrated_url(tmp_path: Path, backend: str) -> str:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade(url)
    return url


@pytest.fixture
def ready_app(migrated_url: str) -> Iterator[Flask]:
    app = _app(migrated_url, **PROCESSOR)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


def _break_database(app: Flask) -> None:
    services = app.extensions[EXTENSION_KEY]
    services.engine.dispose()
    services.engine = build_engine("sqlite:////nonexistent/dir/x.db")


def test_readyz_is_200_with_the_database_the_schema_at_head_and_a_processor(
    ready_app: Flask, backend: str
) -> None:
    response = ready_app.test_client().get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "migrations": "ok", "processor": "ok"}
    assert body["version"] == build().version
    assert body["commit"] == build().commit and body["commit"] is not None


def test_readyz_is_503_when_the_schema_is_behind(tmp_path: Path, backend: str) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    app = _app(url, **PROCESSOR)
    try:
        response = app.test_client().get("/readyz")
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok"
    assert checks["migrations"] == f"not at head ({head()}): run securepay db upgrade"


def test_readyz_is_503_without_a_processor(migrated_url: str, backend: str) -> None:
    app = _app(migrated_url)
    try:
        response = app.test_client().get("/readyz")
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()
    assert response.status_code == 503
    assert response.get_json()["checks"]["processor"] == "not configured (STRIPE_API_KEY)"


def test_with_the_database_gone_livez_stays_200_and_readyz_and_healthz_are_503(
    ready_app: Flask, backend: str
) -> None:
    client = ready_app.test_client()
    _break_database(ready_app)
    livez = client.get("/livez")
    assert livez.status_code == 200 and livez.get_json() == {"status": "ok"}
    readyz = client.get("/readyz")
    assert readyz.status_code == 503
    assert readyz.get_json()["checks"]["database"] == "unreachable"
    assert client.get("/healthz").status_code == 503


def test_livez_does_not_touch_the_database(ready_app: Flask, backend: str) -> None:
    class NoEngine:
        def connect(self) -> None:
            raise AssertionError("/livez opened a database connection")

    services = ready_app.extensions[EXTENSION_KEY]
    engine, services.engine = services.engine, NoEngine()
    try:
        assert ready_app.test_client().get("/livez").status_code == 200
    finally:
        services.engine = engine
