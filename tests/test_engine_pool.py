"""The connection pool on PostgreSQL: no round trip to check a connection out, and a
connection the server ended while it sat in the pool is replaced, not handed out.

Every webhook checks a connection out; the pre-ping this replaces cost a ``SELECT 1``
round trip each time (issue 12). Round trips are counted on the wire, by the benchmark's
relay between the engine and PostgreSQL (``bench.wire.RoundTripProxy``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text

from bench.wire import RoundTripProxy
from db.engine import build_engine
from tests.conftest import POSTGRES_URL

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(POSTGRES_URL is None, reason="SECUREPAY_TEST_POSTGRES_URL is not set"),
]


@pytest.fixture
def relayed() -> Iterator[tuple[Engine, RoundTripProxy]]:
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL)
    with RoundTripProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        engine = build_engine(
            url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        )
        try:
            yield engine, proxy
        finally:
            engine.dispose()


def _settled_turns(proxy: RoundTripProxy) -> int:
    time.sleep(0.2)  # the relay's thread counts what it has seen
    return proxy.turns


def test_checking_out_a_pooled_connection_costs_no_round_trip(relayed: tuple[Engine, RoundTripProxy]) -> None:
    engine, proxy = relayed
    with engine.connect() as conn:  # the pool's first connection, made and used
        conn.execute(text("SELECT 1"))
        conn.rollback()
    before = _settled_turns(proxy)

    with engine.connect():
        pass

    assert _settled_turns(proxy) == before


def test_a_connection_the_server_ended_in_the_pool_is_replaced_at_checkout(
    relayed: tuple[Engine, RoundTripProxy],
) -> None:
    engine, _ = relayed
    with engine.connect() as conn:
        first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.rollback()
    assert POSTGRES_URL is not None
    admin = build_engine(POSTGRES_URL)
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
    finally:
        admin.dispose()
    time.sleep(0.2)  # the FATAL message and the close reach the pooled socket

    with engine.connect() as conn:
        second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()

    assert second != first
