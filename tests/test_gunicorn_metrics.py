"""``/metrics`` under the real gunicorn (multiprocess mode), with a recycled worker.

Two workers, each recycled after about 20 requests (``SECUREPAY_MAX_REQUESTS``). The
metrics directory holds the files of an earlier run, which the master must clear at
start. After 60 forged webhooks spread over workers that come and go, a scrape answered
by any worker counts exactly 60: a dead worker's counts stay, nothing of the earlier
run is added, and the live-worker gauge counts only the workers alive.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server_process import REPO, GunicornServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

FORGED = 60


def _post_unsigned(url: str) -> int:
    data = b"CallSid=CA00000000000000000000000000000000&From=%2B12025550143"
    request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310 - 127.0.0.1 only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def _scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _stale_run(folder: Path) -> None:
    """What an earlier server left behind: 1,000 signature rejections and a live worker."""
    code = (
        "from ivr import metrics; metrics.signature_rejected('missing'); "
        "metrics.SIGNATURE_REJECTIONS.labels('missing').inc(999); metrics.WORKERS.set(1)"
    )
    subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code], cwd=REPO, check=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(folder)},
    )  # fmt: skip
    assert list(folder.glob("*.db"))


def test_a_recycled_worker_leaves_its_counts_and_nothing_stale(
    backend: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    _stale_run(folder)
    env = {
        **test_env,
        "SECUREPAY_METRICS": "on",
        "SECUREPAY_MAX_REQUESTS": "20",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    server = GunicornServer(env, log_path=tmp_path / "gunicorn.log", workers=2, threads=1)
    with server:
        first = set(server.worker_pids())
        assert [_post_unsigned(f"{server.base_url}/ivr/voice") for _ in range(FORGED)] == [403] * FORGED
        fresh = server.wait_for_workers(2, excluding=first)
        assert fresh, "no worker was recycled"
        samples = _scrape(server.base_url)
        # A fresh worker's pid shows before it has loaded the app (and set its gauge):
        # wait, bounded, for both to have loaded; stale gauges would only add to it.
        deadline = time.monotonic() + 20
        while samples.get(("securepay_workers", ()), 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            samples = _scrape(server.base_url)
        again = _scrape(server.base_url)  # answered by either worker: the same totals
        code = server.stop()
    log = server.log()
    assert code == 0, log
    key = ("securepay_signature_rejections_total", (("reason", "missing"),))
    assert samples[key] == again[key] == FORGED
    webhooks = ("securepay_webhook_duration_seconds_count", (("status", "403"), ("step", "voice")))
    assert samples[webhooks] == FORGED
    assert samples[("securepay_workers", ())] == 2  # the dead workers' gauges are dropped
    assert samples[("securepay_database_up", ())] == 1
    assert "Traceback" not in log
