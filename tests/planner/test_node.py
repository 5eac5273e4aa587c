"""planner_node: identity, trace, deadline and cancellation of the envelope reach the run and its tools."""

from __future__ import annotations

import asyncio
import time

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner import ReactPlanner, RunResult, planner_node
from penguiflow_agents.runtime import FlowError, Message, StreamChunk, create
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import CallContext, ToolRegistry, tool

HEADERS = Headers(tenant="acme", principal="alice", roles=["staff"])


class Probe:
    """Tools that record who called them, and one that hangs until cancelled."""

    def __init__(self) -> None:
        self.seen: list[CallContext] = []
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        seen, started, cancelled = self.seen, self.started, self.cancelled

        @tool
        async def whoami(ctx: CallContext) -> str:
            """Say who is calling."""
            seen.append(ctx)
            return ctx.headers.principal if ctx.headers else "nobody"

        @tool
        async def hang() -> str:
            """Never returns on its own."""
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "unreachable"

        self.registry = ToolRegistry()
        self.registry.add_functions(whoami, hang, source="probe", timeout_s=3600)


async def test_envelope_identity_and_trace_flow_into_the_tool_calls() -> None:
    probe, store = Probe(), MemoryStore()
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "probe.whoami", "arguments": {}}]}, {"content": "You are alice."}]
    )
    node = planner_node(ReactPlanner(llm=llm, registry=probe.registry, store=store))
    flow = create(node.to())
    async with flow:
        msg = Message(payload="who am I?", headers=HEADERS)
        await flow.emit(msg)
        result = await flow.fetch(msg.trace_id, timeout_s=10)
    assert isinstance(result, RunResult)
    assert result.status == "completed" and result.answer == "You are alice."
    [ctx] = probe.seen
    assert ctx.headers == HEADERS
    assert ctx.trace_id == msg.trace_id
    assert ctx.run_id == result.run_id
    assert (await store.get_run("acme", result.run_id)).principal == "alice"


async def test_cancelling_the_trace_cancels_the_in_flight_tool_call_and_records_the_run() -> None:
    probe, store = Probe(), MemoryStore()
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "probe.hang", "arguments": {}}]}, {"content": "never"}]
    )
    flow = create(planner_node(ReactPlanner(llm=llm, registry=probe.registry, store=store)).to())
    async with flow:
        msg = Message(payload={"query": "hang"}, headers=HEADERS)
        await flow.emit(msg)
        await asyncio.wait_for(probe.started.wait(), timeout=10)
        assert await flow.cancel(msg.trace_id) is True
        with pytest.raises(FlowError):
            await flow.fetch(msg.trace_id, timeout_s=10)
    assert probe.cancelled.is_set()
    [run] = await store.list_runs("acme")
    assert run.status == "cancelled"


async def test_the_envelope_deadline_bounds_the_run_and_cancels_the_tool() -> None:
    probe, store = Probe(), MemoryStore()
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "probe.hang", "arguments": {}}]}, {"content": "never"}]
    )
    flow = create(
        planner_node(
            ReactPlanner(llm=llm, registry=probe.registry, store=store, deadline_s=600)
        ).to()
    )
    async with flow:
        msg = Message(payload="hang", headers=HEADERS, deadline_s=time.time() + 0.5)
        await flow.emit(msg)
        outcome = await flow.fetch(msg.trace_id, timeout_s=10, raise_errors=False)
    # The planner's own deadline or the runtime's: either way the run ends and the tool stops.
    assert isinstance(outcome, (RunResult, FlowError))
    if isinstance(outcome, RunResult):
        assert outcome.status == "failed" and "deadline" in (outcome.error or "")
    assert probe.cancelled.is_set()
    [run] = await store.list_runs("acme")
    assert run.status in ("failed", "cancelled")


async def test_stream_mode_forwards_answer_text_and_steps_as_chunks() -> None:
    probe = Probe()
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "probe.whoami", "arguments": {}}]}, {"content": "You are alice."}]
    )
    flow = create(planner_node(ReactPlanner(llm=llm, registry=probe.registry), stream=True).to())
    async with flow:
        msg = Message(payload="who am I?", headers=HEADERS)
        await flow.emit(msg)
        items = [item async for item in flow.stream(msg.trace_id)]
    chunks = [i for i in items if isinstance(i, StreamChunk)]
    assert "".join(c.text for c in chunks if c.stream_id == "answer") == "You are alice."
    [step] = [c.meta["step"] for c in chunks if c.stream_id == "steps"]
    assert step["tool"] == "probe.whoami" and step["outcome"] == "ok"
    assert isinstance(items[-1], RunResult) and items[-1].status == "completed"
