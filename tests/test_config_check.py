"""``securepay config check``, ``--version``, ``-h`` and shell completion (issue 13;
contract section 4). Run as the installed command, as systemd's ``ExecStartPre=`` runs it."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli.config import check, variable_of
from ivr.settings import Settings
from ivr.version import build, git_commit

REPO = Path(__file__).resolve().parent.parent
SECUREPAY = Path(sys.executable).parent / "securepay"

PEPPER = "config-check-pepper-5e1b9a"
TWILIO = "twilio-token-aa11bb22cc33"
STRIPE = "sk_live_config_check_9f8e7d"
PORTAL = "portal-token-61c0ffee"
SMTP_PASSWORD = "smtp-password-h0rse-battery"
DB_PASSWORD = "db-password-s3cr3t"
GOOD = {
    "SECUREPAY_PEPPER": PEPPER,
    "TWILIO_AUTH_TOKEN": TWILIO,
    "SECUREPAY_PUBLIC_URL": "https://pay.example.coop",
    "STRIPE_API_KEY": STRIPE,
    "SECUREPAY_PORTAL_TOKEN": PORTAL,
    "SECUREPAY_DATABASE_URL": f"postgresql+psycopg://securepay:{DB_PASSWORD}@db.internal/securepay",
    "SECUREPAY_SMTP_HOST": "mail.example.coop",
    "SECUREPAY_SMTP_STARTTLS": "on",
    "SECUREPAY_SMTP_USERNAME": "securepay",
    "SECUREPAY_SMTP_PASSWORD": SMTP_PASSWORD,
}
SECRETS = (PEPPER, TWILIO, STRIPE, PORTAL, SMTP_PASSWORD, DB_PASSWORD)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command in a process of its own, with only ``env`` (and PATH)."""
    return subprocess.run(  # noqa: S603 - our own console script
        [str(SECUREPAY), *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )  # fmt: skip


@dataclasses.dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def check_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """``securepay config check ARGS`` in this process (faster), over exactly ``env``."""
    from ivr.cli import main

    def invoke(*args: str, env: dict[str, str]) -> Ran:
        for name in list(os.environ):
            if name.startswith(("SECUREPAY_", "TWILIO_", "STRIPE_")):
                monkeypatch.delenv(name)
        result = CliRunner().invoke(main, ["config", "check", *args], env=env)
        return Ran(result.exit_code, result.stdout, result.stderr)

    return invoke


def test_good_settings_are_listed_every_one_with_secrets_masked_and_exit_0() -> None:
    result = run("config", "check", env=GOOD)  # as ExecStartPre= runs it
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == f"securepay {build().describe()}"
    for spec in dataclasses.fields(Settings):  # every setting, by its variable
        assert re.search(rf"^{variable_of(spec.name)}\s", out, re.MULTILINE), spec.name
    for secret in SECRETS:
        assert secret not in out + result.stderr
    assert re.search(r"^SECUREPAY_PEPPER\s+\*+ \(set\)$", out, re.MULTILINE)
    assert re.search(r"^SECUREPAY_DATABASE_URL\s+postgresql\+psycopg://securepay:\*\*\*@db.internal/securepay$",
                     out, re.MULTILINE)  # fmt: skip
    # Defaults filled in, values as they will be used.
    assert re.search(r"^SECUREPAY_SMTP_PORT\s+587$", out, re.MULTILINE)  # STARTTLS: submission port
    assert re.search(r"^SECUREPAY_PAYMENT_MAX\s+5000.00$", out, re.MULTILINE)
    assert re.search(r"^SECUREPAY_TIMEZONE\s+America/Chicago$", out, re.MULTILINE)
    assert result.stderr == ""  # nothing to warn about


def test_every_variable_config_check_names_is_in_the_readme_settings_table() -> None:
    readme = (REPO / "README.md").read_text()
    for spec in dataclasses.fields(Settings):
        assert f"`{variable_of(spec.name)}`" in readme, variable_of(spec.name)


def test_each_bad_value_is_one_line_naming_its_variable_and_exit_2() -> None:
    env = {
        **GOOD,
        "SECUREPAY_PEPPER": "short",
        "SECUREPAY_TIMEZONE": "Mars/Olympus_Mons",
        "SECUREPAY_PAYMENT_MAX": "lots",
        "SECUREPAY_PIN_FAILURES_PER_CALL": "0",
        "SECUREPAY_SMTP_SSL": "maybe",
    }
    result = run("config", "check", env=env)
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert len(errors) == 5, result.stderr
    assert all(line.startswith("error: ") for line in errors)
    for name in ("SECUREPAY_PEPPER", "SECUREPAY_TIMEZONE", "SECUREPAY_PAYMENT_MAX",
                 "SECUREPAY_PIN_FAILURES_PER_CALL", "SECUREPAY_SMTP_SSL"):  # fmt: skip
        assert sum(name in line for line in errors) == 1, name
    assert "short" not in result.stderr  # not even a bad pepper is echoed
    assert "Traceback" not in result.stderr


def test_settings_that_exclude_each_other_are_one_error_not_two(check_cli: Callable[..., Ran]) -> None:
    env = {**GOOD, "SECUREPAY_SMTP_SSL": "on"}  # STARTTLS is on too
    result = check_cli("--quiet", env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: SECUREPAY_SMTP_STARTTLS and SECUREPAY_SMTP_SSL exclude each other: choose one"
    ]


def test_the_web_service_needs_the_twilio_token_and_the_timers_do_not(check_cli: Callable[..., Ran]) -> None:
    env = {key: value for key, value in GOOD.items() if key != "TWILIO_AUTH_TOKEN"}
    serving = check_cli("--quiet", env=env)
    assert serving.returncode == 2
    assert serving.stderr == "error: TWILIO_AUTH_TOKEN is not set: webhooks cannot be verified\n"
    assert check_cli("--quiet", "--commands-only", env=env).returncode == 0


@pytest.mark.parametrize("change, warning", [
    ({"SECUREPAY_PUBLIC_URL": "http://pay.example.coop"}, "SECUREPAY_PUBLIC_URL is http://"),
    ({"STRIPE_API_KEY": ""}, "STRIPE_API_KEY is not set: payments are off"),
    ({"SECUREPAY_SMTP_HOST": ""}, "SECUREPAY_SMTP_HOST is not set: no e-mail receipts"),
    ({"SECUREPAY_PORTAL_TOKEN": ""}, "SECUREPAY_PORTAL_TOKEN is not set: the portal API is off"),
    ({"SECUREPAY_SMTP_STARTTLS": "off"}, "SECUREPAY_SMTP_PASSWORD is sent in clear"),
])  # fmt: skip
def test_warnings_name_what_works_but_should_not_and_exit_0(
    check_cli: Callable[..., Ran], change: dict[str, str], warning: str
) -> None:
    result = check_cli("--quiet", env={**GOOD, **change})
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --quiet: only errors and warnings
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"warning: {warning}")


