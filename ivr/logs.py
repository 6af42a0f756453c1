"""Logging: structlog for our events, the stdlib's for everyone else's, one redaction.

SECURITY rule 20: a careless log call must not leak a PIN, an SSN, a card number or a
token. So redaction is not left to each call site; ``redact_secrets`` runs on every
event, ours and those of werkzeug or gunicorn (routed through the root logger), and it
runs after exceptions have been turned into text, so an exception message that quotes
the digits is scrubbed too.

It is deliberately blunt: a key that merely *sounds* secret (``company`` contains
``pan``) is redacted, and any long run of digits is masked. Losing a harmless field in
a log line is cheap; a card number in a log file puts the whole system in PCI scope.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ivr.version import build

__all__ = ["bind_call", "clear_call", "configure_logging", "redact_secrets"]

REDACTED = "[redacted]"
DIGITS = "[digits]"

# A key whose lowercased name contains one of these holds a secret, whatever its value.
SECRET_KEY_PARTS = (
    "digits", "pin", "ssn", "tax_id", "password", "passwd", "secret", "token",
    "authorization", "auth_header", "cookie", "card", "pan", "cvv", "cvc",
    "security_code", "expiration", "expiry", "pepper", "api_key",
)  # fmt: skip

# Our own identifiers: never scrubbed, so a log line can always be tied to its call.
_UNSCRUBBED_KEYS = frozenset({"call_sid", "request_id"})

# Keys ProcessorFormatter uses internally; they are removed before rendering.
_FORMATTER_KEYS = frozenset({"_record", "_from_structlog"})

# Seven or more digits, single spaces or dashes allowed between them (card numbers,
# SSNs, phone numbers, account numbers), not glued to a letter or digit on either side,
# so ids such as Twilio's ``CA0123456789abcdef...`` are left whole.
_DIGIT_RUN = re.compile(r"(?<![^\W_])\d(?:[ -]?\d){6,}(?![^\W_])")
# An ISO date (2026-11-30) has eight digits but is not a secret worth losing it for.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# What every match of ``_DIGIT_RUN`` contains, without its costly look-behind: a text
# this does not find in cannot hold a run to mask.
_SEVEN_DIGITS = re.compile(r"\d(?:[ -]?\d){6}")
_SECRET_KEY = re.compile("|".join(re.escape(part) for part in SECRET_KEY_PARTS))
_KEY_VERDICTS: dict[str, str | None] = {}
_KEY_VERDICTS_MAX = 4096

_SHORT_INT = 1_000_000
_MAX_DEPTH = 16
_PROCESSORS: list[Processor] = []  # structlog's chain; see configure_logging
_HANDLER_NAME = "securepay"


def _mask(match: re.Match[str]) -> str:
    run = match.group(0)
    return run if _ISO_DATE.fullmatch(run) else DIGITS


def _scrub_text(text: str) -> str:
    # Most values hold no seven digits in a row at all (state and event names, short
    # numbers): one quick scan says so; only the others pay for the full pattern.
    if _SEVEN_DIGITS.search(text) is None:
        return text
    return _DIGIT_RUN.sub(_mask, text)


def _key_verdict(key: str) -> str | None:
    """None for a secret-named key, else the key as it is written out (scrubbed).

    Keys are few (the names our code and logging use), so each is judged once and the
    verdict kept; a stranger-chosen flood of keys is judged each time past the bound.
    """
    try:
        return _KEY_VERDICTS[key]
    except KeyError:
        pass
    verdict = None if _SECRET_KEY.search(key.lower()) else _scrub_text(key)
    if len(_KEY_VERDICTS) < _KEY_VERDICTS_MAX:
        _KEY_VERDICTS[key] = verdict
    return verdict


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and _key_verdict(key) is None


def _clean(value: object, depth: int) -> object:
    """Scrub one value: containers recursively, everything else as its text."""
    if depth > _MAX_DEPTH:
        return "[too deep]"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, int) and -_SHORT_INT < value < _SHORT_INT:
        return value  # six digits at most: nothing to mask
    if isinstance(value, int | float):
        # Numbers are kept as numbers unless their digits would be masked as text.
        text = str(value)
        return value if _scrub_text(text) == text else DIGITS
    if isinstance(value, Mapping):
        return _clean_mapping(value, depth + 1)
    if isinstance(value, list | tuple | set | frozenset):
        items = [_clean(item, depth + 1) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    # Anything else (exceptions, dates, models) is rendered by its text: scrub that text,
    # so a renderer's repr() or str() cannot bring back what we masked.
    return _scrub_text(str(value))


def _clean_mapping(mapping: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
    cleaned: dict[Any, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            cleaned[key] = _clean(value, depth)
            continue
        written = _key_verdict(key)
        if written is None:
            cleaned[key] = REDACTED
        elif key in _UNSCRUBBED_KEYS or key in _FORMATTER_KEYS:
            cleaned[key] = value
        else:
            cleaned[written] = _clean(value, depth)
    return cleaned


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named keys and long digit runs, at any depth.

    An ``exc_info`` still in the event is turned into text first, so a traceback never
    reaches a renderer unscrubbed even in a chain that forgot ``format_exc_info``.
    """
    if "exc_info" in event_dict:
        event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
    return _clean_mapping(event_dict, 0)


