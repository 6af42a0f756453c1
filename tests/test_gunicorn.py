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


# -- a bad setting under gunicorn (issue 11, defect 9) ---------------------------------


@pytest.mark.parametrize("change, variable", [
    ({"SECUREPAY_TIMEZONE": "Mars/Olympus"}, "SECUREPAY_TIMEZONE"),
    ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN"),
    ({"SECUREPAY_PEPPER": ""}, "SECUREPAY_PEPPER"),
    ({"SECUREPAY_PEPPER": "", "SECUREPAY_PEPPER_FILE": "/nonexistent/pepper"}, "SECUREPAY_PEPPER_FILE"),
    ({"SECUREPAY_PAYMENT_MAX": "lots"}, "SECUREPAY_PAYMENT_MAX"),
    ({"SECUREPAY_THREADS": "many"}, "SECUREPAY_THREADS"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_a_bad_setting_is_one_line_and_the_master_exits_78_before_any_worker(
    backend: str, test_env: dict[str, str], change: dict[str, str], variable: str
) -> None:
    from tests.server_process import free_port

    env = {**test_env, "PATH": "/usr/bin:/bin", "SECUREPAY_BIND": f"127.0.0.1:{free_port()}",
           "WEB_CONCURRENCY": "2", **change}
    result = subprocess.run(  # noqa: S603
        [str(GUNICORN), "-c", str(CONFIG), "ivr:create_app()"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False,
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    # Before: a traceback per worker, then "Worker failed to boot" and exit status 3.
    assert result.returncode == 78, output
    assert len(output) == 1 and output[0].startswith("securepay: ") and variable in output[0], output
    assert "Booting worker" not in result.stderr


def test_the_unit_does_not_restart_a_bad_setting_and_loads_secrets_as_credentials(backend: str) -> None:
    from ivr.settings import SECRET_VARIABLES

    unit = (REPO / "deploy" / "securepay.service").read_text()
    lines = [line.strip() for line in unit.splitlines() if not line.lstrip().startswith("#")]
    (prevent,) = [line for line in lines if line.startswith("RestartPreventExitStatus=")]
    assert "78" in prevent.split("=", 1)[1].split()
    loaded = {line.split("=", 1)[1].split(":", 1)[0] for line in lines if line.startswith("LoadCredential=")}
    # Every secret but the optional ones is a credential; theirs are there, commented (a
    # LoadCredential= whose file is missing would stop the unit from starting).
    optional = {
        "SECUREPAY_PORTAL_TOKEN", "SECUREPAY_SMTP_PASSWORD",
        "TWILIO_AUTH_TOKEN_PREVIOUS", "TWILIO_API_SECRET",
    }
    assert loaded == set(SECRET_VARIABLES) - optional
    for name in optional:
        assert f"#LoadCredential={name}:" in unit
    environment = "\n".join(line for line in lines if line.startswith("Environment"))
    assert not any(name in environment for name in SECRET_VARIABLES)


def test_gunicorn_reads_its_secrets_from_systemd_credentials(
    backend: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    env = dict(test_env)
    for name in ("SECUREPAY_PEPPER", "TWILIO_AUTH_TOKEN", "SECUREPAY_DATABASE_URL"):
        (credentials / name).write_text(env.pop(name) + "\n")
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    server = GunicornServer(env, log_path=tmp_path / "gunicorn.log", workers=1, threads=1)
    with server:
        assert _get(f"{server.base_url}/healthz") == 200
        assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_a_worker_leaving_waits_for_the_text_receipts_under_way(backend: str) -> None:
    # A recycled worker (max_requests) or a deploy's SIGTERM: the receipt a caller asked
    # for is on a thread of its own, daemonic; without a wait it died with the process.
    import importlib.util
    import threading
    import time
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("securepay_gunicorn_conf", CONFIG)
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)

    sent: list[str] = []

    class SlowTexter:
        def __init__(self) -> None:
            self.thread = threading.Thread(target=self._send, daemon=True)
            self.thread.start()

        def _send(self) -> None:
            time.sleep(0.3)
            sent.append("receipt")

        def wait(self, timeout: float = 10.0) -> None:
            self.thread.join(timeout)

    disposed: list[bool] = []
    services = SimpleNamespace(
        notifier=None, texter=SlowTexter(), engine=SimpleNamespace(dispose=lambda: disposed.append(True))
    )
    worker = SimpleNamespace(pid=4242, wsgi=SimpleNamespace(extensions={"securepay": services}))
    conf.worker_exit(None, worker)
    assert sent == ["receipt"] and disposed == [True]