def test_the_smtp_password_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp_password"
    secret.write_text(SMTP_PASSWORD + "\n")
    env = {key: value for key, value in GOOD.items() if key != "SECUREPAY_SMTP_PASSWORD"}
    settings = Settings.from_env({**env, "SECUREPAY_SMTP_PASSWORD_FILE": str(secret)})
    assert settings.smtp_password == SMTP_PASSWORD
    missing = check({**env, "SECUREPAY_SMTP_PASSWORD_FILE": str(tmp_path / "absent")})
    assert missing.errors == ["SECUREPAY_SMTP_PASSWORD_FILE cannot be read: No such file or directory"]


def test_version_names_the_package_version_and_the_commit() -> None:
    result = run("--version")
    assert result.returncode == 0
    commit = git_commit(REPO)
    assert commit is not None
    assert result.stdout == f"securepay {version('securepay')} (commit {commit[:12]})\n"
    head = subprocess.run(  # noqa: S603
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=30
    )  # fmt: skip
    assert commit == head.stdout.strip()


def test_a_build_commit_file_wins_over_the_checkout(tmp_path: Path) -> None:
    from ivr import version as version_module

    sha = "0123456789abcdef0123456789abcdef01234567"
    marker = Path(version_module.__file__).parent / "BUILD_COMMIT"
    assert not marker.exists()
    marker.write_text(sha + "\n")
    try:
        assert run("--version").stdout.endswith(f"(commit {sha[:12]})\n")
    finally:
        marker.unlink()


def test_dash_h_is_help_for_the_group_and_every_command() -> None:
    from ivr.cli import main

    for args in ([], ["config", "check"], ["payments", "export"]):
        result = CliRunner().invoke(main, [*args, "-h"], prog_name="securepay")
        assert result.exit_code == 0
        assert result.stdout.startswith("Usage: securepay")
        assert result.stdout == CliRunner().invoke(main, [*args, "--help"], prog_name="securepay").stdout


@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o nosort -F _securepay_completion securepay"),
    ("zsh", "#compdef securepay"),
    ("fish", "complete --no-files --command securepay"),
])  # fmt: skip
def test_shell_completion_scripts_are_generated_as_the_readme_says(shell: str, marker: str) -> None:
    result = run(env={"_SECUREPAY_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0
    assert marker in result.stdout
    assert f"_SECUREPAY_COMPLETE={shell}_source securepay" in (REPO / "README.md").read_text()


def test_changelog_releases_are_dated_and_the_newest_is_the_package_version() -> None:
    headings = re.findall(r"^## (.+)$", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings[0] == "Unreleased"
    releases = headings[1:]
    assert releases, "no release heading"
    for heading in releases:
        assert re.fullmatch(r"\d+\.\d+\.\d+ - \d{4}-\d{2}-\d{2}", heading), heading
    assert releases[0].split(" - ")[0] == version("securepay")
