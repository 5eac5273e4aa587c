"""Remote agents in flows: the ``RemoteTransport`` seam and ``RemoteNode``.

``RemoteTransport`` is the small client interface for calling an agent that
runs elsewhere (``A2ATransport`` speaks A2A with ``a2a-sdk``): read its card,
send a message and wait, stream a task's events, cancel a task. A
``RemoteNode`` (agent URL + skill) is a flow node over it:

- the envelope's payload is the message (a ``str``, a ``FinalAnswer``'s text,
  anything else as JSON); its ``trace_id`` and ``deadline_s`` travel in the
  message metadata; the engine's deadline and ``flow.cancel(trace_id)``
  cancel the node, and a cancelled node cancels the remote task;
- the remote task's streamed text arrives as the trace's stream chunks
  (``stream_id`` = the node's name), in order, the last one ``done``;
- with a ``store``, the binding (trace id ↔ remote task id, agent URL) is
  written as soon as the task is known (``StateStore.bind_remote``); a trace
  handled again, by this process or another that took it over, finds the
  binding and reattaches to the task (its stream from the start) instead of
  sending the message again;
- the node returns a ``FinalAnswer`` (``meta``: ``remote_task_id``,
  ``agent_url``); a task that does not complete raises ``RemoteAgentError``
  (the trace fails with ``node_exception`` naming the node).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from penguiflow_agents._log import get_logger
from penguiflow_agents.exceptions import RemoteAgentError, UserError

from ._context import Context
from ._envelopes import FinalAnswer, Message
from ._node import Node, NodePolicy

__all__ = [
    "RemoteAgent",
    "RemoteEvent",
    "RemoteNode",
    "RemoteRequest",
    "RemoteSkill",
    "RemoteTransport",
]

log = get_logger("penguiflow_agents.runtime")

# Longest wait for the remote agent to acknowledge a cancel of a cancelled node's task.
CANCEL_TIMEOUT_S: Final = 5.0

# Task states, as A2A names them.
TaskStateName = Literal[
    "submitted",
    "working",
    "input-required",
    "auth-required",
    "completed",
    "failed",
    "canceled",
    "rejected",
    "unknown",
]
ENDED_STATES: Final = frozenset({"completed", "failed", "canceled", "rejected"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteSkill:
    id: str
    name: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteAgent:
    """What an agent's card says (the part a caller needs)."""

    name: str
    url: str
    description: str = ""
    skills: tuple[RemoteSkill, ...] = ()
    streaming: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRequest:
    """One message to a remote agent, or (``task_id`` and no ``text``) a reattach."""

    agent_url: str
    skill: str
    text: str = ""
    task_id: str | None = None  # continue (with text) or reattach to (without) this task
    context_id: str | None = None
    trace_id: str | None = None
    deadline_s: float | None = None  # absolute, time.time()
    meta: Mapping[str, str] = field(default_factory=dict)  # e.g. traceparent


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteEvent:
    """``task``: the task is known (first); ``chunk``: streamed text, in order;
    ``end``: the task settled (``state``; ``text`` is its answer or its message)."""

    kind: Literal["task", "chunk", "end"]
    task_id: str
    context_id: str = ""
    state: str = ""
    text: str = ""


@runtime_checkable
class RemoteTransport(Protocol):
    """A client seam for agents that run elsewhere (A2A: ``A2ATransport``).

    Errors come out as ``RemoteAgentError`` (``unavailable`` when the agent
    could not be reached); a cancelled ``send``/``stream`` leaves the remote
    task running: ``cancel`` it (``RemoteNode`` does).
    """

    async def agent_card(self, agent_url: str) -> RemoteAgent: ...

    async def send(self, request: RemoteRequest) -> RemoteEvent:
        """Send and wait until the task settles; its ``end`` event."""
        ...

    def stream(self, request: RemoteRequest) -> AsyncIterator[RemoteEvent]:
        """The task's events: ``task`` first, ``chunk``s, ``end`` last."""
        ...

    async def cancel(self, agent_url: str, task_id: str) -> None: ...

    async def aclose(self) -> None: ...


