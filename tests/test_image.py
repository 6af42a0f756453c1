"""The container image, compose file and lock file (issue 13).

No container daemon or image registry is reachable here, so the image is not built:
the Dockerfile is parsed with the ``dockerfile`` package (Docker's own parser) and
checked for what matters (stages, an unprivileged user, a health check, the lock file
used by hash, no test tool, no compiler in the final stage), and the entrypoint the
image runs is run here, outside a container, against a real database and gunicorn.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml  # type: ignore[import-untyped]

from tests.conftest import TEST_ENV
from tests.server_process import free_port

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "deploy" / "docker-entrypoint.sh"
VENV_BIN = Path(sys.executable).parent
TEST_TOOLS = (
    "pytest", "hypothesis", "ruff", "mypy", "localstripe", "schemathesis", "aiosmtpd",
    "matplotlib", "[test]", "[plot]", "psycopg-binary", "psycopg[binary]",
)  # fmt: skip
JOBS = ("receipts", "anchor", "verify", "reconcile", "autopay", "export")


@pytest.fixture(scope="module")
def instructions() -> tuple[Any, ...]:
    return tuple(dockerfile.parse_file(str(REPO / "Dockerfile")))


def stages(instructions: tuple[Any, ...]) -> list[list[Any]]:
    found: list[list[Any]] = []
    for instruction in instructions:
        if instruction.cmd == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_the_image_is_built_in_stages_and_runs_as_an_unprivileged_user(instructions: tuple[Any, ...]) -> None:
    build, runtime = stages(instructions)
    assert build[0].value[-2:] == ("AS", "build") and runtime[0].value[-2:] == ("AS", "runtime")
    assert all(re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim-\$\{DEBIAN_RELEASE\}", s[0].value[0])
               for s in (build, runtime))  # fmt: skip
    users = [i.value[0] for i in runtime if i.cmd == "USER"]
    assert users == ["10001:10001"]  # numeric, so a runtime can check it is not root
    user_at = next(n for n, i in enumerate(runtime) if i.cmd == "USER")
    entry_at = next(n for n, i in enumerate(runtime) if i.cmd == "ENTRYPOINT")
    assert user_at < entry_at
    # The final stage takes the virtual environment from the build stage, and only that.
    from_build = [i.value for i in runtime if i.cmd == "COPY" and "--from=build" in i.flags]
    assert from_build == [("/opt/securepay/venv", "/opt/securepay/venv")]


def test_the_final_stage_has_libpq_but_no_compiler_and_the_build_uses_the_distributions(
    instructions: tuple[Any, ...],
) -> None:
    build, runtime = stages(instructions)
    build_runs = " ".join(i.value[0] for i in build if i.cmd == "RUN")
    runtime_runs = " ".join(i.value[0] for i in runtime if i.cmd == "RUN")
    assert "libpq-dev" in build_runs and "build-essential" in build_runs
    assert "libpq5" in runtime_runs
    assert "libpq-dev" not in runtime_runs and "build-essential" not in runtime_runs
    assert "pip" not in runtime_runs  # nothing is installed in the final stage by pip


def test_dependencies_come_from_the_lock_file_by_hash_and_no_test_tool_is_installed(
    instructions: tuple[Any, ...],
) -> None:
    runs = [i.value[0] for i in instructions if i.cmd == "RUN"]
    assert any("pip install --require-hashes --no-deps -r requirements.lock" in run for run in runs)
    assert any(i.cmd == "COPY" and i.value[0] == "requirements.lock" for i in instructions)
    # The app itself is installed without resolving anything more.
    assert any("pip install --no-deps /wheels/securepay-" in run for run in runs)
    text = (REPO / "Dockerfile").read_text()
    for tool in TEST_TOOLS:
        assert tool not in "\n".join(line for line in text.splitlines() if not line.startswith("#")), tool
    for ignored in (".git", ".venv", "secrets"):
        assert ignored in (REPO / ".dockerignore").read_text().splitlines()


def test_the_healthcheck_asks_livez_and_the_entrypoint_is_the_deploy_script(
    instructions: tuple[Any, ...],
) -> None:
    (_, runtime) = stages(instructions)
    (check,) = [i for i in runtime if i.cmd == "HEALTHCHECK"]
    assert check.value[0] == "CMD" and "http://127.0.0.1:8000/livez" in check.value[-1]
    assert {"--interval=15s", "--timeout=3s"} <= set(check.flags)
    (entrypoint,) = [i for i in runtime if i.cmd == "ENTRYPOINT"]
    assert entrypoint.value == ("securepay-entrypoint",)
    copies = {i.value[-1]: i.value[0] for i in runtime if i.cmd == "COPY"}
    assert copies["/usr/local/bin/securepay-entrypoint"] == "deploy/docker-entrypoint.sh"
    assert os.access(ENTRYPOINT, os.X_OK)
    (cmd,) = [i for i in runtime if i.cmd == "CMD"]
    assert cmd.value == ("serve",)


# --- the lock file --------------------------------------------------------------------


def _requirement_name(spec: str) -> str:
    return re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_the_lock_pins_every_runtime_dependency_by_hash_and_nothing_for_tests() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = (REPO / "requirements.lock").read_text()
    pinned = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock, re.MULTILINE))
    runtime = project["dependencies"] + project["optional-dependencies"]["c"]
    wanted = {_requirement_name(spec) for spec in runtime}
    assert wanted <= set(pinned), wanted - set(pinned)
    assert "psycopg-c" in pinned and "psycopg-binary" not in pinned  # against the system's libpq
    assert "tzdata" in pinned and "matplotlib" not in pinned
    for tool in ("pytest", "hypothesis", "ruff", "mypy", "localstripe", "schemathesis"):
        assert tool not in pinned
    # Every pinned requirement carries at least one sha256.
    blocks = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 6)[-1])
    for block in blocks:
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_plot_extra_holds_matplotlib_and_the_base_install_does_not() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if _requirement_name(d) == "matplotlib"]
    assert [_requirement_name(d) for d in project["optional-dependencies"]["plot"]] == ["matplotlib"]


# --- compose ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def test_compose_runs_postgres_then_the_migration_once_then_the_app(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["migrate"] and services["migrate"]["restart"] == "no"
    app = services["app"]
    assert app["command"] == ["serve"]
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["ports"] == ["127.0.0.1:8000:8000"]  # loopback: TLS ends in the proxy


def test_compose_runs_every_timers_job(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in JOBS:
        command = services[name]["command"]
        assert command[0] == "every" and command[1].isdigit() and command[2:] == ["job", name]
        assert (REPO / "deploy" / f"securepay-{name}.timer").exists()


def test_compose_hands_secrets_over_as_files_only(compose: dict[str, Any]) -> None:
    secret_words = ("PEPPER", "TOKEN", "API_KEY", "PASSWORD", "DATABASE_URL")
    for name, service in compose["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if any(word in variable for word in secret_words):
                assert variable.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, variable)
                assert str(value).removeprefix("/run/secrets/") in service["secrets"], (name, variable)
    for secret in compose["secrets"].values():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/")


# --- the entrypoint, outside a container ---------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    files = {
        "SECUREPAY_PEPPER": TEST_ENV["SECUREPAY_PEPPER"],
        "TWILIO_AUTH_TOKEN": TEST_ENV["TWILIO_AUTH_TOKEN"],
        "STRIPE_API_KEY": "sk_test_entrypoint",
        "SECUREPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'securepay.db'}",
    }
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "SECUREPAY_HOME": str(REPO),
        "SECUREPAY_PUBLIC_URL": TEST_ENV["SECUREPAY_PUBLIC_URL"],
        "STRIPE_API_BASE": "http://127.0.0.1:9",
        "SECUREPAY_AUDIT_ANCHOR_FILE": str(tmp_path / "anchors.jsonl"),
        "PYTHONUNBUFFERED": "1",
    }
    for name, value in files.items():
        (secrets / name.lower()).write_text(value + "\n")
        env[f"{name}_FILE"] = str(secrets / name.lower())
    return {**env, **extra}


def entrypoint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script
        [str(ENTRYPOINT), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - 127.0.0.1 only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except OSError:
        return 0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = _env(tmp_path, SECUREPAY_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1", SECUREPAY_THREADS="2")
    assert entrypoint("migrate", env=env).returncode == 0
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own script
            [str(ENTRYPOINT), "serve"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while _get(f"{base}/livez") != 200:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_the_entrypoint_migrates_then_serves_ready_with_secrets_from_files(
    served: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, process = served
    assert _get(f"{base}/readyz") == 200  # database reachable, schema at head, processor set
    assert _get(f"{base}/healthz") == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0  # gunicorn is the process: it got the signal itself


def test_the_entrypoint_refuses_to_serve_with_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = entrypoint("serve", env=_env(tmp_path, SECUREPAY_TIMEZONE="Mars/Base"))
    assert result.returncode == 2
    assert result.stderr == "error: SECUREPAY_TIMEZONE is not a known time zone: 'Mars/Base'\n"


def test_a_secret_given_twice_is_refused(tmp_path: Path) -> None:
    env = _env(tmp_path, SECUREPAY_PEPPER="another-pepper-0123456789")
    result = entrypoint("config", "check", env=env)
    assert result.returncode == 2
    assert "both SECUREPAY_PEPPER and SECUREPAY_PEPPER_FILE are set" in result.stderr
    assert "another-pepper" not in result.stderr


def test_the_timers_jobs_run_through_the_entrypoint(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert entrypoint("migrate", env=env).returncode == 0
    anchored = entrypoint("job", "anchor", env=env)
    assert anchored.returncode == 0, anchored.stderr
    assert '"head_seq": 0' in (tmp_path / "anchors.jsonl").read_text()
    verified = entrypoint("job", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert "chain intact" in verified.stdout and "1 anchor matched" in verified.stdout
    unknown = entrypoint("job", "nothing", env=env)
    assert unknown.returncode == 2 and "unknown job 'nothing'" in unknown.stderr


def test_every_repeats_a_job_until_it_is_stopped(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert entrypoint("migrate", env=env).returncode == 0
    anchors = tmp_path / "anchors.jsonl"
    process = subprocess.Popen(  # noqa: S603 - our own script
        [str(ENTRYPOINT), "every", "1", "job", "anchor"], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not anchors.exists() or len(anchors.read_text().splitlines()) < 2:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert code == 0  # stopped cleanly, as `docker compose stop` would
