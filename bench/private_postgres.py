"""A PostgreSQL server of the benchmark's own, for more connections than a shared one allows.

256 concurrent chain writers need 256 connections; a shared development server keeps
``max_connections`` at its default of 100. This starts the machine's own PostgreSQL
binaries (``initdb``, ``postgres``) on a fresh data folder, listening on 127.0.0.1 at a
free port only (no Unix socket outside the folder), trust authentication, the
durability settings of a default server (``fsync``, ``synchronous_commit`` on) and
``max_connections`` as asked; stopped and deleted on the way out. Run as root, the
server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from bench.services import LOOPBACK, ServiceError, free_port

SERVER_USER = "postgres"


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise ServiceError("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql")
    return Path(found[-1]).parent


class PrivatePostgres:
    def __init__(self, max_connections: int = 300) -> None:
        self.max_connections = max_connections
        self.port = free_port()
        self._folder = Path(tempfile.mkdtemp(prefix="securepay-bench-pg-"))
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/{database}"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        shutil.chown(self._folder, SERVER_USER)
        return ["runuser", "-u", SERVER_USER, "--", *argv]

    def __enter__(self) -> PrivatePostgres:
        bin_dir = _binaries()
        data = self._folder / "data"
        subprocess.run(  # noqa: S603 - the machine's own initdb on our folder
            self._as_server_user(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        log = (self._folder / "server.log").open("wb")
        self._process = subprocess.Popen(  # noqa: S603 - the machine's own postgres
            self._as_server_user(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-c",
                    f"listen_addresses={LOOPBACK}",
                    "-c",
                    f"unix_socket_directories={self._folder}",
                    "-c",
                    f"max_connections={self.max_connections}",
                    "-c",
                    "shared_buffers=128MB",
                ]
            ),
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(host=LOOPBACK, port=self.port, user="postgres", dbname="postgres"):
                    return self
            except psycopg.OperationalError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise ServiceError(f"the private PostgreSQL did not start: see {self._folder / 'server.log'}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            subprocess.run(  # noqa: S603 - a fast shutdown: sessions are ended, nothing is kept
                self._as_server_user(
                    [str(_binaries() / "pg_ctl"), "-D", str(self._folder / "data"), "stop", "-m", "fast"]
                ),
                capture_output=True,
                check=False,
                timeout=30,
            )
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None
        shutil.rmtree(self._folder, ignore_errors=True)
