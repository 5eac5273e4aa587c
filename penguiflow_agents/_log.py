"""The library's loggers: structlog when the application configured it, else standard logging.

A library must not decide where its logs go. structlog, left unconfigured,
prints to standard output, which would mix our log lines into a user's
program output. So each line is written, at the moment it is logged:

- through structlog (``structlog.get_logger(name)``) when structlog was
  configured (the CLI's ``configure_logging``, the user's own setup, or
  ``structlog.testing.capture_logs``);
- otherwise to the standard ``logging`` logger ``name``, with the event,
  its fields and the run's context variables (``run_id``, ``trace_id``,
  ``tenant``) in the message: it goes wherever the application's logging
  sends it (unconfigured: warnings and errors on standard error).

Nothing here configures anything.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["LibraryLogger", "get_logger"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def get_logger(name: str) -> LibraryLogger:
    return LibraryLogger(name)


class LibraryLogger:
    """``debug``/``info``/``warning``/``error``/``exception``/``log`` and ``bind``, like structlog's."""

    __slots__ = ("_context", "_name", "_proxy", "_std")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}
        self._proxy: Any = structlog.get_logger(name)
        self._std = logging.getLogger(name)

    def bind(self, **values: Any) -> LibraryLogger:
        return LibraryLogger(self._name, {**self._context, **values})

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            logger = self._proxy.bind(**self._context) if self._context else self._proxy
            getattr(logger, method)(event, **fields)
            return
        std = self._std
        if not std.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", method == "exception")
        merged = {**structlog.contextvars.get_contextvars(), **self._context, **fields}
        text = " ".join(f"{key}={value!r}" for key, value in merged.items())
        std.log(
            level, "%s %s" if text else "%s", event, *((text,) if text else ()), exc_info=exc_info
        )

    def debug(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def critical(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.CRITICAL, "critical", event, fields)

    def exception(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.ERROR, "exception", event, fields)

    def log(self, level: int | str, event: str, /, **fields: Any) -> None:
        number = level if isinstance(level, int) else _LEVELS.get(level.lower(), logging.INFO)
        if structlog.is_configured():
            logger = self._proxy.bind(**self._context) if self._context else self._proxy
            logger.log(number, event, **fields)
            return
        self._emit(number, "log", event, fields)
