"""The migrations build exactly the schema of ``db.models``, and undo it, on both backends.

PostgreSQL runs in a schema of its own (``search_path`` in the URL), so the session's
shared tables are not touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, create_engine, inspect, make_url, text
from sqlalchemy.pool import NullPool

from db import migrate
from db.cli import db_group
from db.models import Base
from ivr import create_app
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from tests.conftest import POSTGRES_URL, TEST_ENV

SCHEMA = "securepay_migration_test"


@pytest.fixture
def empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database on the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    assert POSTGRES_URL is not None
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
        admin.dispose()


def _differences(url: str) -> list[Any]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _schema_facts(url: str) -> dict[str, Any]:
    """What ``compare_metadata`` does not check: check constraints and ON DELETE rules."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        inspector = inspect(engine)
        return {
            table: {
                "checks": sorted(c["name"] for c in inspector.get_check_constraints(table)),
                "foreign_keys": sorted(
                    (fk["name"], fk["referred_table"], fk["options"].get("ondelete"))
                    for fk in inspector.get_foreign_keys(table)
                ),
            }
            for table in inspector.get_table_names()
            if table != "alembic_version"
        }
    finally:
        engine.dispose()


def _model_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for table in Base.metadata.sorted_tables:
        checks = sorted(str(c.name) for c in table.constraints if isinstance(c, CheckConstraint))
        foreign_keys = sorted(
            (str(fk.name), fk.referred_table.name, fk.ondelete) for fk in table.foreign_key_constraints
        )
        facts[table.name] = {"checks": checks, "foreign_keys": foreign_keys}
    return facts


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_on_an_empty_database_builds_the_models_schema(empty_url: str) -> None:
    assert migrate.current(empty_url) is None

    migrate.upgrade(empty_url)

    assert migrate.current(empty_url) == migrate.head()
    assert _differences(empty_url) == []
    assert _schema_facts(empty_url) == _model_facts()


def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(empty_url: str) -> None:
    migrate.upgrade(empty_url)

    migrate.downgrade(empty_url, "base")

    # Alembic keeps its own (now empty) version table.
    assert _tables(empty_url) <= {"alembic_version"}
    assert migrate.current(empty_url) is None

    migrate.upgrade(empty_url)

    assert _differences(empty_url) == []
    assert _tables(empty_url) == {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}


def test_upgrading_a_database_in_use_keeps_its_rows(empty_url: str) -> None:
    # On SQLite a later revision recreates ``accounts``; with foreign keys on, that would
    # cascade-delete every phone and PIN row.
    migrate.upgrade(empty_url, "0001_initial")
    engine = create_engine(empty_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (id, account_number, account_type, name, balance_cents,"
                    " past_due_cents, due_date, balance_as_of, created_at, updated_at) VALUES"
                    " (1, '100482', 'residential', 'Rivera', 12345, 0, '2025-03-31',"
                    " '2025-03-01 06:00:00', '2025-03-01 06:00:00', '2025-03-01 06:00:00')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO phones (account_id, e164, created_via, created_at)"
                    " VALUES (1, '+12025550123', 'import', '2025-03-01 06:00:00')"
                )
            )
            conn.execute(
                text("INSERT INTO pin_credentials (account_id, origin, failure_count) VALUES (1, 'none', 2)")
            )

        migrate.upgrade(empty_url)

        with engine.connect() as conn:
            assert conn.execute(text("SELECT account_number, balance_cents FROM accounts")).all() == [
                ("100482", 12345)
            ]
            assert conn.execute(text("SELECT e164 FROM phones")).scalars().all() == ["+12025550123"]
            assert conn.execute(text("SELECT failure_count FROM pin_credentials")).scalars().all() == [2]
    finally:
        engine.dispose()


def test_upgrade_twice_changes_nothing(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)

    assert migrate.current(empty_url) == migrate.head()
    assert _differences(empty_url) == []


def test_the_migration_scripts_ship_inside_the_package() -> None:
    assert migrate.SCRIPT_LOCATION == Path(migrate.__file__).parent / "migrations"
    assert (migrate.SCRIPT_LOCATION / "versions" / f"{migrate.head()}.py").is_file()


def test_db_upgrade_command_builds_the_schema_of_the_configured_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    app = create_app(Settings.from_env({**TEST_ENV, "SECUREPAY_DATABASE_URL": url}), cli=True)
    try:
        result = app.test_cli_runner().invoke(db_group, ["upgrade"])
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()

    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"at revision {migrate.head()}")
    assert _differences(url) == []
