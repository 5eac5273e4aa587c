"""Budgets end runs with a clear reason: max_steps, deadline (mid-call too), tokens, cancel."""

from __future__ import annotations

import asyncio
import time

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner import ReactPlanner, ToolCallStarted
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool


def hanging_registry(started: asyncio.Event, cancelled: asyncio.Event) -> ToolRegistry:
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

    @tool
    async def quick() -> str:
        """Returns at once."""
        return "quick"

    reg = ToolRegistry()
    reg.add_functions(hang, quick, source="slow", timeout_s=120, max_concurrency=8)
    return reg


async def test_max_steps_fails_the_run_saying_so(registry: ToolRegistry, headers: Headers) -> None:
    step = {"tool_calls": [{"name": "text.echo", "arguments": {"text": "again"}}]}
    llm = ScriptedLLM([step] * 10)
    result = await ReactPlanner(llm=llm, registry=registry, max_steps=3).run("q", headers=headers)
    assert result.status == "failed"
    assert "max_steps=3" in (result.error or "")
    assert len(llm.requests) == 3 and len(result.steps) == 3


async def test_deadline_mid_tool_call_cancels_the_call_and_fails_the_run(headers: Headers) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    reg = hanging_registry(started, cancelled)
    llm = ScriptedLLM(
        [
            {
                "tool_calls": [
                    {"name": "slow.hang", "arguments": {}},
                    {"name": "slow.quick", "arguments": {}},
                ]
            },
            {"content": "unreachable"},
        ]
    )
    store = MemoryStore()
    planner = ReactPlanner(llm=llm, registry=reg, store=store, deadline_s=0.5)
    t0 = time.monotonic()
    result = await planner.run("q", headers=headers)
    assert time.monotonic() - t0 < 5
    assert result.status == "failed"
    assert "deadline of 0.5 s passed while calling slow.hang" in (result.error or "")
    assert cancelled.is_set()
    outcomes = {s.tool: s.outcome for s in result.steps}
    assert outcomes["slow.quick"] == "ok"
    # Cut by the registry (which caps calls at the run's deadline) or by the planner.
    assert outcomes["slow.hang"] in ("timeout", "cancelled")
    assert (await store.get_run("acme", result.run_id)).status == "failed"


async def test_deadline_mid_single_tool_call(headers: Headers) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    llm = ScriptedLLM([{"tool_calls": [{"name": "slow.hang", "arguments": {}}]}])
    planner = ReactPlanner(llm=llm, registry=hanging_registry(started, cancelled), deadline_s=0.3)
    result = await planner.run("q", headers=headers)
    assert result.status == "failed" and "passed while calling slow.hang" in (result.error or "")
    assert cancelled.is_set()


async def test_deadline_while_the_model_thinks(registry: ToolRegistry, headers: Headers) -> None:
    llm = ScriptedLLM([{"content": "slow answer", "delay_s": 30}])
    result = await ReactPlanner(llm=llm, registry=registry, deadline_s=0.2).run(
        "q", headers=headers
    )
    assert result.status == "failed"
    assert "passed while waiting for the model" in (result.error or "")


async def test_an_explicit_earlier_deadline_wins(registry: ToolRegistry, headers: Headers) -> None:
    llm = ScriptedLLM([{"content": "slow answer", "delay_s": 30}])
    planner = ReactPlanner(llm=llm, registry=registry, deadline_s=100)
    result = await planner.run("q", headers=headers, deadline=time.monotonic() + 0.2)
    assert result.status == "failed" and "deadline" in (result.error or "")


async def test_token_budget_stops_before_running_more_calls(
    registry: ToolRegistry, headers: Headers
) -> None:
    calls: list[str] = []

    @tool
    async def spend(text: str) -> str:
        """Record a call."""
        calls.append(text)
        return text

    reg = ToolRegistry()
    reg.add_functions(spend, source="s")
    turn = {
        "tool_calls": [{"name": "s.spend", "arguments": {"text": "x"}}],
        "usage": {"prompt_tokens": 60, "completion_tokens": 10},
    }
    llm = ScriptedLLM([turn, turn, turn, {"content": "done"}])
    result = await ReactPlanner(llm=llm, registry=reg, max_tokens_budget=100).run(
        "q", headers=headers
    )
    assert result.status == "failed"
    assert "140 tokens, over its max_tokens_budget of 100" in (result.error or "")
    assert calls == ["x"]  # the second turn's call was not run


async def test_cancelling_the_task_cancels_in_flight_calls_and_records_cancelled(
    headers: Headers,
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    store = MemoryStore()
    llm = ScriptedLLM([{"tool_calls": [{"name": "slow.hang", "arguments": {}}]}])
    planner = ReactPlanner(llm=llm, registry=hanging_registry(started, cancelled), store=store)
    task = asyncio.create_task(planner.run("q", headers=headers, run_id="run-to-cancel"))
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
    record = await store.get_run("acme", "run-to-cancel")
    assert record.status == "cancelled"
    assert record.state["result"]["error"] == "the run was cancelled before it finished."


async def test_leaving_a_stream_early_records_the_run_as_cancelled(headers: Headers) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    store = MemoryStore()
    llm = ScriptedLLM([{"tool_calls": [{"name": "slow.quick", "arguments": {}}]}, {"content": "x"}])
    planner = ReactPlanner(llm=llm, registry=hanging_registry(started, cancelled), store=store)
    stream = planner.stream("q", headers=headers, run_id="run-left")
    async for event in stream:
        if isinstance(event, ToolCallStarted):
            break
    await stream.aclose()
    assert (await store.get_run("acme", "run-left")).status == "cancelled"
