"""The systemd units of deploy/ (issue 13): the web service checks its settings before it
starts, and each job that keeps a promise (receipts retried, anchors taken, the trail
verified, the ledger reconciled, Auto Pay drafted, the posting file written) has a timer
that catches up after downtime and a failure that someone hears about.

Where ``systemd-analyze`` exists the files are verified by it, on a copy whose
``/opt/securepay`` is this checkout (it checks that each command exists)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent

# Each job, the securepay command its service runs, and why it must run.
JOBS = {
    "receipts": "payments send-receipts",
    "anchor": "audit anchor --out /var/lib/securepay/anchors/securepay-anchors.jsonl",
    "verify": "audit verify --anchor /var/lib/securepay/anchors/securepay-anchors.jsonl",
    "reconcile": "payments reconcile --since",
    "autopay": "autopay run",
    "export": "payments export --batch --out",
}


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values...]}} (keys may repeat, as systemd allows)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(sections: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    (value,) = sections[section][key]
    return value


@pytest.mark.parametrize("name", sorted(JOBS))
def test_each_job_has_a_persistent_timer_and_a_oneshot_service_that_reports_failure(name: str) -> None:
    timer = unit(DEPLOY / f"securepay-{name}.timer")
    assert one(timer, "Timer", "OnCalendar")
    assert one(timer, "Timer", "Persistent") == "true"  # a run missed while down happens at boot
    assert one(timer, "Timer", "Unit") == f"securepay-{name}.service"
    assert one(timer, "Install", "WantedBy") == "timers.target"

    service = unit(DEPLOY / f"securepay-{name}.service")
    assert one(service, "Unit", "OnFailure") == "securepay-notify@%n.service"
    assert one(service, "Service", "Type") == "oneshot"
    assert one(service, "Service", "User") == "securepay"
    assert one(service, "Service", "EnvironmentFile") == "/etc/securepay/securepay.env"
    assert one(service, "Service", "NoNewPrivileges") == "true"
    assert JOBS[name] in one(service, "Service", "ExecStart")
    # The same job as the image runs it (compose: deploy/docker-entrypoint.sh "job NAME").
    entrypoint = (DEPLOY / "docker-entrypoint.sh").read_text()
    assert f"        {name})" in entrypoint
    assert JOBS[name].split(" --")[0] in entrypoint


def test_the_web_service_checks_its_settings_before_gunicorn_starts() -> None:
    service = unit(DEPLOY / "securepay.service")
    pre = one(service, "Service", "ExecStartPre")
    assert pre.endswith("/securepay config check --quiet")
    assert "gunicorn" in one(service, "Service", "ExecStart")


def test_the_notifier_logs_at_crit_and_mails_the_failed_units_status(tmp_path: Path) -> None:
    notify = unit(DEPLOY / "securepay-notify@.service")
    assert one(notify, "Service", "ExecStart") == "/opt/securepay/deploy/securepay-notify %i"
    script = DEPLOY / "securepay-notify"
    assert os.access(script, os.X_OK)
    # Stand-ins for logger, systemctl and sendmail that record what they were given.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("logger", "systemctl", "sendmail"):
        stub = bin_dir / tool
        stub.write_text(
            f'#!/bin/sh\necho "{tool} $*" >> "{tmp_path}/calls"\n'
            f'[ "{tool}" = sendmail ] && cat >> "{tmp_path}/mail"\n'
            f'[ "{tool}" = systemctl ] && echo "securepay-verify.service: failed"\n'
            "exit 0\n"
        )
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SECUREPAY_ALERT_EMAIL": "it@example.coop"}
    subprocess.run([str(script), "securepay-verify.service"], env=env, check=True, timeout=30)  # noqa: S603
    calls = (tmp_path / "calls").read_text()
    assert "logger -p daemon.crit -t securepay-notify SecurePay job failed: securepay-verify.service" in calls
    mail = (tmp_path / "mail").read_text()
    assert mail.startswith("To: it@example.coop\nSubject: [SecurePay] securepay-verify.service failed on ")
    assert "securepay-verify.service: failed" in mail


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_every_unit_and_timer_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # /opt/securepay -> a tree whose commands are this checkout's.
    home = tmp_path / "opt-securepay"
    (home / ".venv" / "bin").mkdir(parents=True)
    for tool in ("securepay", "gunicorn"):
        (home / ".venv" / "bin" / tool).symlink_to(VENV_BIN / tool)
    (home / "deploy").mkdir()
    (home / "deploy" / "securepay-notify").symlink_to(DEPLOY / "securepay-notify")
    units = tmp_path / "units"
    units.mkdir()
    names = sorted(p.name for p in DEPLOY.iterdir() if p.suffix in (".service", ".timer"))
    assert len(names) == 2 * len(JOBS) + 2  # the jobs, the web service, the notifier
    for name in names:
        text = (DEPLOY / name).read_text().replace("/opt/securepay", str(home))
        (units / name).write_text(text)
    result = subprocess.run(  # noqa: S603
        ["systemd-analyze", "verify", *[str(units / name) for name in names]],
        capture_output=True, text=True, timeout=120, check=False, cwd=units,
    )  # fmt: skip
    # Only what concerns our files: the host's own units may have their own complaints.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "securepay" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr
