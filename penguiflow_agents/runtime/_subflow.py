"""subflow: a node that runs a message through another flow and returns its result."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

from penguiflow_agents.exceptions import NotFoundError, UserError

from ._context import Context
from ._envelopes import FlowError, Message, StreamChunk
from ._node import Node, NodePolicy

if TYPE_CHECKING:
    from ._flow import Flow

__all__ = ["subflow"]

DRAIN_TIMEOUT_S: Final = 1.0  # reading a cancelled child trace's outcome, which is already there


def subflow(
    flow: Flow, *, name: str, forward_chunks: bool = True, policy: NodePolicy | None = None
) -> Node:
    """A node that runs each message through ``flow`` and returns that flow's result.

    The child message keeps the trace_id, headers, deadline and (a copy of)
    meta, so the subflow's events and errors belong to the same run. Chunks
    the subflow streams are re-emitted on the parent's stream (same
    ``stream_id``) unless ``forward_chunks=False``. If the parent's trace is
    cancelled, the child trace is cancelled too; a failure of the subflow
    fails the parent's trace with the same code, naming both nodes.
    ``flow`` is started with the parent (if not already running) and stopped
    with it if the parent started it. One call per trace at a time.
    Envelope mode only.
    """
    started_here = False

    def on_start() -> None:
        nonlocal started_here
        if flow._state == "created":
            flow.run()
            started_here = True

    async def on_stop() -> None:
        if started_here:
            await flow.stop()

    async def run_subflow(msg: Any, ctx: Context) -> Any:
        if not isinstance(msg, Message):
            raise UserError(
                f"subflow {name!r} carries the trace into another flow, which needs envelope "
                "mode; emit Messages into the flow."
            )
        if msg.trace_id in flow._traces:
            raise UserError(
                f"subflow {name!r} is already running trace {msg.trace_id!r}; a trace can be "
                "inside one call of a subflow at a time."
            )
        child = Message(
            payload=msg.payload,
            headers=msg.headers,
            trace_id=msg.trace_id,
            deadline_s=msg.deadline_s,
            meta=dict(msg.meta),
        )
        result: Any = None
        try:
            await flow.emit(child)
            async for item in flow.stream(child.trace_id):
                if isinstance(item, StreamChunk):
                    if forward_chunks:
                        await ctx.emit_chunk(
                            item.text, done=item.done, meta=item.meta, stream_id=item.stream_id
                        )
                else:
                    result = item
        except FlowError as err:
            raise FlowError(
                err.code,
                f"subflow {name!r} failed at its node {err.node!r}: {err.message}",
                node=name,
                trace_id=msg.trace_id,
            ) from err
        except asyncio.CancelledError:
            with contextlib.suppress(NotFoundError):
                await flow.cancel(child.trace_id)
                # Nobody will read the child's `cancelled` outcome: take it so the child forgets the trace.
                await flow.fetch(child.trace_id, raise_errors=False, timeout_s=DRAIN_TIMEOUT_S)
            raise
        return result

    node = Node(run_subflow, name=name, policy=policy)
    node._on_start = on_start
    node._on_stop = on_stop
    return node
