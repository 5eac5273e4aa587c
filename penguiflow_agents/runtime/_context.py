"""Context: what a node sees of the runtime while it handles one message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import UserError

from ._envelopes import Message, StreamChunk

if TYPE_CHECKING:
    from ._compiled import NodeRuntime
    from ._engine import Engine
    from ._node import Node
    from ._trace import Trace

__all__ = ["Context"]


class Context:
    """Handed to ``async def fn(msg, ctx)`` with each message; valid during that call only.

    * ``trace_id``, ``headers``, ``deadline_s``: of the message's envelope
      (``None`` in payload mode);
    * ``node``: this node's name; ``attempt``: 1 on the first try, 2 on the first retry...;
    * ``await ctx.emit(value, to=None)``: send an extra output to the successors
      (or only to those named in ``to``); a bare value is put into this
      message's envelope;
    * ``await ctx.emit_chunk(text, done=False, meta=None, stream_id=None)``:
      stream a piece of output to whoever streams this trace.

    Cancellation needs no API: ``flow.cancel(trace_id)`` cancels the task
    running the node, so whatever the node awaits (a tool call, a subflow) is
    cancelled with it.
    """

    __slots__ = ("_flow", "_msg", "_rt", "_trace", "attempt")

    def __init__(self, flow: Engine, rt: NodeRuntime, msg: Any, trace: Trace | None) -> None:
        self._flow = flow
        self._rt = rt
        self._msg = msg
        self._trace = trace
        self.attempt = 1

    @property
    def node(self) -> str:
        return self._rt.name

    @property
    def trace_id(self) -> str | None:
        return self._trace.trace_id if self._trace is not None else None

    @property
    def headers(self) -> Headers | None:
        msg = self._msg
        return msg.headers if isinstance(msg, Message) else None

    @property
    def deadline_s(self) -> float | None:
        msg = self._msg
        return msg.deadline_s if isinstance(msg, Message) else None

    @property
    def successors(self) -> tuple[Node, ...]:
        """This node's successors in the graph (routers choose among them)."""
        return tuple(rt.node for rt in self._rt.succs)

    async def emit(
        self, value: Any, *, to: Node | str | Sequence[Node | str] | None = None
    ) -> None:
        """Send ``value`` on to the successors (or only to ``to``); waits while their inboxes are full."""
        await self._flow._route(self._rt, self._msg, self._trace, value, to)

    async def emit_chunk(
        self,
        text: str,
        *,
        done: bool = False,
        meta: dict[str, Any] | None = None,
        stream_id: str | None = None,
    ) -> StreamChunk:
        """Stream a chunk of this trace; ``seq`` counts per ``(trace, stream_id)`` from 0.

        ``stream_id`` defaults to the node's name. Waits while the trace's
        stream buffer is full (nobody reading). Envelope mode only.
        """
        trace = self._trace
        if trace is None:
            raise UserError(
                f"node {self._rt.name!r} called emit_chunk() in payload mode; streaming needs "
                "envelope mode: emit a Message into the flow."
            )
        sid = stream_id if stream_id is not None else self._rt.name
        chunk = StreamChunk(
            trace_id=trace.trace_id,
            stream_id=sid,
            seq=trace.next_seq(sid),
            text=text,
            done=done,
            meta=meta if meta is not None else {},
            node=self._rt.name,
        )
        await trace.push_chunk(chunk, self._flow._stream_maxsize)
        return chunk

    def __repr__(self) -> str:
        return f"Context(node={self.node!r}, trace_id={self.trace_id!r}, attempt={self.attempt})"
