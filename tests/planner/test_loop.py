"""The ReAct loop: answers, parallel calls matched by id, events, truncation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm._types import LLMResponse, LLMToolCall, Usage
from penguiflow_agents.planner import (
    FinalAnswer,
    LLMResponded,
    ReactPlanner,
    RunFinished,
    StepStarted,
    TextChunk,
    ToolCallFinished,
    ToolCallStarted,
)
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

from .conftest import tool_messages


async def test_a_content_turn_is_the_final_answer(registry: ToolRegistry, headers: Headers) -> None:
    llm = ScriptedLLM([{"content": "Hello."}])
    result = await ReactPlanner(llm=llm, registry=registry).run("hi", headers=headers)
    assert result.status == "completed"
    assert result.answer == "Hello."
    assert result.error is None and result.steps == []
    assert result.model == "scripted"


async def test_catalog_shows_every_registry_tool_when_no_policies_are_given(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM([{"content": "ok"}])
    await ReactPlanner(llm=llm, registry=registry).run("hi", headers=headers)
    assert sorted(t.name for t in llm.requests[0].tools) == ["math.add", "text.big", "text.echo"]


async def test_parallel_calls_run_concurrently_and_results_match_call_ids(
    headers: Headers, gate: Any
) -> None:
    state, enter = gate(3)

    @tool
    async def slow_echo(text: str) -> str:
        """Echo after every call of the step has started."""
        await enter()
        return f"echo:{text}"

    reg = ToolRegistry()
    reg.add_functions(slow_echo, source="p", max_concurrency=8)
    llm = ScriptedLLM(
        [
            {
                "tool_calls": [
                    {"name": "p.slow_echo", "arguments": {"text": t}, "id": f"id-{t}"}
                    for t in ("a", "b", "c")
                ]
            },
            {"content": "done"},
        ]
    )
    result = await ReactPlanner(llm=llm, registry=reg).run("go", headers=headers)
    assert result.status == "completed"
    assert state["max"] == 3  # all three were in flight at once
    assert tool_messages(llm.requests[1]) == {"id-a": "echo:a", "id-b": "echo:b", "id-c": "echo:c"}
    # Tool messages follow the order the model sent the calls in.
    tool_ids = [m["tool_call_id"] for m in llm.requests[1].messages if m["role"] == "tool"]
    assert tool_ids == ["id-a", "id-b", "id-c"]
    assert {s.call_id: s.result for s in result.steps} == {
        "id-a": "echo:a",
        "id-b": "echo:b",
        "id-c": "echo:c",
    }


async def test_max_parallel_bounds_the_calls_in_flight(headers: Headers) -> None:
    in_flight = {"now": 0, "max": 0}

    @tool
    async def work(n: int) -> int:
        """Pretend to work a little."""
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await asyncio.sleep(0.02)
        in_flight["now"] -= 1
        return n

    reg = ToolRegistry()
    reg.add_functions(work, source="w", max_concurrency=16)
    calls = [{"name": "w.work", "arguments": {"n": i}} for i in range(5)]
    llm = ScriptedLLM([{"tool_calls": calls}, {"content": "done"}])
    result = await ReactPlanner(llm=llm, registry=reg, max_parallel=2).run("go", headers=headers)
    assert result.status == "completed"
    assert len(result.steps) == 5 and all(s.ok for s in result.steps)
    assert in_flight["max"] == 2


async def test_stream_yields_step_llm_tool_and_final_events_in_order(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "math.add", "arguments": {"a": 2, "b": 3}}]},
            {"content": "It is five."},
        ]
    )
    planner = ReactPlanner(llm=llm, registry=registry)
    events = [e async for e in planner.stream("2+3?", headers=headers)]
    kinds = [e.kind for e in events]
    assert kinds == [
        "step",
        "llm_response",
        "tool_call_started",
        "tool_call_finished",
        "step",
        "text",
        "text",
        "text",
        "llm_response",
        "final_answer",
        "run_finished",
    ]
    assert isinstance(events[0], StepStarted) and events[0].step == 1
    assert isinstance(events[1], LLMResponded) and events[1].tool_calls == (
        ("call_1_1", "math.add"),
    )
    assert isinstance(events[2], ToolCallStarted) and events[2].arguments == {"a": 2, "b": 3}
    assert isinstance(events[3], ToolCallFinished) and events[3].record.result == 5
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == "It is five."
    assert isinstance(events[-2], FinalAnswer) and events[-2].answer == "It is five."
    assert isinstance(events[-1], RunFinished) and events[-1].result.status == "completed"


async def test_trajectory_keeps_whole_result_while_model_sees_truncated_text(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "text.big", "arguments": {"size": 5000}}]}, {"content": "long"}]
    )
    planner = ReactPlanner(llm=llm, registry=registry, max_result_chars=100)
    result = await planner.run("big", headers=headers)
    assert result.steps[0].result == "x" * 5000
    seen = tool_messages(llm.requests[1])["call_1_1"]
    assert seen.startswith("x" * 100 + "\n[truncated: the result has 5000 characters")
    assert "x" * 101 not in seen


async def test_usage_and_cost_add_up_over_the_run(registry: ToolRegistry, headers: Headers) -> None:
    turns: list[Any] = [
        {
            "tool_calls": [{"name": "text.echo", "arguments": {"text": "a"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2},
        },
        LLMResponse(
            content="done", usage=Usage(prompt_tokens=20, completion_tokens=5), cost_usd=0.25
        ),
    ]
    result = await ReactPlanner(llm=ScriptedLLM(turns), registry=registry).run("q", headers=headers)
    assert result.usage == Usage(prompt_tokens=30, completion_tokens=7)
    assert result.cost == 0.25


async def test_run_is_recorded_in_the_store_with_its_events(
    registry: ToolRegistry, headers: Headers
) -> None:
    store = MemoryStore()
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "text.echo", "arguments": {"text": "a"}}]}, {"content": "ok"}]
    )
    result = await ReactPlanner(llm=llm, registry=registry, store=store).run("q", headers=headers)
    record = await store.get_run("acme", result.run_id)
    assert (record.status, record.principal, record.roles, record.model) == (
        "completed",
        "alice",
        ["staff"],
        "scripted",
    )
    assert record.state["result"]["answer"] == "ok"
    kinds = [e.kind for e in await store.list_events("acme", result.run_id)]
    assert kinds == ["run_started", "run_finished"]


async def test_every_model_call_streams_its_usage_and_cost(
    registry: ToolRegistry, headers: Headers
) -> None:
    turns: list[Any] = [
        LLMResponse(
            content=None,
            tool_calls=(LLMToolCall(id="c1", name="text.echo", arguments={"text": "a"}),),
            usage=Usage(prompt_tokens=10, completion_tokens=2),
            cost_usd=0.125,
        ),
        LLMResponse(content="done", usage=Usage(prompt_tokens=20, completion_tokens=5)),
    ]
    planner = ReactPlanner(llm=ScriptedLLM(turns), registry=registry)
    calls = [e async for e in planner.stream("q", headers=headers) if isinstance(e, LLMResponded)]
    assert [(c.step, c.usage.total_tokens, c.cost_usd, c.tool_calls) for c in calls] == [
        (1, 12, 0.125, (("c1", "text.echo"),)),
        (2, 25, None, ()),
    ]


async def test_json_shape_has_the_design_keys(registry: ToolRegistry, headers: Headers) -> None:
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "math.add", "arguments": {"a": 1, "b": 1}}]}, {"content": "2"}]
    )
    result = await ReactPlanner(llm=llm, registry=registry).run("q", headers=headers)
    doc = json.loads(json.dumps(result.to_dict()))
    assert {"status", "run_id", "answer", "error", "pending_approvals", "steps"} <= set(doc)
    assert doc["steps"][0]["tool"] == "math.add"
    assert doc["steps"][0]["arguments"] == {"a": 1, "b": 1}
    assert doc["steps"][0]["outcome"] == "ok"


async def test_one_planner_serves_overlapping_runs_without_mixing_them(
    registry: ToolRegistry,
) -> None:
    def answer_with_last_tool_result(request: Any) -> LLMResponse:
        return LLMResponse(content="answer:" + request.messages[-1]["content"])

    llm = ScriptedLLM(
        [
            lambda r: LLMResponse(
                content=None,
                tool_calls=(
                    LLMToolCall(
                        id="c1", name="text.echo", arguments={"text": r.messages[1]["content"]}
                    ),
                ),
            ),
            answer_with_last_tool_result,
        ]
    )
    planner = ReactPlanner(llm=llm, registry=registry)
    results = await asyncio.gather(
        *(planner.run(f"q{i}", headers=Headers(tenant=f"t{i % 3}")) for i in range(30))
    )
    assert [r.answer for r in results] == [f"answer:q{i}" for i in range(30)]
    assert len({r.run_id for r in results}) == 30
