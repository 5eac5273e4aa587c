"""Logging through structlog: JSON lines for machines, and a FlowEvent logger.

``configure_logging(structured=True)`` makes every structlog logger write one
JSON object per line (timestamp, level, event and fields); ``structured=False``
gives readable console lines. ``log_flow_events()`` is a flow middleware that
logs every FlowEvent with its tenant and trace_id; events carry no payloads,
so neither do these lines.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from penguiflow_agents._log import get_logger

if TYPE_CHECKING:
    from penguiflow_agents.runtime._events import FlowEvent

__all__ = ["configure_logging", "log_flow_events"]

# Event kinds logged at warning level (the rest at the level passed to log_flow_events).
_WARNING_KINDS = frozenset({"node_error", "node_timeout", "node_failed", "deadline_skip"})


def _level_number(level: int | str) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(
            f"unknown log level {level!r}; use one of debug, info, warning, error, critical."
        )
    return number


def configure_logging(
    *, structured: bool = True, level: int | str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog for the whole process.

    ``structured=True``: JSON lines (``{"event": ..., "level": ..., "timestamp": ...}``);
    otherwise human-readable lines. Records below ``level`` are dropped.
    Output goes to ``stream`` (default: standard error).
    """
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if structured
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if structured:
        processors.append(structlog.processors.dict_tracebacks)
    processors.append(renderer)
    out = stream if stream is not None else sys.stderr
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(renderer, processors[:3], out, _level_number(level))


class _PenguiflowHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` puts on the ``penguiflow_agents`` standard logger."""


def _route_stdlib(renderer: Any, pre_chain: list[Any], out: TextIO, level: int) -> None:
    """Lines our modules write with standard ``logging`` get the same format, level, stream
    and run context (``run_id``, ``trace_id``, ``tenant``) as structlog's."""
    logger = logging.getLogger("penguiflow_agents")
    for old in [h for h in logger.handlers if isinstance(h, _PenguiflowHandler)]:
        logger.removeHandler(old)
    handler = _PenguiflowHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=renderer, foreign_pre_chain=pre_chain)
    )
    logger.addHandler(handler)
    logger.setLevel(level)


def log_flow_events(
    logger: Any | None = None, *, level: int | str = "info"
) -> Callable[[FlowEvent], None]:
    """A middleware for ``create(middlewares=[...])`` that logs every FlowEvent.

    Each line is named after the event kind and carries tenant, trace_id,
    node, attempt, latency_ms, queue depths and, for failures, the error and
    its code; failures are logged at warning level. Never a payload: events
    have none, and a validation error (pydantic, jsonschema) is described by
    where and why only, never the input it quotes. Other exceptions appear as
    ``"TypeName: message"``, so keep secrets out of the messages nodes raise.
    """
    log = logger if logger is not None else get_logger("penguiflow_agents.flow")
    number = _level_number(level)

    def log_flow_event(event: FlowEvent) -> None:
        kind = event.kind.value
        fields: dict[str, Any] = {
            "tenant": event.tenant,
            "trace_id": event.trace_id,
            "node": event.node,
            "attempt": event.attempt,
            "q_in": event.queue_depth_in,
            "q_out": event.queue_depth_out,
        }
        if event.latency_s is not None:
            fields["latency_ms"] = round(event.latency_s * 1000.0, 3)
        if event.error is not None:
            fields["error"] = event.error
        if event.error_code is not None:
            fields["error_code"] = event.error_code
        log.log(max(number, logging.WARNING) if kind in _WARNING_KINDS else number, kind, **fields)

    return log_flow_event
