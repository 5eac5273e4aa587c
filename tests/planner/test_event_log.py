"""record_events=True: every emitted planner event lands in the store's run log, in order."""

from __future__ import annotations

from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner import ReactPlanner, RunFinished
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry

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
