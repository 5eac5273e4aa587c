"""What travels through a flow: envelopes, stream chunks, final answers and errors.

A flow runs in one of two modes, chosen per emitted item:

* **payload mode**: any object that is not a ``Message`` travels as is; results
  come back in arrival order from ``flow.fetch()``;
* **envelope mode**: a ``Message`` carries the payload with the caller's
  ``Headers``, a ``trace_id``, an optional absolute deadline and free-form
  ``meta``; results, chunks and failures are delivered per trace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from penguiflow_agents._identity import Headers

__all__ = [
    "FinalAnswer",
    "FlowError",
    "FlowErrorCode",
    "Headers",
    "Message",
    "StreamChunk",
    "new_trace_id",
]

P = TypeVar("P")

_HEX = "0123456789abcdef"
_VARIANT = "89ab"


def new_trace_id() -> str:
    """A fresh random UUID4 as 32 hex digits (what ``uuid.uuid4().hex`` returns, faster)."""
    h = os.urandom(16).hex()
    return h[:12] + "4" + h[13:16] + _VARIANT[_HEX.index(h[16]) & 3] + h[17:]


@dataclass(slots=True, kw_only=True)
class Message(Generic[P]):
    """An envelope: a payload plus who sent it, which trace it belongs to and until when.

    ``deadline_s`` is an absolute wall-clock time (``time.time()``), so it keeps
    its meaning across processes. Treat a message as immutable once emitted: the
    runtime may hand the same object to several successors.
    """

    payload: P
    headers: Headers
    trace_id: str = field(default_factory=new_trace_id)
    deadline_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


_new_message = object.__new__


def rewrap(msg: Message[Any], payload: Any) -> Message[Any]:
    """The same envelope around a new payload (headers, trace, deadline and meta shared)."""
    out: Message[Any] = _new_message(Message)
    out.payload = payload
    out.headers = msg.headers
    out.trace_id = msg.trace_id
    out.deadline_s = msg.deadline_s
    out.meta = msg.meta
    return out


@dataclass(slots=True, kw_only=True)
class StreamChunk:
    """One piece of a streamed output of a trace.

    ``seq`` counts 0, 1, 2... per ``(trace_id, stream_id)``; ``done`` marks the
    last chunk of that stream. ``meta`` carries structured data (a status
    update, a progress step) for whoever forwards the stream to a UI.
    """

    trace_id: str
    stream_id: str
    seq: int
    text: str
    done: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    node: str | None = None


@dataclass(slots=True, kw_only=True)
class FinalAnswer:
    """The answer a flow ends with: text for a person, ``data`` for a program."""

    text: str
    data: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


class FlowErrorCode(StrEnum):
    """Why a trace ended without its result."""

    NODE_EXCEPTION = "node_exception"  # the node raised (after its retries)
    NODE_TIMEOUT = "node_timeout"  # every attempt ran past NodePolicy.timeout_s
    VALIDATION_ERROR = "validation_error"  # input or output did not match the node's model
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the message's deadline_s passed
    CANCELLED = "cancelled"  # flow.cancel(trace_id)
    UNROUTABLE = "unroutable"  # a router found no successor for the message
    HOP_BUDGET_EXCEEDED = "hop_budget_exceeded"  # a loop ran more node steps than max_hops
    NO_RESULT = "no_result"  # the trace finished and no egress node produced (another) result
    STOPPED = "stopped"  # the flow was stopped while the trace was in flight


class FlowError(Exception):
    """A terminal failure of one trace, delivered to whoever fetches or streams it.

    ``code`` says why (``FlowErrorCode``), ``node`` where, ``trace_id`` which
    run. The original exception, if any, is chained as ``__cause__``.
    """

    def __init__(
        self,
        code: FlowErrorCode | str,
        message: str,
        *,
        node: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        self.code = FlowErrorCode(code)
        self.message = message
        self.node = node
        self.trace_id = trace_id
        super().__init__(message)

    def __str__(self) -> str:
        where = f"node={self.node!r}, " if self.node is not None else ""
        return f"{self.message} [{self.code.value}; {where}trace_id={self.trace_id!r}]"

    def __repr__(self) -> str:
        return (
            f"FlowError(code={self.code.value!r}, message={self.message!r}, "
            f"node={self.node!r}, trace_id={self.trace_id!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (no payloads: only code, message, node and trace_id)."""
        return {
            "code": self.code.value,
            "message": self.message,
            "node": self.node,
            "trace_id": self.trace_id,
        }
