"""``planner_node(planner)``: the planner as a node of a flow.

The envelope's identity, trace and deadline flow into the run and from there
into every tool call: ``Message.headers`` is who the run executes as,
``trace_id`` is the run's trace id (tools receive it in ``CallContext``), and
``deadline_s`` (wall clock) caps the run. ``flow.cancel(trace_id)`` cancels the
node's task, which cancels the model call or the tool calls in flight and
records the run as cancelled.

The payload is the question (a ``str``), or a mapping with ``query`` and
optionally ``session_id``. The node returns the ``RunResult`` (a paused run
included: resume it with ``planner.resume``). With ``stream=True`` the answer
text is streamed as chunks of the trace (``stream_id="answer"``) when the
model streams, and each finished tool call as a chunk whose ``meta`` holds
the step (``{"event": "tool_call_finished", "step": {...}}``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.planner._planner import ReactPlanner
from penguiflow_agents.planner._types import RunFinished, RunResult, TextChunk, ToolCallFinished
from penguiflow_agents.runtime import Context, Message, Node, NodePolicy

__all__ = ["planner_node"]


def _query(payload: Any) -> tuple[str, str | None]:
    if isinstance(payload, str):
        return payload, None
    if isinstance(payload, Mapping) and isinstance(payload.get("query"), str):
        session = payload.get("session_id")
        return payload["query"], str(session) if session is not None else None
    raise UserError(
        f"planner_node needs a question: a str, or a mapping with 'query' (and optionally "
        f"'session_id'); got {payload!r}."
    )


def planner_node(
    planner: ReactPlanner,
    *,
    name: str = "planner",
    concurrency: int = 16,
    stream: bool = False,
    policy: NodePolicy | None = None,
) -> Node:
    """A ``Node`` that answers each envelope's question with ``planner`` (envelope mode only).

    ``concurrency`` runs that many questions at once (one planner serves them all).
    """

    async def run_planner(msg: Any, ctx: Context) -> RunResult:
        if not isinstance(msg, Message):
            raise UserError(
                "planner_node needs envelope mode: emit Message(payload=question, "
                "headers=Headers(tenant=...)) so the run knows who is asking."
            )
        query, session_id = _query(msg.payload)
        deadline = None
        if msg.deadline_s is not None:  # wall clock -> the monotonic clock the planner uses
            deadline = time.monotonic() + (msg.deadline_s - time.time())
        if not stream:
            return await planner.run(
                query,
                headers=msg.headers,
                session_id=session_id,
                trace_id=msg.trace_id,
                deadline=deadline,
            )
        result: RunResult | None = None
        events = planner.stream(
            query,
            headers=msg.headers,
            session_id=session_id,
            trace_id=msg.trace_id,
            deadline=deadline,
        )
        async with aclosing(events):
            async for event in events:
                if isinstance(event, RunFinished):
                    result = event.result
                elif isinstance(event, TextChunk):
                    await ctx.emit_chunk(event.text, stream_id="answer")
                elif isinstance(event, ToolCallFinished):
                    await ctx.emit_chunk(
                        "",
                        stream_id="steps",
                        meta={"event": "tool_call_finished", "step": event.record.to_dict()},
                    )
        assert result is not None, "a planner stream always ends with RunFinished"
        return result

    return Node(
        run_planner,
        name=name,
        concurrency=concurrency,
        policy=policy or NodePolicy(validate="none"),
    )
