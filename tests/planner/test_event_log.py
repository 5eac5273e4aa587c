"""record_events=True: every emitted planner event lands in the store's run log, in order; a
step's entries are written together (one store operation per flush point), never late."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner import ReactPlanner, RunFinished
from penguiflow_agents.planner._events import EventBuffer
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

TURNS: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "math.add", "arguments": {"a": 1, "b": 2}}]},
    {"content": "It is 3."},
]


async def test_a_run_not_streamed_writes_its_steps_calls_and_answer_to_the_log(
    registry: ToolRegistry, headers: Headers
) -> None:
    store = MemoryStore()
    planner = ReactPlanner(
        llm=ScriptedLLM(TURNS), registry=registry, store=store, record_events=True
    )
    result = await planner.run("1+2?", headers=headers)
    assert result.status == "completed"
    events = await store.list_events("acme", result.run_id)
    kinds = [e.kind for e in events]
    assert kinds == [
        "run_started",
        "step_started",
        "llm_response",
        "tool_call_started",
        "tool_call_finished",
        "step_started",
        "text_delta",  # ScriptedLLM streams its text
        "llm_response",
        "final_answer",
        "run_finished",
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finished = events[4].data
    assert (
        finished["tool"] == "math.add" and finished["outcome"] == "ok" and finished["result"] == 3
    )
    assert events[6].data == {"text": "It is 3."}
    assert events[8].data == {"answer": "It is 3."}


async def test_without_the_option_only_the_planners_own_entries_are_written(
    registry: ToolRegistry, headers: Headers
) -> None:
    store = MemoryStore()
    planner = ReactPlanner(llm=ScriptedLLM(TURNS), registry=registry, store=store)
    result = await planner.run("1+2?", headers=headers)
    kinds = [e.kind for e in await store.list_events("acme", result.run_id)]
    assert kinds == ["run_started", "run_finished"]


async def test_a_streamed_run_logs_the_same_events_it_yields_and_a_pause_names_its_approvals(
    registry: ToolRegistry, headers: Headers
) -> None:
    store = MemoryStore()
    policies = PolicySet.from_documents(
        [
            {
                "tenant": "acme",
                "allow": ["math.*"],
                "approvals": [{"match": "math.add", "approvers": ["role:admin"]}],
            }
        ]
    )
    planner = ReactPlanner(
        llm=ScriptedLLM(TURNS),
        registry=registry,
        store=store,
        policies=policies,
        record_events=True,
    )
    yielded = [e async for e in planner.stream("1+2?", headers=headers)]
    result = yielded[-1]
    assert isinstance(result, RunFinished) and result.result.status == "paused"
    events = await store.list_events("acme", result.result.run_id)
    kinds = [e.kind for e in events]
    assert kinds[-2:] == ["approval_requested", "paused"]
    pending = events[-1].data["pending_approvals"]
    assert [p["tool"] for p in pending] == ["math.add"]
    assert pending[0]["id"] == result.result.pending_approvals[0].id
    assert pending[0]["arguments"] == {"a": 1, "b": 2}


class CountingStore(MemoryStore):
    """A MemoryStore that counts the store operations that write events."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        self.writes += 1
        return await super().append_event(tenant, run_id, kind, data)

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        self.writes += 1
        return await super().append_events(tenant, run_id, events)


async def test_a_steps_entries_reach_the_store_in_one_operation_per_flush_point(
    registry: ToolRegistry, headers: Headers
) -> None:
    """The same 10 entries as above, in 5 writes: run_started; step 1 up to the call's start;
    the call's end; step 2 up to its text; the rest with run_finished."""
    store = CountingStore()
    planner = ReactPlanner(
        llm=ScriptedLLM(TURNS), registry=registry, store=store, record_events=True
    )
    result = await planner.run("1+2?", headers=headers)
    events = await store.list_events("acme", result.run_id)
    assert [e.kind for e in events][:5] == [
        "run_started",
        "step_started",
        "llm_response",
        "tool_call_started",
        "tool_call_finished",
    ]
    assert len(events) == 10 and [e.seq for e in events] == list(range(1, 11))
    assert store.writes == 5
    assert planner.store is store  # the public property is the store given, not the buffer


async def test_a_reader_sees_a_calls_start_while_the_call_runs_and_the_pause_in_order(
    headers: Headers,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @tool
    async def slow(x: int) -> int:
        """Wait for the test to let go."""
        started.set()
        await release.wait()
        return x

    registry = ToolRegistry()
    registry.add_functions(slow, source="work")
    turns: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "work.slow", "arguments": {"x": 1}}]},
        {"tool_calls": [{"name": "work.slow", "arguments": {"x": 2}}]},
        {"content": "done"},
    ]
    policies = PolicySet.from_documents(
        [
            {
                "tenant": "acme",
                "allow": ["work.*"],
                "approvals": [
                    {
                        "match": "work.slow",
                        "when": {"properties": {"x": {"const": 2}}},
                        "approvers": ["role:admin"],
                    }
                ],
            }
        ]
    )
    store = MemoryStore()
    planner = ReactPlanner(
        llm=ScriptedLLM(turns),
        registry=registry,
        store=store,
        policies=policies,
        record_events=True,
    )
    run = asyncio.create_task(planner.run("go", headers=headers))
    await asyncio.wait_for(started.wait(), 60)
    (record,) = await store.list_runs("acme")
    during = [e.kind for e in await store.list_events("acme", record.run_id)]
    assert during == ["run_started", "step_started", "llm_response", "tool_call_started"]
    release.set()
    result = await asyncio.wait_for(run, 60)
    assert result.status == "paused"
    kinds = [e.kind for e in await store.list_events("acme", result.run_id)]
    assert kinds == [
        "run_started",
        "step_started",
        "llm_response",
        "tool_call_started",
        "tool_call_finished",
        "step_started",
        "llm_response",
        "approval_requested",  # written by the approvals service: after the step's entries
        "paused",
    ]


async def test_the_buffer_keeps_nothing_once_a_run_has_ended(
    registry: ToolRegistry, headers: Headers
) -> None:
    store = MemoryStore()
    buffer = EventBuffer(store)
    buffer.add("acme", "r1", "a", {})
    buffer.add("acme", "r1", "b", {})
    assert await store.list_events("acme", "r1") == []
    assert await buffer.append_event("acme", "r1", "c", {}) == 3
    assert await buffer.append_events("acme", "r1", [("d", {}), ("e", {})]) == [4, 5]
    assert [e.kind for e in await buffer.list_events("acme", "r1")] == ["a", "b", "c", "d", "e"]
    assert buffer._runs == {}
    planner = ReactPlanner(
        llm=ScriptedLLM(TURNS), registry=registry, store=store, record_events=True
    )
    await planner.run("1+2?", headers=headers)
    assert planner._deps.store._runs == {}  # type: ignore[attr-defined]
