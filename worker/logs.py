"""Logging: configure structlog once; stdlib loggers (APScheduler, urllib3) share the same shape.

One JSON object per line on stdout when it is not a TTY (Heroku's Logplex), the console
renderer on a TTY. Every event passes through `redact`, after exceptions are formatted, so no
secret reaches a line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from worker.redact import redact
from worker.text import printable


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_redact_value(v) for v in value]
    if value is None or isinstance(value, int | float) or hasattr(value, "isoformat"):
        return value
    return redact(str(value))  # any other object: as the renderer would print it, redacted


def _redact_event(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {key: _redact_value(value) for key, value in event.items()}


def _printable_event(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """For a terminal (the console renderer writes a string as it is): a value's control
    characters shown escaped, not obeyed (`text.printable`); a traceback keeps its line breaks.
    JSON lines need none of this: the encoder writes them as `\\u001b`."""
    for key, value in event.items():
        if isinstance(value, str):
            lines = value.split("\n") if key == "exception" else [value]
            event[key] = "\n".join(printable(line) for line in lines)
    return event


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def configure(log_format: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Set up structlog and the stdlib root logger. Safe to call more than once."""
    stream = stream or sys.stdout
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(line_buffering=True)  # an unbuffered event stream, line by line
    as_json = log_format == "json" or (log_format == "auto" and not stream.isatty())

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        final: list[Any] = [
            structlog.processors.format_exc_info,
            _redact_event,
            structlog.processors.JSONRenderer(default=_json_default),
        ]
    else:
        final = [
            structlog.processors.format_exc_info,
            _redact_event,
            _printable_event,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler's "Running job ..." lines add nothing to our own run lines.
    logging.getLogger("apscheduler.executors").setLevel(max(logging.WARNING, root.level))

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "nightshift") -> Any:
    return structlog.get_logger(name)
