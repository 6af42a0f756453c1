"""The real app (or the fallback app) under gunicorn, in a subprocess on 127.0.0.1.

    with GunicornServer(env, app="ivr:create_app()") as server:
        HttpTransport(server.base_url) ...

The server uses the repository's ``gunicorn.conf.py``, binds a free loopback port, and
is ready when ``/healthz`` (or ``ready_path``) answers 200. It is always stopped: SIGTERM,
then SIGKILL after ``stop_timeout``. Its log (stdout and stderr) goes to a file the test
can read with ``server.log()``. Everything is bounded in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "gunicorn.conf.py"
GUNICORN = Path(sys.executable).parent / "gunicorn"


class ServerFailed(RuntimeError):
    """The server did not start, or did not stop, in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GunicornServer:
    def __init__(
        self,
        env: dict[str, str],
        *,
        log_path: Path,
        app: str = "ivr:create_app()",
        workers: int = 2,
        threads: int = 2,
        ready_path: str = "/healthz",
        start_timeout: float = 30.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.port = free_port()
        self.app = app
        self.log_path = log_path
        self.ready_path = ready_path
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **env,
            "SECUREPAY_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
            "SECUREPAY_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> GunicornServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
                [str(GUNICORN), "-c", str(CONFIG), self.app],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            if self.status(self.ready_path) == 200:
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerFailed(f"gunicorn was not ready in {self.start_timeout} s:\n{self.log()}")

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole process group. Returns the exit code."""
        process = self.process
        if process is None:
            return self.returncode
        self.process = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.returncode = process.returncode
        return self.returncode

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- looking at it -----------------------------------------------------------------

    @property
    def master_pid(self) -> int:
        if self.process is None:
            raise ServerFailed("the server is not running")
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The master's children (Linux: /proc), oldest first."""
        children = Path(f"/proc/{self.master_pid}/task/{self.master_pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def wait_for_workers(
        self, count: int, *, excluding: Collection[int] = (), timeout: float = 30.0
    ) -> list[int]:
        """Wait until ``count`` workers run that are not in ``excluding`` and /healthz answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            fresh = [pid for pid in pids if pid not in excluding]
            if len(pids) >= count and fresh and self.status(self.ready_path) == 200:
                return fresh
            time.sleep(0.1)
        raise ServerFailed(f"no {count} workers in {timeout} s:\n{self.log()}")

    def status(self, path: str, timeout: float = 2.0) -> int | None:
        """The HTTP status of ``GET path``, or None when nothing answered."""
        request = urllib.request.Request(self.base_url + path)  # noqa: S310 - http://127.0.0.1 only
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
