"""The flow runtime: nodes joined by bounded queues, envelopes with tenant and trace_id.

    flow = create(a.to(b), b.to())          # edges; b is the egress
    async with flow:                        # run() ... stop()
        await flow.emit(Message(payload=x, headers=Headers(tenant="acme")))
        result = await flow.fetch(trace_id=...)

Per-trace cancel, deadlines, retries with backoff, streaming chunks, FlowEvents
to middlewares (and optionally a StateStore), routing, joins, subflows, and
remote agents (``RemoteNode`` over a ``RemoteTransport``; ``A2ATransport``
needs the ``a2a`` extra and is imported on first use).
"""

from penguiflow_agents._identity import Headers
from penguiflow_agents._logging import configure_logging, log_flow_events

from ._concurrent import MapItemError, map_concurrent
from ._context import Context
from ._envelopes import FinalAnswer, FlowError, FlowErrorCode, Message, StreamChunk, new_trace_id
from ._events import FlowEvent, FlowEventKind, Middleware
from ._flow import Flow, create
from ._join import Join, join_k
from ._node import Edges, Node, NodePolicy
from ._remote import (
    RemoteAgent,
    RemoteEvent,
    RemoteNode,
    RemoteRequest,
    RemoteSkill,
    RemoteTransport,
)
from ._routing import Route, predicate_router, table_router, union_router
from ._subflow import subflow

__all__ = [
    "A2ATransport",
    "Context",
    "Edges",
    "FinalAnswer",
    "Flow",
    "FlowError",
    "FlowErrorCode",
    "FlowEvent",
    "FlowEventKind",
    "Headers",
    "Join",
    "MapItemError",
    "Message",
    "Middleware",
    "Node",
    "NodePolicy",
    "RemoteAgent",
    "RemoteEvent",
    "RemoteNode",
    "RemoteRequest",
    "RemoteSkill",
    "RemoteTransport",
    "Route",
    "StreamChunk",
    "configure_logging",
    "create",
    "join_k",
    "log_flow_events",
    "map_concurrent",
    "new_trace_id",
    "predicate_router",
    "subflow",
    "table_router",
    "union_router",
]


def __getattr__(name: str) -> object:
    if name == "A2ATransport":
        try:
            from ._a2a import A2ATransport
        except ImportError as exc:
            raise ImportError(
                f"A2ATransport needs the a2a extra (pip install 'penguiflow-agents[a2a]'): {exc}"
            ) from None
        globals()[name] = A2ATransport
        return A2ATransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
