"""gunicorn.conf.py: it loads, its access log keeps account numbers out, SIGTERM is clean.

The app runs under the real gunicorn in a subprocess on 127.0.0.1 (tests/server_process.py),
on a SQLite file: what is tested here is the server's configuration, not the database.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.server_process import CONFIG, GUNICORN, REPO, GunicornServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

PORTAL_TOKEN = "test-portal-token-4f2a9c"
ACCOUNT = "10004821"


def _get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http://127.0.0.1 only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def test_the_configuration_and_the_app_load(backend: str, test_env: dict[str, str]) -> None:
    # --print-config prints the resolved settings, then loads the app (and exits 1 if it fails).
    env = {**test_env, "PATH": "/usr/bin:/bin", "SECUREPAY_BIND": "127.0.0.1:8123", "WEB_CONCURRENCY": "3"}
    result = subprocess.run(  # noqa: S603
        [str(GUNICORN), "--print-config", "-c", str(CONFIG), "ivr:create_app()"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=True,
    )
    settings = dict(
        (name.strip(), value.strip())
        for name, _, value in (line.partition("=") for line in result.stdout.splitlines())
    )
    assert settings["bind"] == "['127.0.0.1:8123']"
    assert settings["workers"] == "3"
    assert settings["worker_class"] == "gthread"
    assert int(settings["timeout"]) < 15  # a stuck worker is replaced before Twilio gives up
    assert settings["logger_class"] == "<SecurePayLogger()>"
    assert settings["worker_exit"] == "<worker_exit()>"


def test_a_bad_thread_count_is_refused_with_its_name(backend: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "SECUREPAY_THREADS": "many"}
    result = subprocess.run(  # noqa: S603
        [str(GUNICORN), "--print-config", "-c", str(CONFIG), "ivr:create_app()"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode != 0
    assert "SECUREPAY_THREADS must be a whole number" in result.stdout + result.stderr


def test_access_log_masks_account_numbers_and_drops_query_strings_and_sigterm_is_clean(
    backend: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**test_env, "SECUREPAY_PORTAL_TOKEN": PORTAL_TOKEN}
    server = GunicornServer(env, log_path=tmp_path / "gunicorn.log", workers=2, threads=2)
    with server:
        assert _get(f"{server.base_url}/api/v1/accounts/{ACCOUNT}/phones", PORTAL_TOKEN) == 404
        assert _get(f"{server.base_url}/api/v1/accounts/{ACCOUNT}/payment-methods?account={ACCOUNT}") == 401
        assert _get(f"{server.base_url}/healthz?n=3") == 200
        workers = server.worker_pids()
        code = server.stop()

    log = server.log()
    assert code == 0, log
    assert '"GET /api/v1/accounts/#/phones HTTP/1.1" 404' in log
    assert '"GET /api/v1/accounts/#/payment-methods HTTP/1.1" 401' in log
    assert '"GET /healthz HTTP/1.1" 200' in log
    assert ACCOUNT not in log and PORTAL_TOKEN not in log and "n=3" not in log
    # Each worker stopped its receipt dispatcher and closed its connections.
    assert log.count("worker_stopped") == len(workers) == 2
    assert "Shutting down: Master" in log
    assert "Traceback" not in log
