"""FlowEvents: what the runtime reports about every step, to middlewares and the store.

An event never carries a payload: only where (node), which run (tenant,
trace_id), which attempt, how long, how full the queues were, and for a
failure the error's type, message and code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

__all__ = ["FlowEvent", "FlowEventKind", "Middleware"]


class FlowEventKind(StrEnum):
    NODE_START = "node_start"  # an attempt begins
    NODE_SUCCESS = "node_success"  # the node returned; latency_s is the whole handling time
    NODE_ERROR = "node_error"  # an attempt raised
    NODE_RETRY = "node_retry"  # another attempt follows after a backoff (latency_s = the delay)
    NODE_TIMEOUT = "node_timeout"  # an attempt ran past NodePolicy.timeout_s
    NODE_FAILED = "node_failed"  # the node gave up: the trace ends with a FlowError
    NODE_CANCELLED = (
        "node_cancelled"  # in-flight work was cancelled (trace cancel, failure or deadline)
    )
    DEADLINE_SKIP = "deadline_skip"  # a message past its deadline was not processed
    TRACE_CANCEL_START = "trace_cancel_start"
    TRACE_CANCEL_FINISH = "trace_cancel_finish"


@dataclass(slots=True, kw_only=True)
class FlowEvent:
    """One thing that happened in a flow. Built by the runtime; read-only by convention."""

    kind: FlowEventKind
    ts: float  # time.time()
    node: str | None
    trace_id: str | None
    tenant: str | None
    attempt: int = 0
    latency_s: float | None = None
    queue_depth_in: int = 0  # messages waiting in the node's inbox
    queue_depth_out: int = 0  # messages waiting in its successors' inboxes
    error: str | None = None  # "TypeName: message" of a failure
    error_code: str | None = None  # FlowErrorCode of a terminal failure

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (what the state store records and the logger writes)."""
        return {
            "kind": self.kind.value,
            "ts": self.ts,
            "node": self.node,
            "trace_id": self.trace_id,
            "tenant": self.tenant,
            "attempt": self.attempt,
            "latency_s": self.latency_s,
            "queue_depth_in": self.queue_depth_in,
            "queue_depth_out": self.queue_depth_out,
            "error": self.error,
            "error_code": self.error_code,
        }


Middleware: TypeAlias = Callable[[FlowEvent], Awaitable[None] | None]
"""Sees every FlowEvent. A plain function or an ``async def``; it is awaited
inline, so keep it quick (persist through ``state_store=`` instead, which is
written off the hot path). An exception it raises is logged and ignored."""

_new_event = object.__new__


def make_event(
    kind: FlowEventKind,
    ts: float,
    node: str | None,
    trace_id: str | None,
    tenant: str | None,
    attempt: int,
    latency_s: float | None,
    queue_depth_in: int,
    queue_depth_out: int,
    error: str | None = None,
    error_code: str | None = None,
) -> FlowEvent:
    """Positional constructor for the hot path (a keyword-only ``__init__`` costs 3x)."""
    ev: FlowEvent = _new_event(FlowEvent)
    ev.kind = kind
    ev.ts = ts
    ev.node = node
    ev.trace_id = trace_id
    ev.tenant = tenant
    ev.attempt = attempt
    ev.latency_s = latency_s
    ev.queue_depth_in = queue_depth_in
    ev.queue_depth_out = queue_depth_out
    ev.error = error
    ev.error_code = error_code
    return ev
