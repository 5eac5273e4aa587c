"""Planner events as entries of the run's event log in the store (``record_events=True``).

A planner built with ``record_events=True`` appends every event it emits to
``store.append_event`` *in the run's own task, before the run goes on*, so
the log holds them in the order they happened, interleaved with the events
the planner always writes (``run_started``, ``approval_requested``,
``paused``, ``run_finished``, ...). A reader that is not the run's process
(an HTTP event stream, another worker) follows the run from the log alone.

Kinds written here (``data`` in parentheses):

- ``step_started`` (step), ``llm_response`` (step, content, tool_calls, usage,
  latency_s, cost_usd), ``tool_call_started`` (step, call_id, tool,
  arguments), ``tool_activity`` (call_id, tool, event, data),
  ``tool_call_finished`` (the trajectory entry: tool, arguments, outcome,
  result, latency_s, call_id, step, approval_id), ``final_answer`` (answer),
  ``text_delta`` (text);
- ``paused`` and ``run_finished`` are written by the planner itself (with or
  without this option), so they are not written twice.

With ``record_events`` the planner's store is an ``EventBuffer``: the entries
of a step gather in memory and reach the store in one ``append_events``
operation: when a tool call starts, reports activity or finishes, when text
is flushed, when the next step starts, and before any event the planner or its approvals write
directly (``approval_requested``, ``paused``, ``run_finished``, ...), so
the log keeps the order events happened in and a reader is never held back
for a whole tool call or model turn.

Text deltas are joined: a ``text_delta`` entry is written when
``TEXT_FLUSH_CHARS`` characters have gathered, when ``TEXT_FLUSH_S`` passed
since the first one of the batch, or before the next other event; so a token
stream does not become one store write per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from penguiflow_agents.planner._context import Emit, jsonable
from penguiflow_agents.planner._types import (
    FinalAnswer,
    LLMResponded,
    PlannerEvent,
    StepStarted,
    TextChunk,
    ToolActivity,
    ToolCallFinished,
    ToolCallStarted,
)
from penguiflow_agents.store._base import (
    ApprovalDecision,
    ApprovalRecord,
    OutboxEntry,
    StateStore,
    StoredEvent,
)

__all__ = ["TEXT_FLUSH_CHARS", "TEXT_FLUSH_S", "EventBuffer", "event_entry", "recording"]

# A batch of streamed text is written once it holds this many characters...
TEXT_FLUSH_CHARS = 400
# ...or once this many seconds passed since its first piece (checked as pieces arrive).
TEXT_FLUSH_S = 0.05
# Longest tool result text kept in a tool_call_finished entry (the run document has it whole).
MAX_RESULT_CHARS = 16_000


def _bounded_result(result: Any) -> Any:
    if isinstance(result, str):
        return result if len(result) <= MAX_RESULT_CHARS else result[:MAX_RESULT_CHARS] + "…"
    value = jsonable(result)
    text = json.dumps(value, ensure_ascii=False)
    return value if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "…"


def event_entry(event: PlannerEvent) -> tuple[str, dict[str, Any]] | None:
    """``(kind, data)`` of the log entry for ``event``; None for the kinds the planner writes
    itself (``paused``, ``run_finished``) and for text (batched by ``recording``)."""
    if isinstance(event, StepStarted):
        return "step_started", {"step": event.step}
    if isinstance(event, LLMResponded):
        usage = event.usage
        return "llm_response", {
            "step": event.step,
            "content": event.content,
            "tool_calls": [{"call_id": cid, "tool": name} for cid, name in event.tool_calls],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            "latency_s": round(event.latency_s, 6),
            "cost_usd": event.cost_usd,
        }
    if isinstance(event, ToolCallStarted):
        return "tool_call_started", {
            "step": event.step,
            "call_id": event.call_id,
            "tool": event.tool,
            "arguments": jsonable(dict(event.arguments)),
        }
    if isinstance(event, ToolActivity):
        return "tool_activity", {
            "call_id": event.call_id,
            "tool": event.tool,
            "event": event.event,
            "data": jsonable(dict(event.data)),
        }
    if isinstance(event, ToolCallFinished):
        data = event.record.to_dict()
        data["arguments"] = jsonable(data["arguments"])
        data["result"] = _bounded_result(data["result"])
        return "tool_call_finished", data
    if isinstance(event, FinalAnswer):
        return "final_answer", {"answer": event.answer}
    return None


class _Pending:
    __slots__ = ("events", "lock", "users")

    def __init__(self) -> None:
        self.events: list[tuple[str, Mapping[str, Any]]] = []
        self.lock = asyncio.Lock()  # flushes of one run, one at a time: seqs in order
        self.users = 0


class EventBuffer:
    """A ``StateStore`` whose runs' event entries gather until flushed in one operation.

    ``add`` keeps an entry; ``flush`` writes a run's kept entries (and ``extra``
    after them) with one ``append_events``. Writing an event directly
    (``append_event`` / ``append_events``) and reading a run's events flush
    that run first, so the log's order is the order of ``add`` and direct
    writes. Every other method is the wrapped store's own.
    """

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self._runs: dict[tuple[str, str], _Pending] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"EventBuffer({self.inner!r})"

    def add(self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]) -> None:
        pending = self._runs.get((tenant, run_id))
        if pending is None:
            pending = self._runs[(tenant, run_id)] = _Pending()
        pending.events.append((kind, data))

    async def flush(
        self, tenant: str, run_id: str, extra: Sequence[tuple[str, Mapping[str, Any]]] = ()
    ) -> list[int]:
        """Write the run's kept entries, then ``extra``; the seqs of all of them."""
        key = (tenant, run_id)
        pending = self._runs.get(key)
        if pending is None:
            if not extra:
                return []
            pending = self._runs[key] = _Pending()
        pending.users += 1
        try:
            async with pending.lock:
                batch, pending.events = [*pending.events, *extra], []
                if len(batch) == 1:
                    kind, data = batch[0]
                    return [await self.inner.append_event(tenant, run_id, kind, data)]
                return await self.inner.append_events(tenant, run_id, batch) if batch else []
        finally:
            pending.users -= 1
            if not pending.users and not pending.events and self._runs.get(key) is pending:
                del self._runs[key]

    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        return (await self.flush(tenant, run_id, [(kind, data)]))[-1]

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        seqs = await self.flush(tenant, run_id, events)
        return seqs[len(seqs) - len(events) :]

    async def list_events(
        self, tenant: str, run_id: str, *, after_seq: int = 0
    ) -> list[StoredEvent]:
        await self.flush(tenant, run_id)
        return await self.inner.list_events(tenant, run_id, after_seq=after_seq)

    async def create_approval(
        self,
        approval: ApprovalRecord,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        """The request with its audit events, after the run's kept entries (log order)."""
        if not events:
            return await self.inner.create_approval(approval, outbox=outbox)
        async with self._flushed(approval.tenant, approval.run_id):
            return await self.inner.create_approval(approval, outbox=outbox, events=events)

    async def decide_approval(
        self,
        tenant: str,
        approval_id: str,
        decision: ApprovalDecision,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        if not events:
            return await self.inner.decide_approval(tenant, approval_id, decision, outbox=outbox)
        run_id = (await self.inner.get_approval(tenant, approval_id)).run_id
        async with self._flushed(tenant, run_id):
            return await self.inner.decide_approval(
                tenant, approval_id, decision, outbox=outbox, events=events
            )

    @contextlib.asynccontextmanager
    async def _flushed(self, tenant: str, run_id: str) -> AsyncIterator[None]:
        """Write the run's kept entries, then hold its flush lock for a write of its own."""
        key = (tenant, run_id)
        pending = self._runs.get(key)
        if pending is None:
            pending = self._runs[key] = _Pending()
        pending.users += 1
        try:
            async with pending.lock:
                batch, pending.events = pending.events, []
                if batch:
                    await self.inner.append_events(tenant, run_id, batch)
                yield
        finally:
            pending.users -= 1
            if not pending.users and not pending.events and self._runs.get(key) is pending:
                del self._runs[key]


# Entries written at once (with what was kept before them): a reader sees these promptly.
_FLUSH_AFTER = (ToolCallStarted, ToolActivity, ToolCallFinished)


def recording(store: StateStore, tenant: str, downstream: Emit | None) -> Emit:
    """An ``Emit`` that appends each event to the run's log, then hands it to ``downstream``."""
    pending: list[str] = []
    started = 0.0
    run_id = ""

    buffer = store if isinstance(store, EventBuffer) else None

    async def flush() -> None:
        nonlocal pending
        if pending:
            text, pending = "".join(pending), []
            await store.append_event(tenant, run_id, "text_delta", {"text": text})

    async def record(event: PlannerEvent, kind: str, data: dict[str, Any]) -> None:
        if buffer is None:
            await store.append_event(tenant, run_id, kind, data)
        elif isinstance(event, StepStarted):  # the last step's entries go first, then wait
            await buffer.flush(tenant, run_id)
            buffer.add(tenant, run_id, kind, data)
        elif isinstance(event, _FLUSH_AFTER):
            await buffer.flush(tenant, run_id, [(kind, data)])
        else:
            buffer.add(tenant, run_id, kind, data)

    async def emit(event: PlannerEvent) -> None:
        nonlocal started, run_id
        if isinstance(event, TextChunk):
            if not pending:
                started = time.monotonic()
            run_id = event.run_id
            pending.append(event.text)
            if (
                sum(map(len, pending)) >= TEXT_FLUSH_CHARS
                or time.monotonic() - started >= TEXT_FLUSH_S
            ):
                await flush()
        else:
            await flush()
            entry = event_entry(event)
            if entry is not None:
                kind, data = entry
                run_id = getattr(event, "run_id", run_id)
                await record(event, kind, data)
        if downstream is not None:
            await downstream(event)

    return emit
