"""One model turn cannot flood the platform: calls per turn and pending approvals are capped.

Before, one turn that asked for 3,000 calls plus 500 gated writes ran or queued them all.
"""

from __future__ import annotations

from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm._types import LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

ALICE = Headers(tenant="acme", principal="alice")
POLICY: dict[str, Any] = {
    "tenant": "acme",
    "allow": ["t.*"],
    "approvals": [{"match": "t.gated", "approvers": ["role:admin"]}],
}
ran: list[int] = []


@tool
async def free(n: int) -> int:
    """Count a call."""
    ran.append(n)
    return n


@tool
async def gated(n: int) -> int:
    """A call that needs an approval."""
    return n


def registry() -> ToolRegistry:
    reg = ToolRegistry()
    reg.add_functions(free, gated, source="t", max_concurrency=64)
    return reg


def turn(name: str, count: int, prefix: str) -> LLMResponse:
    return LLMResponse(
        content=None,
        tool_calls=[
            LLMToolCall(id=f"{prefix}{i}", name=name, arguments={"n": i}) for i in range(count)
        ],
    )


async def test_calls_past_the_per_turn_cap_are_refused_with_an_error_the_model_sees() -> None:
    ran.clear()
    seen: list[Any] = []

    def answer(request: Any) -> LLMResponse:
        seen.append(request)
        return LLMResponse(content="Done.")

    llm = ScriptedLLM([turn("t.free", 300, "c"), answer])
    planner = ReactPlanner(llm=llm, registry=registry(), store=MemoryStore())
    result = await planner.run("Go.", headers=ALICE)
    assert result.status == "completed"
    assert len(ran) == 32  # the default cap
    outcomes = [s.outcome for s in result.steps]
    assert outcomes.count("ok") == 32 and outcomes.count("too_many_calls") == 268
    tool_messages = [m for m in seen[0].messages if m.get("role") == "tool"]
    assert len(tool_messages) == 300
    assert sum("too_many_calls" in m["content"] for m in tool_messages) == 268


async def test_gated_calls_past_the_per_run_cap_open_no_approval_request() -> None:
    store = MemoryStore()
    llm = ScriptedLLM([turn("t.gated", 30, "g")])
    planner = ReactPlanner(
        llm=llm,
        registry=registry(),
        store=store,
        policies=PolicySet.from_documents([POLICY]),
        max_calls_per_turn=100,
    )
    paused = await planner.run("Go.", headers=ALICE)
    assert paused.status == "paused"
    assert len(paused.pending_approvals) == 16  # the default per-run cap
    assert len(await store.list_approvals("acme")) == 16
    assert [s.outcome for s in paused.steps].count("too_many_approvals") == 14


async def test_a_tenant_with_many_undecided_requests_gets_no_more() -> None:
    store = MemoryStore()
    policies = PolicySet.from_documents([POLICY])
    for run in range(3):
        planner = ReactPlanner(
            llm=ScriptedLLM([turn("t.gated", 4, f"r{run}-")]),
            registry=registry(),
            store=store,
            policies=policies,
            max_pending_approvals_per_tenant=10,
        )
        await planner.run("Go.", headers=ALICE)
    assert len(await store.list_approvals("acme", status="pending")) == 10
