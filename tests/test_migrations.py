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
from db.models import Base
from tests.conftest import POSTGRES_URL

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
            (str(fk.name), fk.referred_table.name, fk.ondelete)
            for fk in table.foreign_key_constraints
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

    assert migrate.current(empty_url) == migrate.head() == "0001_initial"
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


def test_upgrade_twice_changes_nothing(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)

    assert migrate.current(empty_url) == migrate.head()
    assert _differences(empty_url) == []


def test_the_migration_scripts_ship_inside_the_package() -> None:
    assert migrate.SCRIPT_LOCATION == Path(migrate.__file__).parent / "migrations"
    assert (migrate.SCRIPT_LOCATION / "versions" / "0001_initial.py").is_file()
