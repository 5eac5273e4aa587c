"""The ``store`` activity meets the run's own earlier writes (a worker died after a local
activity wrote to the store and before the workflow task that records it completed; the next
worker makes the same writes again) and answers as the first writes were answered, while a
write that is not the workflow's own is still refused.

Runs the activity in temporalio's ``ActivityEnvironment`` over a real MemoryStore; the whole
path (a SIGKILLed worker, a dev server, a replay) is in test_runs.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from penguiflow_agents.store import MemoryStore
from penguiflow_agents.store._base import ApprovalRecord, RunRecord
from penguiflow_agents.temporal._activities import RunActivities
from penguiflow_agents.temporal._adapters import ActivityStore
from penguiflow_agents.tools import ToolRegistry


def _no_model(model: str | None) -> Any:
    raise AssertionError("no model call here")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def op(store: MemoryStore) -> Any:
    acts = RunActivities(store=store, registry=ToolRegistry(), open_model=_no_model)
    env = ActivityEnvironment()

    async def run(name: str, args: list[Any]) -> Any:
        return await env.run(acts.store_op, name, args)

    return run


def _run(**changes: Any) -> RunRecord:
    base = RunRecord(run_id="run-1", tenant="acme", principal="alice", query="q", model="m")
    return dataclasses.replace(base, **changes)


def _fields(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


async def test_a_run_created_again_is_answered_as_created(op: Any, store: MemoryStore) -> None:
    first = await op("create_run", [_fields(_run())])
    again = await op("create_run", [_fields(_run())])
    assert again["version"] == first["version"] == 0
    assert again["created_at"] == first["created_at"]
    # Another run under the same id is still refused.
    with pytest.raises(ApplicationError) as refused:
        await op("create_run", [_fields(_run(principal="mallory"))])
    assert refused.value.type == "ConflictError" and "already exists" in str(refused.value)


async def test_an_update_the_store_is_ahead_of_is_answered_with_its_version(
    op: Any, store: MemoryStore
) -> None:
    await op("create_run", [_fields(_run())])
    await op("update_run", [_fields(_run(status="paused", state={"a": 1})), 0])  # version 1
    await op("update_run", [_fields(_run(status="running", state={"a": 2})), 1])  # version 2
    # The replay makes both writes again: each is answered with the version it wrote then,
    # and the stored record (the furthest one) is left as it is.
    first = await op("update_run", [_fields(_run(status="paused", state={"a": 1})), 0])
    second = await op("update_run", [_fields(_run(status="running", state={"a": 2})), 1])
    assert (first["version"], first["status"]) == (1, "paused")
    assert (second["version"], second["state"]) == (2, {"a": 2})
    stored = await store.get_run("acme", "run-1")
    assert (stored.version, stored.state) == (2, {"a": 2})
    # The next write of the replay is a new one: written on top.
    third = await op("update_run", [_fields(_run(status="completed")), 2])
    assert third["version"] == 3 and (await store.get_run("acme", "run-1")).status == "completed"
    # A write from behind what is stored is not a replay: refused.
    await store.update_run(_run(status="running"), expected_version=3)  # version 4
    with pytest.raises(ApplicationError) as refused:
        await op("update_run", [_fields(_run(status="paused")), 5])
    assert refused.value.type == "ConflictError"
    # Neither is a record ahead that a process claimed (another writer: a workflow never
    # claims its run).
    await store.update_run(_run(status="running", claimed_by="vm:1:x"), expected_version=4)
    with pytest.raises(ApplicationError) as claimed:
        await op("update_run", [_fields(_run(status="paused")), 4])
    assert claimed.value.type == "ConflictError"


def _approval(**changes: Any) -> ApprovalRecord:
    base = ApprovalRecord(
        id="apr-1",
        tenant="acme",
        run_id="run-1",
        call_id="c3",
        tool="ops.restart",
        arguments={"service": "web"},
        arguments_sha256="s" * 64,
        tool_hash="t" * 64,
        policy_version="p" * 64,
        requested_by="alice",
        approvers=["role:admin"],
        rule={"match": "ops.restart", "reason": "Restarts"},
        created_at=1.0,
        expires_at=4e9,
    )
    return dataclasses.replace(base, **changes)


async def test_an_approval_created_again_is_the_stored_one_and_its_events_are_not_repeated(
    op: Any, store: MemoryStore
) -> None:
    events = [["approval_requested", {"approval_id": "apr-1"}]]
    await op("create_approval", [_fields(_approval()), [], events])
    again = await op("create_approval", [_fields(_approval()), [], events])
    assert again["id"] == "apr-1" and again["status"] == "pending"
    assert [e.kind for e in await store.list_events("acme", "run-1")] == ["approval_requested"]
    # Another request under the same id (another call) is still refused.
    with pytest.raises(ApplicationError) as refused:
        await op("create_approval", [_fields(_approval(call_id="c9")), [], []])
    assert refused.value.type == "ConflictError"


async def test_appends_made_again_find_their_events_and_only_new_ones_are_written(
    op: Any, store: MemoryStore
) -> None:
    """Through the workflow's side (ActivityStore keeps the fence) with the activity as its
    store: a first execution appends, a replay starts again from the recorded fence."""
    fence: dict[str, list[Any]] = {}

    async def append(kind: str, data: dict[str, Any], at: dict[str, list[Any]]) -> int:
        start = at.get("run-1", [0, []])
        answer = await op("append_event", ["acme", "run-1", kind, data, start])
        (seq,) = ActivityStore(on_approval=lambda r: None, seen=at)._saw("run-1", start, answer)
        return seq

    async def append_many(
        events: list[tuple[str, dict[str, Any]]], at: dict[str, list[Any]]
    ) -> list[int]:
        start = at.get("run-1", [0, []])
        batch = [[k, d] for k, d in events]
        answer = await op("append_events", ["acme", "run-1", batch, start])
        return ActivityStore(on_approval=lambda r: None, seen=at)._saw("run-1", start, answer)

    assert await append("run_started", {}, fence) == 1
    recorded = {k: [v[0], list(v[1])] for k, v in fence.items()}  # what the history holds
    # The lost task: two finished calls, a text, another text, the pause.
    lost = [
        ("tool_call_finished", {"step": 1, "call_id": "c1", "latency_s": 0.02}),
        ("tool_call_finished", {"step": 1, "call_id": "c2", "latency_s": 0.03}),
    ]
    assert await append_many(lost, fence) == [2, 3]
    assert await append("text_delta", {"text": "a"}, fence) == 4
    assert await append("text_delta", {"text": "b"}, fence) == 5
    assert await append("paused", {"step": 1, "approval_ids": ["apr-1"]}, fence) == 6
    await store.append_event("acme", "run-1", "approval_decided", {"approval_id": "apr-1"})  # 7
    # The replay, from the recorded fence: the calls in the other order (their results came
    # at once) and grouped otherwise, later latencies; each event is found (the later one
    # first: the earlier one is still found after it), none is written again.
    c2 = ("tool_call_finished", {"step": 1, "call_id": "c2", "latency_s": 9.5})
    c1 = ("tool_call_finished", {"step": 1, "call_id": "c1", "latency_s": 9.5})
    assert await append(*c2, recorded) == 3
    assert await append_many([c1, ("text_delta", {"text": "a"})], recorded) == [2, 4]
    assert await append("text_delta", {"text": "b"}, recorded) == 5
    assert await append("paused", {"step": 1, "approval_ids": ["apr-1"]}, recorded) == 6
    # Past the lost task: new events are written, also one like an earlier one.
    assert await append("resumed", {"by": "bob"}, recorded) == 8
    assert await append("text_delta", {"text": "a"}, recorded) == 9
    kinds = [e.kind for e in await store.list_events("acme", "run-1")]
    assert kinds == [
        "run_started",
        "tool_call_finished",
        "tool_call_finished",
        "text_delta",
        "text_delta",
        "paused",
        "approval_decided",
        "resumed",
        "text_delta",
    ]


async def test_an_append_after_events_of_others_is_written(op: Any, store: MemoryStore) -> None:
    """No replay: what others wrote after the fence (a decision) is never the workflow's."""
    await store.append_event("acme", "run-1", "approval_decided", {"approval_id": "apr-1"})
    answer = await op("append_event", ["acme", "run-1", "resumed", {"by": "bob"}, [0, []]])
    assert answer == {"seqs": [2], "found": []}
    assert len(await store.list_events("acme", "run-1")) == 2


