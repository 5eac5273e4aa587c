"""The StateStore contract, run against every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest

from penguiflow_agents.exceptions import (
    AlreadyDecidedError,
    ConflictError,
    NotFoundError,
    StoreError,
    UserError,
)
from penguiflow_agents.store import (
    ApprovalDecision,
    ApprovalRecord,
    RunRecord,
    StateStore,
)

CONCURRENCY = 20  # racing tasks in the in-process race tests


def make_run(tenant: str, run_id: str = "run-1", **kw: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "principal": "alice",
        "roles": ["analyst"],
        "session_id": "s-1",
        "status": "paused",
        "model": "replay",
        "query": "What time is it?",
        "state": {"messages": [{"role": "user", "content": "hi"}], "step": 2},
    }
    fields.update(kw)
    return RunRecord(run_id=run_id, tenant=tenant, **fields)


def make_approval(tenant: str, approval_id: str = "ap-1", **kw: Any) -> ApprovalRecord:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "call_id": "call-1",
        "tool": "files.write_text",
        "arguments": {"path": "/shared/a.txt", "text": "hello"},
        "arguments_sha256": "a" * 64,
        "tool_hash": "b" * 64,
        "policy_version": "v1",
        "requested_by": "alice",
        "approvers": ["role:admin"],
        "rule": {"match": "files.write_*", "reason": "Writes to the shared drive"},
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        "expires_at": time.time() + 3600,
    }
    fields.update(kw)
    return ApprovalRecord(id=approval_id, tenant=tenant, **fields)


def approve(by: str = "bob", **kw: Any) -> ApprovalDecision:
    return ApprovalDecision(decision="approve", decided_by=by, decided_roles=["admin"], **kw)


async def test_every_store_satisfies_the_protocol(store: StateStore) -> None:
    assert isinstance(store, StateStore)


# -- events ------------------------------------------------------------------------------------


async def test_append_event_numbers_each_run_from_one_without_gaps(
    store: StateStore, tenant: str
) -> None:
    assert [await store.append_event(tenant, "r1", "step", {"n": i}) for i in range(3)] == [1, 2, 3]
    assert await store.append_event(tenant, "r2", "step", {}) == 1
    events = await store.list_events(tenant, "r1")
    assert [(e.seq, e.kind, e.data, e.run_id, e.tenant) for e in events] == [
        (1, "step", {"n": 0}, "r1", tenant),
        (2, "step", {"n": 1}, "r1", tenant),
        (3, "step", {"n": 2}, "r1", tenant),
    ]
    assert all(abs(e.ts - time.time()) < 60 for e in events)


async def test_append_events_writes_a_batch_in_order_after_the_events_before_it(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    assert await store.append_event(tenant, "r1", "run_started", {}) == 1
    batch = [("step_started", {"step": 1}), ("llm_response", {"step": 1}), ("final", {"a": "x"})]
    assert await store.append_events(tenant, "r1", batch) == [2, 3, 4]
    assert await store.append_events(tenant, "r1", []) == []
    assert await store.append_event(tenant, "r1", "run_finished", {}) == 5
    assert await store.append_events(other_tenant, "r1", batch[:1]) == [1]
    events = await store.list_events(tenant, "r1")
    assert [(e.seq, e.kind, e.data) for e in events] == [
        (1, "run_started", {}),
        (2, "step_started", {"step": 1}),
        (3, "llm_response", {"step": 1}),
        (4, "final", {"a": "x"}),
        (5, "run_finished", {}),
    ]
    assert [e.seq for e in await store.list_events(tenant, "r1", after_seq=2)] == [3, 4, 5]


async def test_append_events_with_data_that_is_not_json_writes_none_of_the_batch(
    store: StateStore, tenant: str
) -> None:
    with pytest.raises(UserError, match="data of event 'bad'"):
        await store.append_events(tenant, "r1", [("ok", {"i": 1}), ("bad", {"x": object()})])
    assert await store.list_events(tenant, "r1") == []


async def test_concurrent_batches_and_single_appends_get_unique_gapless_seqs(
    store: StateStore, tenant: str
) -> None:
    batches = [
        store.append_events(tenant, "r1", [("b", {"i": i}), ("b", {"i": i})]) for i in range(10)
    ]
    singles = [store.append_event(tenant, "r1", "s", {"i": i}) for i in range(10)]
    results = await asyncio.gather(*batches, *singles)
    seqs = [seq for r in results for seq in (r if isinstance(r, list) else [r])]
    assert sorted(seqs) == list(range(1, 31))
    for r in results[:10]:
        assert isinstance(r, list) and r[1] == r[0] + 1  # a batch is consecutive
    assert [e.seq for e in await store.list_events(tenant, "r1")] == list(range(1, 31))


async def test_list_events_after_seq_returns_only_later_events(
    store: StateStore, tenant: str
) -> None:
    for i in range(5):
        await store.append_event(tenant, "r1", "k", {"i": i})
    assert [e.seq for e in await store.list_events(tenant, "r1", after_seq=3)] == [4, 5]
    assert await store.list_events(tenant, "r1", after_seq=5) == []
    assert await store.list_events(tenant, "never-written") == []


async def test_events_need_no_run_record_and_are_separate_per_tenant(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    """The flow runtime appends FlowEvents keyed by trace_id without creating a run."""
    assert await store.append_event(tenant, "trace-1", "node_start", {"node": "a"}) == 1
    assert await store.append_event(other_tenant, "trace-1", "node_start", {"node": "b"}) == 1
    assert [e.data for e in await store.list_events(tenant, "trace-1")] == [{"node": "a"}]
    assert [e.data for e in await store.list_events(other_tenant, "trace-1")] == [{"node": "b"}]


async def test_concurrent_appends_get_unique_gapless_seqs(store: StateStore, tenant: str) -> None:
    seqs = await asyncio.gather(
        *(store.append_event(tenant, "r1", "k", {"i": i}) for i in range(50))
    )
    assert sorted(seqs) == list(range(1, 51))
    assert [e.seq for e in await store.list_events(tenant, "r1")] == list(range(1, 51))


async def test_event_data_is_copied_and_json_normalized(store: StateStore, tenant: str) -> None:
    data: dict[str, Any] = {"pair": (1, 2), "nested": {"x": [1]}}
    await store.append_event(tenant, "r1", "k", data)
    data["nested"]["x"].append(2)
    (event,) = await store.list_events(tenant, "r1")
    assert event.data == {"pair": [1, 2], "nested": {"x": [1]}}
    event.data["nested"]["x"].append(3)
    assert (await store.list_events(tenant, "r1"))[0].data == {"pair": [1, 2], "nested": {"x": [1]}}


async def test_non_json_event_data_is_a_user_error(store: StateStore, tenant: str) -> None:
    with pytest.raises(UserError, match="JSON"):
        await store.append_event(tenant, "r1", "k", {"when": datetime.now()})
    assert await store.append_event(tenant, "r1", "k", {}) == 1  # nothing was half-written


# -- runs --------------------------------------------------------------------------------------


async def test_create_then_get_run_round_trips_every_field(store: StateStore, tenant: str) -> None:
    created = await store.create_run(make_run(tenant, claimed_by="w1", claim_expires_at=123.5))
    fetched = await store.get_run(tenant, "run-1")
    assert fetched == created
    assert (fetched.principal, fetched.roles, fetched.session_id, fetched.status) == (
        "alice",
        ["analyst"],
        "s-1",
        "paused",
    )
    assert (fetched.model, fetched.query, fetched.claimed_by, fetched.claim_expires_at) == (
        "replay",
        "What time is it?",
        "w1",
        123.5,
    )
    assert fetched.state == {"messages": [{"role": "user", "content": "hi"}], "step": 2}
    assert fetched.version == 0
    assert abs(fetched.created_at - time.time()) < 60
    assert fetched.updated_at >= fetched.created_at


async def test_create_run_keeps_given_timestamps(store: StateStore, tenant: str) -> None:
    created = await store.create_run(make_run(tenant, created_at=1000.25, updated_at=2000.5))
    assert (created.created_at, created.updated_at) == (1000.25, 2000.5)
    assert (await store.get_run(tenant, "run-1")).created_at == 1000.25


async def test_creating_a_run_id_twice_is_a_conflict(store: StateStore, tenant: str) -> None:
    await store.create_run(make_run(tenant))
    with pytest.raises(ConflictError, match="run-1"):
        await store.create_run(make_run(tenant))


async def test_create_run_rejects_an_unknown_status(store: StateStore, tenant: str) -> None:
    with pytest.raises(UserError, match="'sleeping'"):
        await store.create_run(make_run(tenant, status="sleeping"))


async def test_get_run_of_another_tenant_fails_exactly_like_a_missing_id(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    with pytest.raises(NotFoundError) as missing:
        await store.get_run(other_tenant, "run-1")
    await store.create_run(make_run(tenant))
    with pytest.raises(NotFoundError) as foreign:
        await store.get_run(other_tenant, "run-1")
    assert str(foreign.value) == str(missing.value) == "no run with id 'run-1'"


async def test_returned_runs_are_copies(store: StateStore, tenant: str) -> None:
    original = make_run(tenant)
    created = await store.create_run(original)
    original.state["step"] = 99
    created.state["messages"].append({"role": "x"})
    created.roles.append("admin")
    fetched = await store.get_run(tenant, "run-1")
    fetched.state["step"] = 100
    again = await store.get_run(tenant, "run-1")
    assert again.state == {"messages": [{"role": "user", "content": "hi"}], "step": 2}
    assert again.roles == ["analyst"]


async def test_list_runs_filters_by_tenant_and_status_oldest_first(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    await store.create_run(make_run(tenant, "b", status="completed", created_at=20.0))
    await store.create_run(make_run(tenant, "a", status="paused", created_at=10.0))
    await store.create_run(make_run(tenant, "c", status="paused", created_at=30.0))
    await store.create_run(make_run(other_tenant, "z", status="paused", created_at=5.0))
    assert [r.run_id for r in await store.list_runs(tenant)] == ["a", "b", "c"]
    assert [r.run_id for r in await store.list_runs(tenant, status="paused")] == ["a", "c"]
    assert await store.list_runs(tenant, status="failed") == []
    with pytest.raises(UserError, match="'stuck'"):
        await store.list_runs(tenant, status="stuck")


async def test_update_run_writes_fields_and_bumps_the_version(
    store: StateStore, tenant: str
) -> None:
    created = await store.create_run(make_run(tenant, created_at=50.0))
    created.status = "completed"
    created.state = {"answer": 42}
    created.claimed_by = None
    updated = await store.update_run(created, expected_version=0)
    assert (updated.version, updated.status, updated.state, updated.created_at) == (
        1,
        "completed",
        {"answer": 42},
        50.0,
    )
    assert await store.get_run(tenant, "run-1") == updated
    updated.query = "again"
    assert (await store.update_run(updated, expected_version=1)).version == 2


@pytest.mark.parametrize("status", ["running", "completed"])  # a checkpoint, a last write
async def test_update_run_writes_each_optional_field_as_none_and_back(
    store: StateStore, tenant: str, status: str
) -> None:
    record = await store.create_run(
        make_run(tenant, status="running", claimed_by="w1", claim_expires_at=5.0)
    )
    given = {"session_id": "s-2", "claimed_by": "w2", "claim_expires_at": 7.5}
    for i in range(8):  # every mix of None and a value among the three
        for bit, (name, value) in enumerate(given.items()):
            setattr(record, name, None if i >> bit & 1 else value)
        record.status = status if i == 7 else "running"
        record = await store.update_run(record, expected_version=i)
        fetched = await store.get_run(tenant, "run-1")
        assert fetched == record
        assert [getattr(fetched, n) for n in given] == [
            None if i >> bit & 1 else v for bit, v in enumerate(given.values())
        ]


async def test_update_run_keeps_the_stored_created_at_and_lists_the_run_by_its_new_status(
    store: StateStore, tenant: str
) -> None:
    created = await store.create_run(make_run(tenant, created_at=50.0, status="running"))
    created.created_at = 70.0  # not the stored one: ignored
    created.state = {"step": 1}
    kept = await store.update_run(created, expected_version=0)
    assert (kept.version, kept.created_at, kept.status) == (1, 50.0, "running")
    kept.state = {"step": 2}  # a checkpoint keeping the status
    kept = await store.update_run(kept, expected_version=1)
    kept.status = "completed"
    done = await store.update_run(kept, expected_version=2)
    assert (done.version, done.created_at, done.status) == (3, 50.0, "completed")
    assert await store.get_run(tenant, "run-1") == done
    assert [r.run_id for r in await store.list_runs(tenant, status="completed")] == ["run-1"]
    assert await store.list_runs(tenant, status="running") == []


async def test_update_run_stores_a_normalized_copy_and_returns_another(
    store: StateStore, tenant: str
) -> None:
    created = await store.create_run(make_run(tenant))
    created.state = {"messages": [{"role": "user", "content": "hi"}], "pair": (1, 2)}
    updated = await store.update_run(created, expected_version=0)
    assert updated.state == {"messages": [{"role": "user", "content": "hi"}], "pair": [1, 2]}
    created.state["messages"].append({"role": "x"})  # the caller's object, after the write
    updated.state["messages"].append({"role": "y"})  # the returned copy
    updated.roles.append("admin")
    again = await store.get_run(tenant, "run-1")
    assert again.state == {"messages": [{"role": "user", "content": "hi"}], "pair": [1, 2]}
    assert (again.roles, again.version) == (["analyst"], 1)


async def test_update_run_refuses_state_that_is_not_json_and_changes_nothing(
    store: StateStore, tenant: str
) -> None:
    created = await store.create_run(make_run(tenant))
    created.state = {"when": object()}
    with pytest.raises(UserError, match="run state"):
        await store.update_run(created, expected_version=0)
    assert (await store.get_run(tenant, "run-1")).version == 0


async def test_update_run_with_a_stale_version_is_a_conflict(
    store: StateStore, tenant: str
) -> None:
    created = await store.create_run(make_run(tenant))
    await store.update_run(created, expected_version=0)
    created.status = "failed"
    with pytest.raises(ConflictError, match="version 1, not 0"):
        await store.update_run(created, expected_version=0)
    assert (await store.get_run(tenant, "run-1")).status == "paused"


async def test_update_run_of_a_foreign_run_fails_like_a_missing_one(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    with pytest.raises(NotFoundError) as missing:
        await store.update_run(make_run(other_tenant), expected_version=0)
    await store.create_run(make_run(tenant))
    with pytest.raises(NotFoundError) as foreign:
        await store.update_run(make_run(other_tenant), expected_version=0)
    assert str(foreign.value) == str(missing.value)
    assert (await store.get_run(tenant, "run-1")).version == 0


async def test_concurrent_updates_with_one_version_have_one_winner(
    store: StateStore, tenant: str
) -> None:
    created = await store.create_run(make_run(tenant))

    async def write(i: int) -> bool:
        run = make_run(tenant, state={"writer": i})
        try:
            await store.update_run(run, expected_version=created.version)
        except ConflictError:
            return False
        return True

    results = await asyncio.gather(*(write(i) for i in range(CONCURRENCY)))
    assert results.count(True) == 1
    assert (await store.get_run(tenant, "run-1")).state == {"writer": results.index(True)}


# -- claims ------------------------------------------------------------------------------------


async def test_claim_run_takes_a_paused_run_with_a_lease(store: StateStore, tenant: str) -> None:
    await store.create_run(make_run(tenant))
    before = time.time()
    claimed = await store.claim_run(
        tenant, "run-1", owner="w1", from_statuses=["paused"], lease_s=30
    )
    assert claimed is not None
    assert (claimed.status, claimed.claimed_by, claimed.version) == ("running", "w1", 1)
    assert claimed.claim_expires_at is not None
    assert before + 30 <= claimed.claim_expires_at <= time.time() + 30
    assert await store.get_run(tenant, "run-1") == claimed


async def test_a_live_claim_cannot_be_taken_even_by_its_owner(
    store: StateStore, tenant: str
) -> None:
    await store.create_run(make_run(tenant))
    assert await store.claim_run(tenant, "run-1", owner="w1", from_statuses=["paused"], lease_s=30)
    for owner in ("w2", "w1"):
        got = await store.claim_run(
            tenant, "run-1", owner=owner, from_statuses=["paused", "running"], lease_s=30
        )
        assert got is None
    assert (await store.get_run(tenant, "run-1")).claimed_by == "w1"


async def test_claim_run_refuses_a_status_outside_from_statuses(
    store: StateStore, tenant: str
) -> None:
    await store.create_run(make_run(tenant, status="completed"))
    assert (
        await store.claim_run(tenant, "run-1", owner="w", from_statuses=["paused"], lease_s=5)
        is None
    )
    assert (await store.get_run(tenant, "run-1")).version == 0


async def test_an_expired_lease_is_reclaimable_whatever_from_statuses_says(
    store: StateStore, tenant: str
) -> None:
    """A worker that died mid-run left status running under a lease that ran out."""
    await store.create_run(
        make_run(tenant, status="running", claimed_by="dead", claim_expires_at=time.time() - 1)
    )
    claimed = await store.claim_run(
        tenant, "run-1", owner="w2", from_statuses=["paused"], lease_s=5
    )
    assert claimed is not None and claimed.claimed_by == "w2" and claimed.version == 1


async def test_an_unclaimed_running_run_is_claimable_only_from_running(
    store: StateStore, tenant: str
) -> None:
    await store.create_run(make_run(tenant, status="running"))
    assert (
        await store.claim_run(tenant, "run-1", owner="w", from_statuses=["paused"], lease_s=5)
        is None
    )
    claimed = await store.claim_run(
        tenant, "run-1", owner="w", from_statuses=["running"], lease_s=5
    )
    assert claimed is not None and claimed.claimed_by == "w"


async def test_a_worker_that_lost_its_claim_cannot_write_the_run(
    store: StateStore, tenant: str
) -> None:
    await store.create_run(make_run(tenant))
    mine = await store.claim_run(
        tenant, "run-1", owner="w1", from_statuses=["paused"], lease_s=0.01
    )
    assert mine is not None
    await asyncio.sleep((mine.claim_expires_at or 0) - time.time() + 0.05)  # the lease runs out
    theirs = await store.claim_run(
        tenant, "run-1", owner="w2", from_statuses=["paused"], lease_s=30
    )
    assert theirs is not None
    mine.status = "completed"
    with pytest.raises(ConflictError):
        await store.update_run(mine, expected_version=mine.version)


async def test_claim_run_of_a_foreign_run_fails_like_a_missing_one(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    claim = {"owner": "w", "from_statuses": ["paused"], "lease_s": 5}
    with pytest.raises(NotFoundError) as missing:
        await store.claim_run(other_tenant, "run-1", **claim)  # type: ignore[arg-type]
    await store.create_run(make_run(tenant))
    with pytest.raises(NotFoundError) as foreign:
        await store.claim_run(other_tenant, "run-1", **claim)  # type: ignore[arg-type]
    assert str(foreign.value) == str(missing.value)
    assert (await store.get_run(tenant, "run-1")).status == "paused"


@pytest.mark.parametrize(
    ("statuses", "lease", "match"),
    [
        (["paused"], 0, "lease_s"),
        (["paused"], -1.0, "lease_s"),
        (["nap"], 5, "'nap'"),
        ("paused", 5, "sequence"),
    ],
)
async def test_claim_run_rejects_bad_arguments(
    store: StateStore, tenant: str, statuses: Any, lease: float, match: str
) -> None:
    await store.create_run(make_run(tenant))
    with pytest.raises(UserError, match=match):
        await store.claim_run(tenant, "run-1", owner="w", from_statuses=statuses, lease_s=lease)


async def test_concurrent_claims_have_exactly_one_winner(store: StateStore, tenant: str) -> None:
    await store.create_run(make_run(tenant))
    results = await asyncio.gather(
        *(
            store.claim_run(tenant, "run-1", owner=f"w{i}", from_statuses=["paused"], lease_s=30)
            for i in range(CONCURRENCY)
        )
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert (await store.get_run(tenant, "run-1")).claimed_by == winners[0].claimed_by


# -- sessions ----------------------------------------------------------------------------------


async def test_an_unknown_session_is_empty(store: StateStore, tenant: str) -> None:
    assert await store.load_session(tenant, "nope") == []


async def test_save_session_replaces_the_history_per_tenant(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    await store.save_session(tenant, "s", [{"role": "user", "content": "hi"}])
    second: list[dict[str, Any]] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "tool_calls": [{"id": "c1"}]},
    ]
    await store.save_session(tenant, "s", second)
    second.append({"role": "mutated"})
    second[1]["tool_calls"][0]["id"] = "mutated"
    expected = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "tool_calls": [{"id": "c1"}]},
    ]
    loaded = await store.load_session(tenant, "s")
    assert loaded == expected
    loaded[1]["tool_calls"].append({"id": "x"})
    assert await store.load_session(tenant, "s") == expected
    assert await store.load_session(other_tenant, "s") == []


# -- approvals ---------------------------------------------------------------------------------


async def test_create_then_get_approval_round_trips_every_field(
    store: StateStore, tenant: str
) -> None:
    created = await store.create_approval(make_approval(tenant, created_at=77.5))
    fetched = await store.get_approval(tenant, "ap-1")
    assert fetched == created
    assert fetched.arguments == {"path": "/shared/a.txt", "text": "hello"}
    assert fetched.rule == {"match": "files.write_*", "reason": "Writes to the shared drive"}
    assert fetched.input_schema["properties"] == {"path": {"type": "string"}}
    assert (fetched.status, fetched.decision, fetched.created_at) == ("pending", None, 77.5)
    assert (fetched.tool, fetched.call_id, fetched.run_id, fetched.approvers) == (
        "files.write_text",
        "call-1",
        "run-1",
        ["role:admin"],
    )


async def test_create_approval_fills_created_at(store: StateStore, tenant: str) -> None:
    created = await store.create_approval(make_approval(tenant))
    assert abs(created.created_at - time.time()) < 60


async def test_creating_an_approval_id_twice_is_a_conflict(store: StateStore, tenant: str) -> None:
    await store.create_approval(make_approval(tenant))
    with pytest.raises(ConflictError, match="ap-1"):
        await store.create_approval(make_approval(tenant))


async def test_get_approval_of_another_tenant_fails_exactly_like_a_missing_id(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    with pytest.raises(NotFoundError) as missing:
        await store.get_approval(other_tenant, "ap-1")
    await store.create_approval(make_approval(tenant))
    with pytest.raises(NotFoundError) as foreign:
        await store.get_approval(other_tenant, "ap-1")
    assert str(foreign.value) == str(missing.value) == "no approval with id 'ap-1'"


async def test_list_approvals_is_oldest_first_and_filters(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    await store.create_approval(make_approval(tenant, "late", created_at=300.0))
    await store.create_approval(make_approval(tenant, "early", created_at=100.0, run_id="run-2"))
    await store.create_approval(make_approval(tenant, "mid", created_at=200.0))
    await store.create_approval(make_approval(other_tenant, "theirs", created_at=1.0))
    await store.decide_approval(tenant, "mid", approve())
    assert [a.id for a in await store.list_approvals(tenant)] == ["early", "mid", "late"]
    assert [a.id for a in await store.list_approvals(tenant, status="pending")] == ["early", "late"]
    assert [a.id for a in await store.list_approvals(tenant, status="approved")] == ["mid"]
    assert [a.id for a in await store.list_approvals(tenant, run_id="run-1")] == ["mid", "late"]
    assert [a.id for a in await store.list_approvals(tenant, status="pending", run_id="run-2")] == [
        "early"
    ]
    with pytest.raises(UserError, match="'maybe'"):
        await store.list_approvals(tenant, status="maybe")


async def test_approvals_created_in_the_same_instant_list_in_creation_order(
    store: StateStore, tenant: str
) -> None:
    for name in ("first", "second", "third"):
        await store.create_approval(make_approval(tenant, name, created_at=500.0))
    assert [a.id for a in await store.list_approvals(tenant)] == ["first", "second", "third"]


@pytest.mark.parametrize(
    ("decision", "status"),
    [
        (ApprovalDecision(decision="approve", decided_by="bob"), "approved"),
        (ApprovalDecision(decision="reject", decided_by="bob", reason="not today"), "rejected"),
        (
            ApprovalDecision(
                decision="edit", decided_by="bob", arguments={"path": "/shared/b.txt"}
            ),
            "approved",
        ),
    ],
)
async def test_decide_approval_records_the_decision(
    store: StateStore, tenant: str, decision: ApprovalDecision, status: str
) -> None:
    await store.create_approval(make_approval(tenant))
    decided = await store.decide_approval(tenant, "ap-1", decision)
    assert decided.status == status
    assert decided.decision is not None
    assert (decided.decision.decision, decided.decision.decided_by) == (decision.decision, "bob")
    assert (decided.decision.reason, decided.decision.arguments) == (
        decision.reason,
        decision.arguments,
    )
    assert abs(decided.decision.decided_at - time.time()) < 60
    assert await store.get_approval(tenant, "ap-1") == decided


async def test_a_second_decision_says_who_decided_what_and_when(
    store: StateStore, tenant: str
) -> None:
    await store.create_approval(make_approval(tenant))
    await store.decide_approval(tenant, "ap-1", approve(by="bob", decided_at=1_700_000_000.0))
    with pytest.raises(AlreadyDecidedError) as exc:
        await store.decide_approval(
            tenant, "ap-1", ApprovalDecision(decision="reject", decided_by="carol", reason="no")
        )
    err = exc.value
    assert (err.approval_id, err.decided_by, err.decision) == ("ap-1", "bob", "approve")
    assert err.decided_at == "2023-11-14T22:13:20+00:00"
    assert "'bob'" in str(err) and "approve" in str(err) and "2023-11-14T22:13:20+00:00" in str(err)
    assert (await store.get_approval(tenant, "ap-1")).status == "approved"


async def test_a_request_stored_as_expired_cannot_be_decided(
    store: StateStore, tenant: str
) -> None:
    await store.create_approval(make_approval(tenant, status="expired", expires_at=1_700_000_000.0))
    with pytest.raises(AlreadyDecidedError, match="expired"):
        await store.decide_approval(tenant, "ap-1", approve())


async def test_decide_approval_of_another_tenant_fails_exactly_like_a_missing_id(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    with pytest.raises(NotFoundError) as missing:
        await store.decide_approval(other_tenant, "ap-1", approve())
    await store.create_approval(make_approval(tenant))
    with pytest.raises(NotFoundError) as foreign:
        await store.decide_approval(other_tenant, "ap-1", approve())
    assert str(foreign.value) == str(missing.value)
    assert (await store.get_approval(tenant, "ap-1")).status == "pending"


async def test_decide_approval_rejects_an_unknown_decision(store: StateStore, tenant: str) -> None:
    await store.create_approval(make_approval(tenant))
    with pytest.raises(UserError, match="'maybe'"):
        await store.decide_approval(
            tenant, "ap-1", ApprovalDecision(decision="maybe", decided_by="bob")
        )
    assert (await store.get_approval(tenant, "ap-1")).status == "pending"


async def test_concurrent_decisions_have_exactly_one_winner(store: StateStore, tenant: str) -> None:
    await store.create_approval(make_approval(tenant))

    async def decide(i: int) -> str:
        try:
            await store.decide_approval(tenant, "ap-1", approve(by=f"admin{i}"))
        except AlreadyDecidedError as exc:
            return f"lost to {exc.decided_by}"
        return f"admin{i}"

    results = await asyncio.gather(*(decide(i) for i in range(CONCURRENCY)))
    winners = [r for r in results if not r.startswith("lost")]
    assert len(winners) == 1
    assert set(results) - set(winners) == {f"lost to {winners[0]}"}


# -- exactly-once calls ------------------------------------------------------------------------


async def test_begin_call_succeeds_once_then_finish_records_the_result(
    store: StateStore, tenant: str
) -> None:
    assert await store.get_call(tenant, "run-1", "c1") is None
    assert await store.begin_call(tenant, "run-1", "c1") is True
    assert await store.begin_call(tenant, "run-1", "c1") is False
    begun = await store.get_call(tenant, "run-1", "c1")
    assert begun is not None
    assert (begun.status, begun.result, begun.call_id, begun.run_id) == (
        "executing",
        None,
        "c1",
        "run-1",
    )
    assert abs(begun.started_at - time.time()) < 60
    await store.finish_call(tenant, "run-1", "c1", {"ok": True, "content": [1, 2]})
    done = await store.get_call(tenant, "run-1", "c1")
    assert done is not None and (done.status, done.result) == (
        "done",
        {"ok": True, "content": [1, 2]},
    )
    assert await store.begin_call(tenant, "run-1", "c1") is False


async def test_calls_are_keyed_by_tenant_and_run(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    assert await store.begin_call(tenant, "run-1", "c1") is True
    assert await store.begin_call(tenant, "run-2", "c1") is True
    assert await store.begin_call(other_tenant, "run-1", "c1") is True
    assert await store.get_call(other_tenant, "run-9", "c1") is None


async def test_finishing_a_call_twice_is_a_conflict(store: StateStore, tenant: str) -> None:
    await store.begin_call(tenant, "run-1", "c1")
    await store.finish_call(tenant, "run-1", "c1", {"n": 1})
    with pytest.raises(ConflictError, match="c1"):
        await store.finish_call(tenant, "run-1", "c1", {"n": 2})
    done = await store.get_call(tenant, "run-1", "c1")
    assert done is not None and done.result == {"n": 1}


async def test_finishing_a_call_never_begun_is_not_found(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    await store.begin_call(tenant, "run-1", "c1")
    with pytest.raises(NotFoundError, match="'c1'"):
        await store.finish_call(other_tenant, "run-1", "c1", {})


async def test_concurrent_begin_call_has_exactly_one_winner(store: StateStore, tenant: str) -> None:
    results = await asyncio.gather(
        *(store.begin_call(tenant, "run-1", "c1") for _ in range(CONCURRENCY))
    )
    assert results.count(True) == 1


# -- sealed credentials ------------------------------------------------------------------------


async def test_credentials_are_put_replaced_listed_and_deleted_per_tenant(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    assert await store.get_credential(tenant, "mcp/a/tokens") is None
    await store.put_credential(tenant, "mcp/a/tokens", "sealed-1")
    await store.put_credential(tenant, "mcp/a/tokens", "sealed-2")
    await store.put_credential(tenant, "mcp/b/tokens", "sealed-3")
    await store.put_credential(tenant, "other", "sealed-4")
    assert await store.get_credential(tenant, "mcp/a/tokens") == "sealed-2"
    assert await store.list_credentials(tenant, "mcp/") == ["mcp/a/tokens", "mcp/b/tokens"]
    # Another tenant sees none of them, and cannot delete them.
    assert await store.get_credential(other_tenant, "mcp/a/tokens") is None
    assert await store.list_credentials(other_tenant) == []
    assert await store.delete_credential(other_tenant, "mcp/a/tokens") is False
    assert await store.delete_credential(tenant, "mcp/a/tokens") is True
    assert await store.delete_credential(tenant, "mcp/a/tokens") is False
    assert await store.list_credentials(tenant) == ["mcp/b/tokens", "other"]


# -- remote tasks ------------------------------------------------------------------------------


async def test_a_remote_binding_is_kept_first_writer_wins_and_per_tenant(
    store: StateStore, tenant: str, other_tenant: str
) -> None:
    from penguiflow_agents.store import RemoteBinding

    assert await store.get_remote(tenant, "trace-1", "research") is None
    first = RemoteBinding(
        tenant=tenant,
        trace_id="trace-1",
        key="research",
        agent_url="http://127.0.0.1:9/",
        task_id="task-1",
        context_id="ctx-1",
    )
    kept = await store.bind_remote(first)
    assert (kept.task_id, kept.context_id, kept.agent_url) == ("task-1", "ctx-1", first.agent_url)
    assert kept.created_at > 0
    # A second process that also started a task finds the first binding and reattaches to it.
    second = RemoteBinding(
        tenant=tenant, trace_id="trace-1", key="research", agent_url="x", task_id="task-2"
    )
    assert (await store.bind_remote(second)).task_id == "task-1"
    got = await store.get_remote(tenant, "trace-1", "research")
    assert got is not None and got.task_id == "task-1"
    assert await store.get_remote(tenant, "trace-1", "other-step") is None
    assert await store.get_remote(other_tenant, "trace-1", "research") is None


# -- cached tool listings ----------------------------------------------------------------------


async def test_a_listing_is_kept_replaced_and_read_back_with_its_time(store: StateStore) -> None:
    assert await store.get_listing("time") is None
    before = time.time()
    await store.put_listing("time", {"fingerprint": "f1", "tools": [{"name": "time.now"}]})
    await store.put_listing("time", {"fingerprint": "f2", "tools": []})
    await store.put_listing("files", {"fingerprint": "f3", "tools": []})
    found = await store.get_listing("time")
    assert found is not None
    listing, written_at = found
    assert listing == {"fingerprint": "f2", "tools": []}
    assert before - 1 <= written_at <= time.time() + 1
    with pytest.raises(UserError, match="listing of source 'x'"):
        await store.put_listing("x", {"bad": object()})


# -- lifecycle ---------------------------------------------------------------------------------


async def test_a_closed_store_refuses_work_and_closes_twice_quietly(
    store: StateStore, tenant: str
) -> None:
    await store.append_event(tenant, "r", "k", {})
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.get_run(tenant, "run-1")
    with pytest.raises(StoreError, match="closed"):
        await store.append_event(tenant, "r", "k", {})
