"""Approval gates in the planner: pause before the call, decide, resume (in process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import ConflictError, NotFoundError
from penguiflow_agents.planner import Paused, ReactPlanner, RunFinished
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])
ADMIN = {"principal": "bob", "roles": ["admin"]}

POLICY = {
    "tenant": "acme",
    "allow": ["files.*", "clock.*"],
    "roles": {"staff": {"allow": ["files.*", "clock.*"]}},
    "approvals": [
        {
            "match": "files.write",
            "approvers": ["role:admin"],
            "reason": "Writes need an admin",
        }
    ],
}
OTHER_TENANT = {"tenant": "globex", "allow": ["files.*"]}


class Files:
    """A files source whose writes are counted; its description can change."""

    def __init__(self, description: str = "Write a text file.") -> None:
        self.writes: list[dict[str, Any]] = []
        writes = self.writes

        @tool(description=description)
        async def write(path: str, text: str) -> str:
            writes.append({"path": path, "text": text})
            return f"wrote {len(text)} characters to {path}"

        @tool
        async def read(path: str) -> str:
            """Read a text file."""
            return f"contents of {path}"

        @tool
        async def now() -> str:
            """The time."""
            return "12:00"

        self.registry = ToolRegistry()
        self.registry.add_functions(write, read, source="files")
        self.registry.add_functions(now, source="clock")


def write_then_answer() -> list[Any]:
    return [
        {
            "tool_calls": [
                {"name": "clock.now", "arguments": {}, "id": "c-now"},
                {"name": "files.write", "arguments": {"path": "/a.txt", "text": "hi"}, "id": "c-w"},
            ]
        },
        {"content": "Done."},
    ]


def planner_for(files: Files, store: MemoryStore, llm: ScriptedLLM, **kw: Any) -> ReactPlanner:
    policies = PolicySet.from_documents([POLICY, OTHER_TENANT])
    return ReactPlanner(llm=llm, registry=files.registry, store=store, policies=policies, **kw)


def service(store: MemoryStore) -> ApprovalService:
    return ApprovalService(store, PolicySet.from_documents([POLICY, OTHER_TENANT]))


async def test_pause_decide_resume_runs_the_gated_call_once_and_completes() -> None:
    files, store = Files(), MemoryStore()
    llm = ScriptedLLM(write_then_answer())
    planner = planner_for(files, store, llm)
    paused = await planner.run("write hi to /a.txt", headers=ALICE)

    assert paused.status == "paused"
    assert [(p.tool, p.arguments, p.call_id) for p in paused.pending_approvals] == [
        ("files.write", {"path": "/a.txt", "text": "hi"}, "c-w")
    ]
    assert paused.pending_approvals[0].reason == "Writes need an admin"
    # The step's other call ran; the gated one did not.
    assert [(s.tool, s.outcome) for s in paused.steps] == [("clock.now", "ok")]
    assert files.writes == []
    record = await store.get_run("acme", paused.run_id)
    assert record.status == "paused" and record.model == "scripted"
    assert record.state["paused"]["waiting"][0]["id"] == paused.pending_approvals[0].id

    await service(store).decide(
        tenant="acme", approval_id=paused.pending_approvals[0].id, decision="approve", **ADMIN
    )
    done = await planner.resume(paused.run_id, headers=Headers(tenant="acme", principal="ops"))
    assert done.status == "completed" and done.answer == "Done."
    assert files.writes == [{"path": "/a.txt", "text": "hi"}]
    assert [(s.tool, s.outcome) for s in done.steps] == [("clock.now", "ok"), ("files.write", "ok")]
    # The model got both results, matched by call id, in the order it asked.
    tools = [
        (m["tool_call_id"], m["content"]) for m in llm.requests[-1].messages if m["role"] == "tool"
    ]
    assert tools == [("c-now", "12:00"), ("c-w", "wrote 2 characters to /a.txt")]

    kinds = [e.kind for e in await store.list_events("acme", paused.run_id)]
    assert kinds == [
        "run_started",
        "approval_requested",
        "paused",
        "approval_decided",
        "resumed",
        "approval_applied",
        "run_finished",
    ]
    # Resuming again does not run the tool again: it returns the stored result.
    again = await planner.resume(paused.run_id, headers=ALICE)
    assert again.status == "completed" and again.answer == "Done."
    assert len(files.writes) == 1


async def test_stream_reports_the_pause() -> None:
    files, store = Files(), MemoryStore()
    planner = planner_for(files, store, ScriptedLLM(write_then_answer()))
    events = [e async for e in planner.stream("write", headers=ALICE)]
    assert isinstance(events[-2], Paused) and events[-2].pending_approvals[0].tool == "files.write"
    assert isinstance(events[-1], RunFinished) and events[-1].result.status == "paused"


async def test_rejection_reason_reaches_the_model_as_the_tool_result() -> None:
    files, store = Files(), MemoryStore()
    llm = ScriptedLLM(write_then_answer())
    planner = planner_for(files, store, llm)
    paused = await planner.run("write", headers=ALICE)
    await service(store).decide(
        tenant="acme",
        approval_id=paused.pending_approvals[0].id,
        decision="reject",
        reason="Not on a Friday.",
        **ADMIN,
    )
    done = await planner.resume(paused.run_id, headers=ALICE)
    assert done.status == "completed"
    assert files.writes == []
    seen = {
        m["tool_call_id"]: m["content"] for m in llm.requests[-1].messages if m["role"] == "tool"
    }
    assert "'bob' rejected it" in seen["c-w"] and "Not on a Friday." in seen["c-w"]
    assert done.steps[-1].outcome == "rejected"


async def test_edited_arguments_are_the_ones_that_run_and_the_model_is_told() -> None:
    files, store = Files(), MemoryStore()
    llm = ScriptedLLM(write_then_answer())
    planner = planner_for(files, store, llm)
    paused = await planner.run("write", headers=ALICE)
    await service(store).decide(
        tenant="acme",
        approval_id=paused.pending_approvals[0].id,
        decision="edit",
        arguments={"path": "/b.txt", "text": "hello"},
        **ADMIN,
    )
    done = await planner.resume(paused.run_id, headers=ALICE)
    assert files.writes == [{"path": "/b.txt", "text": "hello"}]
    assert done.steps[-1].arguments == {"path": "/b.txt", "text": "hello"}
    seen = {
        m["tool_call_id"]: m["content"] for m in llm.requests[-1].messages if m["role"] == "tool"
    }
    assert "approver edited the arguments" in seen["c-w"]


async def test_a_changed_tool_definition_voids_the_approval() -> None:
    store = MemoryStore()
    llm = ScriptedLLM(write_then_answer())
    paused = await planner_for(Files(), store, llm).run("write", headers=ALICE)
    await service(store).decide(
        tenant="acme", approval_id=paused.pending_approvals[0].id, decision="approve", **ADMIN
    )
    changed = Files(description="Write a text file, now also deleting the old one.")
    done = await planner_for(changed, store, llm).resume(paused.run_id, headers=ALICE)
    assert changed.writes == []
    assert done.steps[-1].outcome == "approval_void"
    seen = {
        m["tool_call_id"]: m["content"] for m in llm.requests[-1].messages if m["role"] == "tool"
    }
    assert "definition of tool 'files.write' changed" in seen["c-w"]


async def test_an_undecided_approval_leaves_the_run_paused_and_the_tool_unrun() -> None:
    files, store = Files(), MemoryStore()
    planner = planner_for(files, store, ScriptedLLM(write_then_answer()))
    paused = await planner.run("write", headers=ALICE)
    again = await planner.resume(paused.run_id, headers=ALICE)
    assert again.status == "paused"
    assert [p.id for p in again.pending_approvals] == [p.id for p in paused.pending_approvals]
    assert files.writes == []
    record = await store.get_run("acme", paused.run_id)
    assert record.status == "paused" and record.claimed_by is None


async def test_an_expired_approval_reaches_the_model_as_not_run() -> None:
    policy = {**POLICY, "approvals": [{**POLICY["approvals"][0], "expires_in_s": 0.05}]}
    files, store = Files(), MemoryStore()
    llm = ScriptedLLM(write_then_answer())
    planner = ReactPlanner(
        llm=llm, registry=files.registry, store=store, policies=PolicySet.from_documents([policy])
    )
    paused = await planner.run("write", headers=ALICE)
    await asyncio.sleep(0.1)  # let the request expire (wall-clock expiry is what is tested)
    done = await planner.resume(paused.run_id, headers=ALICE)
    assert done.status == "completed" and files.writes == []
    assert done.steps[-1].outcome == "expired"


async def test_two_concurrent_resumes_run_the_tool_once() -> None:
    files, store = Files(), MemoryStore()
    llm = ScriptedLLM(write_then_answer())
    planner = planner_for(files, store, llm)
    paused = await planner.run("write", headers=ALICE)
    await service(store).decide(
        tenant="acme", approval_id=paused.pending_approvals[0].id, decision="approve", **ADMIN
    )
    outcomes = await asyncio.gather(
        *(planner.resume(paused.run_id, headers=ALICE) for _ in range(5)), return_exceptions=True
    )
    assert len(files.writes) == 1
    completed = [o for o in outcomes if not isinstance(o, BaseException)]
    assert completed and all(o.status == "completed" for o in completed)
    assert all(isinstance(o, ConflictError) for o in outcomes if isinstance(o, BaseException))


async def test_resuming_another_tenants_run_fails_like_an_unknown_id() -> None:
    files, store = Files(), MemoryStore()
    planner = planner_for(files, store, ScriptedLLM(write_then_answer()))
    paused = await planner.run("write", headers=ALICE)
    with pytest.raises(NotFoundError) as foreign:
        await planner.resume(paused.run_id, headers=Headers(tenant="globex", principal="mallory"))
    with pytest.raises(NotFoundError) as unknown:
        await planner.resume("run_does_not_exist", headers=Headers(tenant="globex"))
    assert str(foreign.value).replace(paused.run_id, "ID") == str(unknown.value).replace(
        "run_does_not_exist", "ID"
    )
    assert (await store.get_run("acme", paused.run_id)).status == "paused"


async def test_a_tool_outside_the_callers_view_is_refused_at_execution_and_audited() -> None:
    files, store = Files(), MemoryStore()
    viewer = Headers(tenant="globex", principal="carol")  # globex sees files.* but not clock.*
    llm = ScriptedLLM([{"tool_calls": [{"name": "clock.now", "arguments": {}}]}, {"content": "ok"}])
    result = await planner_for(files, store, llm).run("time?", headers=viewer)
    assert [t.name for t in llm.requests[0].tools] == ["files.write", "files.read"]
    assert result.steps[0].outcome == "denied"
    seen = llm.requests[1].messages[-1]["content"]
    # The model hears the same as for a tool that does not exist.
    assert seen == (
        "Error (not_found): tool 'clock.now' is not available. "
        "Available tools: files.write, files.read."
    )
    events = await store.list_events("globex", result.run_id)
    denied = [e for e in events if e.kind == "policy_denied"]
    assert (
        denied and denied[0].data["tool"] == "clock.now" and denied[0].data["principal"] == "carol"
    )


async def test_gated_call_with_invalid_arguments_is_refused_without_asking_anyone() -> None:
    files, store = Files(), MemoryStore()
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "files.write", "arguments": {"path": "/a.txt"}}]},
            {"content": "ok"},
        ]
    )
    result = await planner_for(files, store, llm).run("write", headers=ALICE)
    assert result.status == "completed"
    assert result.steps[0].outcome == "invalid_arguments"
    assert await store.list_approvals("acme") == []


async def test_an_approval_of_another_run_never_lets_a_call_run() -> None:
    """A paused run whose stored state names another run's approval (same tool, same
    arguments) does not run the call: the approval is bound to its run and call id."""
    files, store = Files(), MemoryStore()
    llm = ScriptedLLM(write_then_answer())
    planner = planner_for(files, store, llm)
    first = await planner.run("write", headers=ALICE)
    second = await planner.run("write", headers=ALICE)
    other = second.pending_approvals[0].id
    await service(store).decide(tenant="acme", approval_id=other, decision="approve", **ADMIN)
    record = await store.get_run("acme", first.run_id)
    record.state["paused"]["waiting"][0]["id"] = other
    await store.update_run(record, expected_version=record.version)

    done = await planner.resume(first.run_id, headers=ALICE)
    assert files.writes == []
    assert done.steps[-1].outcome == "approval_void"
    assert "another run or call" in str(done.steps[-1].result)


async def test_two_gated_calls_of_one_step_are_matched_by_call_id_whatever_the_decision_order() -> (
    None
):
    """The second call is approved first and runs on its own resume while the first still
    waits; the first is then rejected; the model gets each result under its own call id, in
    the order it asked."""
    files, store = Files(), MemoryStore()
    llm = ScriptedLLM(
        [
            {
                "tool_calls": [
                    {"name": "files.write", "arguments": {"path": "/a", "text": "A"}, "id": "w-a"},
                    {"name": "clock.now", "arguments": {}, "id": "c-now"},
                    {"name": "files.write", "arguments": {"path": "/b", "text": "B"}, "id": "w-b"},
                ]
            },
            {"content": "Done."},
        ]
    )
    planner = planner_for(files, store, llm)
    paused = await planner.run("write both", headers=ALICE)
    by_call = {p.call_id: p.id for p in paused.pending_approvals}
    assert set(by_call) == {"w-a", "w-b"}
    svc = service(store)

    await svc.decide(tenant="acme", approval_id=by_call["w-b"], decision="approve", **ADMIN)
    half = await planner.resume(paused.run_id, headers=ALICE)
    assert half.status == "paused"
    assert [p.call_id for p in half.pending_approvals] == ["w-a"]
    assert files.writes == [{"path": "/b", "text": "B"}]

    await svc.decide(
        tenant="acme", approval_id=by_call["w-a"], decision="reject", reason="No A.", **ADMIN
    )
    done = await planner.resume(paused.run_id, headers=ALICE)
    assert done.status == "completed"
    assert files.writes == [{"path": "/b", "text": "B"}]
    tools = [
        (m["tool_call_id"], m["content"]) for m in llm.requests[-1].messages if m["role"] == "tool"
    ]
    assert [call_id for call_id, _ in tools] == ["w-a", "c-now", "w-b"]
    assert "No A." in tools[0][1]
    assert tools[1][1] == "12:00"
    assert tools[2][1] == "wrote 1 characters to /b"