async def test_a_decision_delivered_again_is_answered_and_another_one_still_refused(
    store: MemoryStore,
) -> None:
    policy = {
        "tenant": "*",
        "allow": ["ops.*"],
        "approvals": [{"match": "ops.restart", "approvers": ["role:admin"], "reason": "R"}],
    }
    acts = RunActivities(
        store=store, registry=ToolRegistry(), open_model=_no_model, policy_documents=[policy]
    )
    env = ActivityEnvironment()
    await store.create_approval(_approval())
    decision = {
        "tenant": "acme",
        "approval_id": "apr-1",
        "principal": "bob",
        "roles": ["admin"],
        "decision": "approve",
        "reason": None,
        "arguments": None,
    }
    first = await env.run(acts.decide, decision)
    again = await env.run(acts.decide, decision)
    assert first["status"] == again["status"] == "approved"
    assert again.pop("replayed") is True and "replayed" not in first
    assert again == first
    for other in ({"principal": "carol"}, {"decision": "reject"}, {"reason": "changed"}):
        with pytest.raises(ApplicationError) as refused:
            await env.run(acts.decide, {**decision, **other})
        assert refused.value.type == "AlreadyDecidedError"
    assert [e.kind for e in await store.list_events("acme", "run-1")] == ["approval_decided"]


async def test_a_gate_opened_before_a_replay_opens_again_until_the_call_is_finished(
    op: Any, store: MemoryStore
) -> None:
    """The workflow's once-only gate of an approved call: opened again while its call never
    finished (the tool_call activity's own gate keeps the tool from running twice), closed
    for good once the call is recorded as done."""
    assert await op("begin_call", ["acme", "run-1", "apr-1"]) is True
    assert await op("begin_call", ["acme", "run-1", "apr-1"]) is True
    await op("finish_call", ["acme", "run-1", "apr-1", {"ok": True}])
    assert await op("begin_call", ["acme", "run-1", "apr-1"]) is False


async def test_a_result_recorded_again_is_taken_as_written_and_another_one_refused(
    op: Any, store: MemoryStore
) -> None:
    """A replayed task records the approved call's result again (the tool's answer from the
    history, a latency measured anew): taken as written; a different answer is a conflict."""
    await op("begin_call", ["acme", "run-1", "apr-1"])
    result = {"name": "ops.restart", "ok": True, "output": "restarted web", "latency_s": 0.02}
    await op("finish_call", ["acme", "run-1", "apr-1", result])
    await op("finish_call", ["acme", "run-1", "apr-1", {**result, "latency_s": 9.8}])
    stored = await store.get_call("acme", "run-1", "apr-1")
    assert stored is not None and stored.result == result  # the first one stays
    with pytest.raises(ApplicationError) as refused:
        await op("finish_call", ["acme", "run-1", "apr-1", {**result, "output": "other"}])
    assert refused.value.type == "ConflictError"
