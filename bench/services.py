"""The processes the benchmark starts (localstripe, gunicorn), each stopped on the way out."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    """A process the benchmark needs did not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class StripeEmulator:
    """``python -m bench.stripe_server``: localstripe on 127.0.0.1 (or ``host``) in its own process."""

    def __init__(self, log: IO[str], *, host: str = LOOPBACK) -> None:
        self._log = log
        self.host = host
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> StripeEmulator:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.stripe_server", self.host],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self._process.stdout is not None  # noqa: S101 - stdout=PIPE above
        line = self._process.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.__exit__(None, None, None)
            raise ServiceError("localstripe did not start: see the bench log")
        self.port = int(line[1])
        return self

    @property
    def pid(self) -> int:
        return 0 if self._process is None else self._process.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            if self._process.stdin is not None:
                self._process.stdin.close()
            _stop(self._process, 10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None


class Gunicorn:
    """``gunicorn APP`` on 127.0.0.1:port (or ``host``:port) with ``workers`` workers,
    output to ``log``. ``prefix`` runs it under another command, e.g. ``ip netns exec NS``
    (which execs gunicorn itself: the pid is still the master's)."""

    def __init__(
        self,
        app: str,
        *,
        workers: int,
        env: Mapping[str, str],
        log: IO[str],
        extra_args: tuple[str, ...] = (),
        ready_path: str = "/healthz",
        ready_status: int | None = 200,
        port: int | None = None,
        host: str = LOOPBACK,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.host = host
        self._prefix = prefix
        self.workers = workers
        self.port = port or free_port()
        self._env = dict(env)
        self._log = log
        self._extra = extra_args
        self._ready_path = ready_path
        self._ready_status = ready_status
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServiceError("gunicorn is not running")
        return self._process.pid

    def command(self) -> list[str]:
        return [
            *self._prefix,
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{self.host}:{self.port}",
            "--workers",
            str(self.workers),
            "--backlog",
            "2048",
            *self._extra,
            self.app,
        ]

    def __enter__(self) -> Gunicorn:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and gunicorn
            self.command(), cwd=REPO, env=self._env, stdout=self._log, stderr=self._log
        )
        try:
            self._wait_ready(60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        last = "no answer"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ServiceError(f"gunicorn {self.app} exited with {self._process.returncode}: see the log")
            conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
            try:
                conn.request("GET", self._ready_path)
                status = conn.getresponse().status
                if self._ready_status is None or status == self._ready_status:
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = str(exc)
            finally:
                conn.close()
            time.sleep(0.2)
        raise ServiceError(f"gunicorn {self.app} not ready in {seconds:.0f} s ({last})")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            _stop(self._process, 30)
            self._process = None


def clean_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any SecurePay, Stripe or Twilio setting, plus ``overrides``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECUREPAY_", "STRIPE_", "TWILIO_"))
    }
    env.update(overrides)
    return env
