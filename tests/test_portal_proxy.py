"""Issue 11, defect 4: behind the shipped nginx, each portal client is its own address.

``SECUREPAY_PROXY_COUNT`` wraps the app in Werkzeug's ``ProxyFix``: the rate limit's
address bucket and the security log then see the client, not the proxy's 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from ivr import create_app
from ivr.portal import rate_limit
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings, SettingsError
from tests.members import Member, add_members

TOKEN = "portal-token-proxy-8Vd3"
ACCOUNT = "10004821"
PHONES = f"/api/v1/accounts/{ACCOUNT}/phones"
NGINX = {"REMOTE_ADDR": "127.0.0.1"}  # every request arrives from the proxy on loopback
ATTACKER, MEMBER_PORTAL = "203.0.113.5", "198.51.100.7"


def _app(test_env: dict[str, str], proxy_count: str | None) -> Flask:
    env = {**test_env, "SECUREPAY_PORTAL_TOKEN": TOKEN}
    if proxy_count is not None:
        env["SECUREPAY_PROXY_COUNT"] = proxy_count
    app = create_app(Settings.from_env(env))
    # Buckets on a clock that stands still: no refill while the test runs, however slow.
    app.extensions[rate_limit.EXTENSION_KEY] = rate_limit.RateLimiter(clock=lambda: 1000.0)
    return app


@pytest.fixture
def behind_nginx(test_env: dict[str, str]) -> Iterator[Flask]:
    app = _app(test_env, "1")
    add_members(app, Member(ACCOUNT, phones=["+12025550143"]))
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


def _get(app: Flask, client_address: str, token: str, forwarded: str | None = None) -> int:
    # nginx appends the address it saw: $proxy_add_x_forwarded_for (deploy/nginx.conf).
    chain = client_address if forwarded is None else f"{forwarded}, {client_address}"
    response = app.test_client().get(
        PHONES,
        headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": chain, "X-Forwarded-Proto": "https"},
        environ_base=NGINX,
    )
    return response.status_code


def _flood(app: Flask, address: str, forwarded: str | None = None) -> list[int]:
    return [_get(app, address, "wrong-token", forwarded) for _ in range(2 * rate_limit.BURST)]


def test_a_wrong_token_flood_from_one_address_does_not_429_another(behind_nginx: Flask) -> None:
    statuses = _flood(behind_nginx, ATTACKER)
    assert set(statuses) == {401, 429}  # the flood itself is slowed

    assert _get(behind_nginx, MEMBER_PORTAL, TOKEN) == 200
    assert _get(behind_nginx, ATTACKER, TOKEN) == 429  # the attacker's own address still is


def test_a_client_cannot_choose_its_bucket_with_its_own_forwarded_header(behind_nginx: Flask) -> None:
    # The attacker sends X-Forwarded-For itself; nginx appends the real address after it.
    _flood(behind_nginx, ATTACKER, forwarded=MEMBER_PORTAL)
    assert _get(behind_nginx, MEMBER_PORTAL, TOKEN) == 200
    assert _get(behind_nginx, ATTACKER, TOKEN, forwarded="192.0.2.44") == 429


def test_the_security_log_names_the_client_not_the_proxy(
    behind_nginx: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    assert _get(behind_nginx, ATTACKER, "wrong-token") == 401
    assert ATTACKER in caplog.text and "127.0.0.1" not in caplog.text


def test_without_the_setting_forwarded_headers_are_not_believed(test_env: dict[str, str]) -> None:
    app = _app(test_env, None)
    try:
        _flood(app, ATTACKER)
        # One bucket for every client of the proxy: what a missing SECUREPAY_PROXY_COUNT costs.
        assert _get(app, MEMBER_PORTAL, TOKEN) == 429
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()


@pytest.mark.parametrize("raw", ["one", "-1", "1.5"])
def test_a_bad_proxy_count_is_one_line_naming_it(raw: str) -> None:
    with pytest.raises(SettingsError, match="SECUREPAY_PROXY_COUNT"):
        Settings.from_env({"SECUREPAY_PROXY_COUNT": raw})


def _block(conf: str, opening: str) -> str:
    start = conf.index(opening)
    depth, end = 0, start
    for end in range(conf.index("{", start), len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[end], 0)
        if depth == 0:
            break
    return conf[start:end]


def test_the_shipped_nginx_forwards_the_client_and_keeps_the_api_to_the_portal() -> None:
    from pathlib import Path

    conf = (Path(__file__).parents[1] / "deploy" / "nginx.conf").read_text()
    lines = [line.split("#")[0].strip() for line in conf.splitlines()]
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in lines
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in lines
    api = [line.split("#")[0].strip() for line in _block(conf, "location /api/").splitlines()]
    assert any(line.startswith("allow ") for line in api) and "deny all;" in api
    assert "SECUREPAY_PROXY_COUNT=1" in conf