def _text_of(payload: Any) -> str:
    if isinstance(payload, str):
        return payload
    if isinstance(payload, FinalAnswer):
        return payload.text
    try:
        return json.dumps(payload, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(payload)


class RemoteNode(Node):
    """A node that hands each message to skill ``skill`` of the agent at ``agent_url``
    (see the module docstring). Envelope mode only."""

    __slots__ = ("agent_url", "forward_chunks", "skill", "store", "transport")

    def __init__(
        self,
        agent_url: str,
        skill: str,
        *,
        transport: RemoteTransport,
        store: Any = None,  # a StateStore: bindings survive this process
        name: str | None = None,
        policy: NodePolicy | None = None,
        forward_chunks: bool = True,
    ) -> None:
        if not agent_url or not skill:
            raise UserError(
                f"RemoteNode needs an agent URL and a skill id, got {agent_url!r} and {skill!r}."
            )
        self.agent_url = agent_url
        self.skill = skill
        self.transport = transport
        self.store = store
        self.forward_chunks = forward_chunks
        super().__init__(self._handle, name=name or f"remote:{skill}", policy=policy)

    async def _handle(self, msg: Any, ctx: Context) -> FinalAnswer:
        if not isinstance(msg, Message):
            raise UserError(
                f"RemoteNode {self.name!r} carries the trace to a remote agent, which needs "
                "envelope mode; emit Messages into the flow."
            )
        tenant = msg.headers.tenant
        bound = None
        if self.store is not None:
            bound = await self.store.get_remote(tenant, msg.trace_id, self.name)
        meta = {"trace_id": msg.trace_id}
        if msg.deadline_s is not None:
            meta["deadline_s"] = repr(msg.deadline_s)
        request = RemoteRequest(
            agent_url=self.agent_url,
            skill=self.skill,
            text="" if bound is not None else _text_of(msg.payload),
            task_id=bound.task_id if bound is not None else None,
            context_id=bound.context_id if bound is not None else None,
            trace_id=msg.trace_id,
            deadline_s=msg.deadline_s,
            meta=meta,
        )
        task_id = bound.task_id if bound is not None else ""
        end: RemoteEvent | None = None
        try:
            async for event in self.transport.stream(request):
                if event.kind == "task" and not task_id:
                    task_id = event.task_id
                    await self._bind(tenant, msg.trace_id, event)
                elif event.kind == "chunk" and self.forward_chunks and event.text:
                    await ctx.emit_chunk(
                        event.text, stream_id=self.name, meta={"remote_task_id": event.task_id}
                    )
                elif event.kind == "end":
                    end = event
        except asyncio.CancelledError:
            if task_id and (end is None or end.state not in ENDED_STATES):
                await self._cancel(task_id)
            raise
        if end is None:
            raise RemoteAgentError(
                f"the agent at {self.agent_url} ended the stream of task {task_id!r} "
                "before the task settled.",
                unavailable=True,
            )
        if end.state != "completed":
            said = f": {end.text[:500]}" if end.text else ""
            raise RemoteAgentError(
                f"the remote task {end.task_id!r} ({self.skill} at {self.agent_url}) ended "
                f"{end.state}{said}",
                state=end.state,
            )
        if self.forward_chunks:
            await ctx.emit_chunk("", done=True, stream_id=self.name)
        return FinalAnswer(
            text=end.text, meta={"remote_task_id": end.task_id, "agent_url": self.agent_url}
        )

    async def _bind(self, tenant: str, trace_id: str, event: RemoteEvent) -> None:
        if self.store is None:
            return
        from penguiflow_agents.store import RemoteBinding

        kept = await self.store.bind_remote(
            RemoteBinding(
                tenant=tenant,
                trace_id=trace_id,
                key=self.name,
                agent_url=self.agent_url,
                task_id=event.task_id,
                context_id=event.context_id,
                created_at=time.time(),
            )
        )
        if kept.task_id != event.task_id:  # another process bound the trace first
            log.warning(
                "remote.bound_elsewhere", node=self.name, trace_id=trace_id, task_id=kept.task_id
            )

    async def _cancel(self, task_id: str) -> None:
        async def cancel() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CANCEL_TIMEOUT_S):
                    await self.transport.cancel(self.agent_url, task_id)

        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(asyncio.ensure_future(cancel()))
