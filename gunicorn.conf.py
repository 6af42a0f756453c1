"""gunicorn settings for SecurePay: ``gunicorn -c gunicorn.conf.py "ivr:create_app()"``.

gunicorn reads ``gunicorn.conf.py`` from the working directory by itself; ``-c`` makes it
explicit. Every choice is explained in the README, section Production; in short:

- ``SECUREPAY_BIND`` (default ``127.0.0.1:8000``, comma-separated for several): the app
  listens on loopback behind a TLS proxy (deploy/nginx.conf), never on a public address.
- ``WEB_CONCURRENCY`` workers (default 2 x cores + 1), ``SECUREPAY_THREADS`` threads each
  (default 4, ``gthread``): a webhook mostly waits on PostgreSQL or the processor, and a
  slow processor must not take every worker while other callers wait in silence.
- ``timeout = 12``: below Twilio's 15 s, so a worker that stops answering is killed and
  replaced before Twilio gives up on the call. With threads this is a heartbeat of the
  worker process, not a limit on one request: requests are bounded by the processor
  client (4 s x 2 tries, plus a lookup) and the database.
- ``graceful_timeout = 15``: on SIGTERM (a deploy), a confirm step in progress may finish
  its charge and write its outcome; Twilio has hung up on anything older.
- ``max_requests`` with jitter: workers are replaced now and then, not all at once.
- Logs: gunicorn's error and access logs go through the app's structlog redaction
  (``ivr.logs.configure_logging``); the access log shows no query string, no header and
  no digit run of a path (the portal API has account numbers in its paths).
- ``worker_exit`` stops the receipt dispatcher (receipts being sent finish, queued ones
  stay pending for ``securepay payments send-receipts``) and waits for the text
  receipts under way.
- Settings are checked here, in the master, before any worker is forked: a bad or
  missing one is one line on stderr naming the variable, and the master exits with
  status 78 (``EX_CONFIG``), which ``deploy/securepay.service`` will not restart
  (``RestartPreventExitStatus=``). Without this each worker printed a traceback and
  gunicorn exited 3, restarted by systemd forever.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import structlog
from gunicorn import glogging  # type: ignore[import-untyped]

from ivr.logs import configure_logging
from ivr.settings import Settings, SettingsError

# sysexits.h EX_CONFIG: the unit's RestartPreventExitStatus= names it (no restart loop).
CONFIG_ERROR_EXIT = 78


def _refuse(message: str) -> NoReturn:
    print(f"securepay: {message}", file=sys.stderr, flush=True)
    raise SystemExit(CONFIG_ERROR_EXIT)  # not an Exception: gunicorn adds no traceback


def _whole(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        _refuse(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def _serves_the_app() -> bool:
    """Whether this gunicorn serves ``ivr:create_app()``; the fallback app
    (``ivr.fallback:create_fallback_app()``) needs none of its settings."""
    return any(arg.startswith("ivr:create_app") for arg in sys.argv[1:])


def _check_app_settings() -> None:
    """The app's own settings, as every worker's ``create_app()`` will read them."""
    if not _serves_the_app():
        return
    try:
        Settings.from_env(os.environ).require_web()
    except SettingsError as exc:
        _refuse(str(exc))


bind = [part.strip() for part in os.environ.get("SECUREPAY_BIND", "127.0.0.1:8000").split(",")]
bind = [part for part in bind if part]
workers = _whole("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count() + 1)
worker_class = "gthread"
threads = _whole("SECUREPAY_THREADS", 4)
timeout = 12
graceful_timeout = 15
keepalive = 5  # behind a proxy that reuses its upstream connections
max_requests = _whole("SECUREPAY_MAX_REQUESTS", 10_000)  # ~1,000 calls: a recycle re-imports the app
max_requests_jitter = max_requests // 10
# Not preloaded: each worker builds its own app after the fork, so no database
# connection, thread pool or Stripe client is ever shared between processes.
preload_app = False
# Requests too big for a webhook die in gunicorn before they reach the app.
limit_request_line = 4094
limit_request_fields = 60
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# gunicorn 25.1+ opens a control socket in $HOME by default: two servers on one host
# would share its path. Signals (TERM, HUP, TTIN/TTOU) do the same work.
control_socket_disable = True
loglevel = os.environ.get("SECUREPAY_GUNICORN_LOGLEVEL", "info")
_check_app_settings()

# Digit runs in a path, except an API version (``/v1/``): account numbers, ids.
_PATH_DIGITS = re.compile(r"(?<!/v)\d+")
# The atoms an access log line may use; everything else (headers, environ) reads "-".
_SAFE_ATOMS = ("h", "l", "t", "s", "m", "H", "b", "B", "T", "D", "M", "L", "p")


def mask_path(path: str) -> str:
    """``/api/v1/accounts/10004821/phones/3`` -> ``/api/v1/accounts/#/phones/#``."""
    return _PATH_DIGITS.sub("#", path)


class SecurePayLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger, writing through the app's redacting structlog handler."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        configure_logging(os.environ.get("SECUREPAY_LOG_FORMAT", "").strip() or "console")
        for log in (self.error_log, self.access_log):
            for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                log.removeHandler(handler)
            log.propagate = True  # to the root logger's one redacting handler

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        everything = super().atoms(resp, req, environ, request_time)
        atoms = {name: everything[name] for name in _SAFE_ATOMS if name in everything}
        path = mask_path(str(environ.get("PATH_INFO", "")))
        atoms["U"] = path
        atoms["q"] = ""  # query strings are never logged
        atoms["r"] = f"{environ.get('REQUEST_METHOD', '-')} {path} {environ.get('SERVER_PROTOCOL', '-')}"
        atoms["u"] = "-"  # no user name from an Authorization header
        atoms["f"] = "-"
        atoms["a"] = "-"
        return atoms


logger_class = SecurePayLogger


# The texts' own HTTP timeout (payments.texts.TIMEOUT_SECONDS) fits in graceful_timeout.
TEXTS_WAIT_SECONDS = 10.0


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's receipt dispatcher, let its text receipts under way finish, and
    close its database connections."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("securepay")
    if services is None:
        return
    shutdown = getattr(services.notifier, "shutdown", None)
    if callable(shutdown):
        shutdown(cancel_queued=True)
    # Text receipts under way (each on a daemon thread, seconds at most) are sent and
    # recorded before the process goes; within graceful_timeout.
    wait = getattr(services.texter, "wait", None)
    if callable(wait):
        wait(TEXTS_WAIT_SECONDS)
    services.engine.dispose()
    structlog.get_logger("securepay.gunicorn").info("worker_stopped", worker_pid=worker.pid)


# --- metrics (SECUREPAY_METRICS=on): prometheus-client's multiprocess mode ---------------
# Each worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR; a scrape adds them
# up. The directory must be set before any worker imports prometheus_client, so it is set
# here, in the master, and inherited by every worker it forks. Default: one per master in
# the temporary directory (the unit's PrivateTmp=); set it to a tmpfs path to choose.
_METRICS = os.environ.get("SECUREPAY_METRICS", "").strip().lower() in ("1", "true", "yes", "on")
if _METRICS:
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", str(Path(tempfile.gettempdir()) / f"securepay-metrics-{os.getpid()}")
    )


def on_starting(server: Any) -> None:
    """Start with an empty metrics directory: files of an earlier run would be added in."""
    if _METRICS:
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        for stale in folder.glob("*.db"):  # only prometheus-client's files, whatever the folder
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone (recycled, killed): drop its live gauges; its counters stay summed."""
    if _METRICS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
