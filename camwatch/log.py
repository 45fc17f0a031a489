"""Logging: the only structlog.configure call, and the redaction of secrets.

One event per line: JSON off a terminal (what journald and log shippers want), a readable console
format on one. Every secret the configuration holds (API key, webhook secrets, notify URLs) is
registered here and replaced by `***` in every string of every event, tracebacks included, so a
secret cannot leak through a log line whatever code logs it.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words


def register_secrets(values: Iterable[str | None]) -> None:
    """Given secret values, make every later log line show `***` in their place."""
    with _secrets_lock:
        for value in values:
            if value and len(value) >= _MIN_SECRET_LEN:
                _secrets.add(value)


def redact(text: str) -> str:
    """Given a string, return it with every registered secret replaced by `***`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _secrets:
        return event
    for key, value in event.items():
        event[key] = _redact_value(value)
    return event


def _redact_rendered(_: Any, __: str, rendered: str) -> str:
    # Runs last, on the rendered line: catches a secret inside a formatted traceback too.
    return redact(rendered) if _secrets else rendered


_SYSLOG_LEVELS = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def clip(text: str, limit: int = 200) -> str:
    """Return `text` cut to `limit` characters (an ellipsis marks the cut), for a log field or a
    status line that outside text (a caption, a request path) must not blow up."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def syslog_priority(line: str) -> int:
    """Given a rendered log line, return its syslog priority (LOG_INFO when unknown)."""
    for name, priority in _SYSLOG_LEVELS.items():
        if f'"level": "{name}"' in line or f"[{name}" in line:
            return priority
    return 6


class SyslogStream:
    """A write-only stream that sends each line to syslog, for `--daemon` with `log.syslog`."""

    def __init__(self, ident: str = "camwatch") -> None:
        import syslog

        self._syslog = syslog
        syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._syslog.syslog(syslog_priority(line), line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _LockedStream:
    """A text stream that many threads write whole lines to, one at a time."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            written = self._stream.write(text)
            self._stream.flush()
            return written

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())


def configure(
    level: str = "info", fmt: str | None = None, stream: TextIO | SyslogStream | None = None
) -> None:
    """Configure structlog (and the standard logging of libraries) to write one event per line
    to `stream` (default stderr): `fmt` "json", "console", or None to choose by whether the stream
    is a terminal."""
    stream = stream or sys.stderr
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    # structlog and the standard logging of libraries write to the same stream from many
    # threads: through one lock, each line in one write, or two lines written at once could
    # interleave into one that is not JSON (seen when watchdog warned during a burst).
    shared = _LockedStream(stream)
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
            _redact_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.WriteLoggerFactory(file=shared),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Libraries (urllib3, watchdog, apprise) log through the standard module, and Python warnings
    # can be routed there: render them like our own events (one JSON object per line off a
    # terminal) and redacted, keeping their warnings only.
    handler = logging.StreamHandler(shared)  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact_processor,
                renderer,
                _redact_rendered,
            ],
        )
    )
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.captureWarnings(True)


def _level_number(level: str) -> int:
    return {"debug": 10, "info": 20, "warning": 30, "error": 40}.get(level.lower(), 20)


def get_logger(name: str) -> Any:
    """Return a structlog logger for module `name`."""
    return structlog.get_logger(name)