def _renderer(fmt: str) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    raise ValueError(f"log format must be 'console' or 'json', got {fmt!r}")


LogFormat = Literal["console", "json"]


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """``ProcessorFormatter`` that writes our own events without copying their record.

    For a structlog event the base class copies the ``LogRecord`` (so other handlers see
    it unchanged), runs the processors on a copy of the event with the copied record in
    it, and hands the line to ``logging.Formatter.format``, which returns it as it is
    (``%(message)s``; no exception on the record: ``format_exc_info`` put it in the
    event). The same line comes out of the processors run with the record itself, which
    they do not change. Other libraries' records go the base class's way.
    """

    def format(self, record: logging.LogRecord) -> str:
        event = record.msg
        logger = getattr(record, "_logger", None)
        name = getattr(record, "_name", None)
        if (
            not isinstance(event, dict)
            or logger is None
            or name is None
            or record.exc_info
            or record.stack_info
        ):
            return super().format(record)
        line: Any = {**event, "_record": record, "_from_structlog": True}
        for processor in self.processors:
            line = processor(self.logger if self.logger is not None else logger, name, line)
        return str(line)


def add_build(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: which build wrote the line (``version``, ``commit``). It runs
    after redaction, which would mask a commit hash's digit runs."""
    running = build()
    event_dict.setdefault("version", running.version)
    if running.commit:
        event_dict.setdefault("commit", running.commit)
    return event_dict


def configure_logging(fmt: LogFormat | str = "console", stream: TextIO | None = None) -> None:
    """Send structlog events and stdlib log records to ``stream`` (stderr), redacted.

    ``fmt`` is ``"console"`` (key=value lines for people) or ``"json"`` (one object per
    line, for a log collector); anything else raises ``ValueError``.

    Both go through one handler on the root logger with one ``ProcessorFormatter``, so
    there is a single place where lines are written; each is redacted once on its way.
    Calling this again replaces that handler instead of adding a second one.
    """
    renderer = _renderer(fmt)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
    ]
    # Stamped after redaction: our own ISO time needs no scrubbing (the digit-run scan
    # of it was the redaction's dearest step), and it still comes last in the line.
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    # The same list object each time, changed in place: loggers are cached on first use
    # (a module's ``log`` is then built once, not on every call), and a cached logger
    # keeps the list it was built with, so it must stay the configured one.
    _PROCESSORS[:] = [
        structlog.stdlib.filter_by_level,
        *shared,
        structlog.processors.format_exc_info,
        # Redact before the event leaves structlog: other handlers on the root
        # logger (an error tracker, pytest's capture) then see only clean events.
        redact_secrets,
        stamp,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Each line is redacted once: structlog's events above, before they leave structlog;
    # other libraries' records here, at the end of their pre-chain (``redact_secrets``
    # turns an exception into text before it scrubs).
    formatter = _Formatter(
        foreign_pre_chain=[*shared, redact_secrets, stamp],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([add_build] if fmt == "json" else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def bind_call(call_sid: str, request_id: str) -> None:
    """Tag every log line of this request with its call and request ids."""
    structlog.contextvars.bind_contextvars(call_sid=call_sid, request_id=request_id)


def clear_call() -> None:
    """Forget the request's context, so nothing bound for one call leaks into the next
    request served by the same worker thread."""
    structlog.contextvars.clear_contextvars()
