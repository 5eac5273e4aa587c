"""Runs on Temporal end to end: worker processes, the CLI, crashes, a server restart, replay.

Every test drives real processes against ``temporal server start-dev``; the
run's record, events and approvals are read back from the shared store.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import ApprovalError, NotFoundError
from penguiflow_agents.store import StateStore, open_store
from penguiflow_agents.store._base import ApprovalRecord
from penguiflow_agents.temporal import RunWorkflow, TemporalEngine, workflow_runner
from penguiflow_agents.testing.temporal_dev import TemporalDevServer
from penguiflow_agents.worker import wait_for_run
from tests.webhooks.receiver import running_receiver

from .conftest import RECORDED, WAIT_S, Lab

ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])
GLOBEX = Headers(tenant="globex", principal="mallory", roles=["admin"])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
        check=False,
    )


async def paused_run(lab: Lab, engine: TemporalEngine) -> tuple[str, str]:
    """Submit "parallel" as alice; returns (run id, approval id) once it waits for approval."""
    run_id = await engine.submit("parallel", headers=ALICE)
    store = await open_store(lab.store_url)
    try:
        result = await wait_for_run(store, "acme", run_id, timeout_s=WAIT_S)
    finally:
        await store.aclose()
    assert result.status == "paused", result.error
    (pending,) = result.pending_approvals
    return run_id, pending.id


async def approve_as_bob(
    engine: TemporalEngine, store: StateStore, approval_id: str
) -> ApprovalRecord:
    """bob (role admin) approves ``approval_id`` of tenant acme through the ``decide`` update."""
    return await engine.decide(
        store,
        tenant="acme",
        approval_id=approval_id,
        principal="bob",
        roles=["admin"],
        decision="approve",
    )


async def test_parallel_calls_an_approval_from_another_process_and_an_answer(lab: Lab) -> None:
    lab.worker()
    common = ["--engine", lab.url, "--store", lab.store_url, "--tenant", "acme"]
    submitted = await asyncio.to_thread(
        cli, "submit", "parallel", *common, "--principal", "alice", "--wait", "--json"
    )
    assert submitted.returncode == 3, submitted.stderr  # paused for the gated call
    doc = json.loads(submitted.stdout)
    run_id = doc["run_id"]
    (pending,) = doc["pending_approvals"]
    assert pending["tool"] == "ops.restart"
    assert sorted((s["tool"], s["outcome"]) for s in doc["steps"]) == [
        ("ops.status", "ok"),
        ("ops.status", "ok"),
    ]  # the two parallel calls ran while the gated one waited
    approved = await asyncio.to_thread(
        cli, "approvals", "approve", pending["id"], "--as", "bob", "--role", "admin", *common
    )
    assert approved.returncode == 0, approved.stderr
    engine = await TemporalEngine.connect(lab.url)
    result = await asyncio.wait_for(engine.result(run_id, headers=ALICE), WAIT_S)
    assert result.status == "completed", result.error
    assert result.answer is not None
    for said in ("db is up", "cache is up", "restarted web"):
        assert said in result.answer
    assert lab.lines("restarts") == ["web"]
    store = await open_store(lab.store_url)
    try:
        record = await store.get_run("acme", run_id)
        kinds = [e.kind for e in await store.list_events("acme", run_id)]
    finally:
        await store.aclose()
    assert record.status == "completed"
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert {"approval_requested", "paused", "approval_decided", "resumed"} <= set(kinds)
    # The planner's own events are in the log too (the SSE stream reads them).
    assert {"step_started", "llm_response", "tool_call_finished", "final_answer"} <= set(kinds)
    RECORDED.append((lab.server.address, run_id))


async def test_killed_workers_mid_model_turn_and_mid_call_the_run_completes_elsewhere(
    lab: Lab,
) -> None:
    first = lab.worker()
    engine = await TemporalEngine.connect(lab.url)
    run_id = await engine.submit("crash", headers=ALICE)
    await asyncio.to_thread(
        lab.wait_for, "the first model turn", lambda: lab.lines("model-attempts") == ["crash:1"]
    )
    lab.kill(first)  # SIGKILL during the model turn
    second = lab.worker()
    await asyncio.to_thread(lab.wait_for, "the deploy call", lambda: lab.lines("deploys") == ["v2"])
    lab.kill(second)  # SIGKILL during the non-idempotent call
    lab.worker()
    result = await asyncio.wait_for(engine.result(run_id, headers=ALICE), WAIT_S * 2)
    assert result.status == "completed", result.error
    assert lab.lines("deploys") == ["v2"]  # ran once, never again after its worker died
    attempts = lab.lines("model-attempts")
    assert attempts.count("crash:1") == 2  # the model turn was retried on another worker
    (step,) = result.steps
    assert step.tool == "ops.deploy" and step.outcome != "ok"
    assert "not run again" in str(step.result)
    RECORDED.append((lab.server.address, run_id))


async def test_a_paused_run_survives_a_server_restart_and_new_workers(tmp_path: Path) -> None:
    with TemporalDevServer(db_filename=tmp_path / "temporal.db") as server:
        lab = Lab(server=server, dir=tmp_path)
        try:
            old = lab.worker()
            engine = await TemporalEngine.connect(lab.url)
            run_id, approval_id = await paused_run(lab, engine)
            lab.kill(old)
            await asyncio.to_thread(server.restart)
            lab.worker()
            engine = await TemporalEngine.connect(lab.url)
            store = await open_store(lab.store_url)
            try:
                await approve_as_bob(engine, store, approval_id)
            finally:
                await store.aclose()
            result = await asyncio.wait_for(engine.result(run_id, headers=ALICE), WAIT_S)
            assert result.status == "completed", result.error
            assert lab.lines("restarts") == ["web"]
            await _replay(engine, [run_id])
        finally:
            lab.close()


@pytest.mark.parametrize("after", ["record", "event"])
async def test_a_worker_killed_between_a_write_and_its_history_loses_nothing(
    lab: Lab, after: str
) -> None:
    """The worker writes the run as paused (its record, or also its ``paused`` event), then dies
    before the workflow task that records those writes in the history completes: the next
    worker replays the run and meets its own earlier writes in the store (the run record a
    version ahead, the step's events already appended). The run goes on: nothing fails,
    nothing is written twice, and the gated call runs once after its approval."""
    first = lab.worker({"PF_TEST_HANG_AFTER_PAUSE": after})
    engine = await TemporalEngine.connect(lab.url)
    run_id = await engine.submit("parallel", headers=ALICE)
    await asyncio.to_thread(
        lab.wait_for, "the paused write", lambda: lab.lines("hung-after-pause") == [run_id]
    )
    store = await open_store(lab.store_url)
    try:
        paused = await store.get_run("acme", run_id)
        assert paused.status == "paused"
        events_before = [(e.kind, e.data) for e in await store.list_events("acme", run_id)]
        lab.kill(first)  # the write is in the store; its history is not
        lab.worker()
        (approval,) = await store.list_approvals("acme", run_id=run_id)
        await approve_as_bob(engine, store, approval.id)
        result = await asyncio.wait_for(engine.result(run_id, headers=ALICE), WAIT_S)
        assert result.status == "completed", result.error
        assert lab.lines("restarts") == ["web"]
        events = [(e.kind, e.data) for e in await store.list_events("acme", run_id)]
        assert events[: len(events_before)] == events_before
        kinds = [kind for kind, _ in events]
        assert kinds.count("paused") == 1 and kinds.count("approval_requested") == 1, kinds
        assert kinds.count("run_started") == 1 and kinds.count("run_finished") == 1, kinds
        assert len(await store.list_approvals("acme", run_id=run_id)) == 1
    finally:
        await store.aclose()
    await _replay(engine, [run_id])


@pytest.mark.parametrize("after", ["decision", "begin", "finish"])
async def test_a_worker_killed_around_a_decided_call_runs_it_once(lab: Lab, after: str) -> None:
    """The worker dies right after one of the writes a decision leads to, before the workflow
    task that would record it completes, and the next worker meets the write in the store:

    - ``decision``: the ``decide`` update's activity recorded the decision; the update is
      delivered again and finds it (the caller's decide succeeds, the run wakes);
    - ``begin``: the workflow opened the approved call's once-only gate; the call has not run
      anywhere, so it runs now (the tool_call activity's own gate still keeps it from ever
      running twice);
    - ``finish``: the workflow recorded the call's result; the same result is taken as
      written.

    Each time the call runs once, the run completes, and the decision is in the log once."""
    first = lab.worker({"PF_TEST_HANG_AFTER_PAUSE": after})
    engine = await TemporalEngine.connect(lab.url)
    run_id, approval_id = await paused_run(lab, engine)
    store = await open_store(lab.store_url)
    try:
        # The update answers when its workflow task completes: after the restart here.
        deciding = asyncio.create_task(approve_as_bob(engine, store, approval_id))
        await asyncio.to_thread(
            lab.wait_for, f"the {after} write", lambda: lab.lines("hung-after-pause") == [run_id]
        )
        lab.kill(first)  # the write is in the store; the task that made it is not recorded
        lab.worker()
        decided = await asyncio.wait_for(deciding, WAIT_S)
        assert decided.status == "approved" and decided.decision is not None
        result = await asyncio.wait_for(engine.result(run_id, headers=ALICE), WAIT_S)
        assert result.status == "completed", result.error
        assert lab.lines("restarts") == ["web"]  # ran, once
        (restart,) = [s for s in result.steps if s.tool == "ops.restart"]
        assert restart.outcome == "ok", restart.result
        kinds = [e.kind for e in await store.list_events("acme", run_id)]
        assert kinds.count("approval_decided") == 1, kinds
    finally:
        await store.aclose()


async def test_another_tenant_cannot_decide_or_cancel_a_run(lab: Lab) -> None:
    lab.worker()
    engine = await TemporalEngine.connect(lab.url)
    run_id, approval_id = await paused_run(lab, engine)
    store = await open_store(lab.store_url)
    try:
        with pytest.raises(NotFoundError) as foreign:
            await engine.decide(
                store,
                tenant="globex",
                approval_id=approval_id,
                principal="mallory",
                roles=["admin"],
                decision="approve",
            )
        assert str(foreign.value) == f"no approval with id {approval_id!r}"
        # The workflow's own validator refuses it too, in the same words.
        handle = engine.client.get_workflow_handle(run_id)
        with pytest.raises(NotFoundError) as validator:
            await engine._update(
                handle,
                "decide",
                {
                    "tenant": "globex",
                    "approval_id": approval_id,
                    "principal": "mallory",
                    "roles": ["admin"],
                    "decision": "approve",
                },
            )
        assert str(validator.value) == str(foreign.value)
        with pytest.raises(NotFoundError) as unknown:
            await engine.cancel("run_does_not_exist", headers=GLOBEX)
        with pytest.raises(NotFoundError) as cancel:
            await engine.cancel(run_id, headers=GLOBEX)
        assert str(cancel.value) == str(unknown.value).replace("run_does_not_exist", run_id)
        assert (await store.get_approval("acme", approval_id)).status == "pending"
        await engine.cancel(run_id, headers=ALICE)
        result = await asyncio.wait_for(engine.result(run_id, headers=ALICE), WAIT_S)
        assert result.status == "cancelled"
        assert (await store.get_run("acme", run_id)).status == "cancelled"
        with pytest.raises(ApprovalError):
            await approve_as_bob(engine, store, approval_id)
    finally:
        await store.aclose()
    assert lab.lines("restarts") == []
    RECORDED.append((lab.server.address, run_id))


async def test_webhooks_announce_the_request_and_the_decision_of_a_temporal_run(
    lab: Lab,
) -> None:
    """The rule's notify URL and the worker's own both get approval.requested and
    approval.decided, signed, delivered by the worker process; a receiver that fails
    once still gets each event once."""
    secret = "temporal-webhooks-" + "s" * 32
    with (
        running_receiver(secret, fail_first=1) as rule_rx,
        running_receiver(secret, fail_first=0) as worker_rx,
    ):
        lab.worker(
            env={
                "PENGUIFLOW_WEBHOOK_SECRET": secret,
                "PF_TEST_RULE_NOTIFY": rule_rx.url,
                "PF_TEST_NOTIFY": worker_rx.url,
            }
        )
        engine = await TemporalEngine.connect(lab.url)
        run_id, approval_id = await paused_run(lab, engine)
        requested, decided = f"{approval_id}.requested", f"{approval_id}.decided"
        for rx in (rule_rx, worker_rx):
            await asyncio.to_thread(
                rx.wait_for, lambda r: requested in r.processed, WAIT_S, "approval.requested"
            )
        (body,) = rule_rx.processed[requested]
        assert body["type"] == "approval.requested" and body["tenant"] == "acme"
        assert body["approval"]["id"] == approval_id
        assert body["approval"]["run_id"] == run_id
        assert body["approval"]["tool"] == "ops.restart"
        # The decision comes from another process (the CLI), through the workflow's update.
        common = ["--engine", lab.url, "--store", lab.store_url, "--tenant", "acme"]
        approved = await asyncio.to_thread(
            cli, "approvals", "approve", approval_id, "--as", "bob", "--role", "admin", *common
        )
        assert approved.returncode == 0, approved.stderr
        for rx in (rule_rx, worker_rx):
            await asyncio.to_thread(
                rx.wait_for, lambda r: decided in r.processed, WAIT_S, "approval.decided"
            )
        (body,) = worker_rx.processed[decided]
        assert body["type"] == "approval.decided"
        assert body["approval"]["status"] == "approved"
        assert body["approval"]["decision"]["decided_by"] == "bob"
        result = await asyncio.wait_for(engine.result(run_id, headers=ALICE), WAIT_S)
        assert result.status == "completed", result.error
        assert rule_rx.seen[requested] == 2 and rule_rx.seen[decided] == 2  # 503, then 200
        assert worker_rx.seen[requested] == 1 and worker_rx.seen[decided] == 1
        assert not rule_rx.bad_signatures and not worker_rx.bad_signatures
    store = await open_store(lab.store_url)
    try:
        entries = await store.list_outbox(tenant="acme")
    finally:
        await store.aclose()
    assert sorted((e.event_id, e.url, e.status) for e in entries) == sorted(
        (event, rx.url, "delivered")
        for event in (requested, decided)
        for rx in (rule_rx, worker_rx)
    )
    RECORDED.append((lab.server.address, run_id))


async def _replay(engine: TemporalEngine, run_ids: list[str]) -> None:
    from temporalio.worker import Replayer

    histories = [
        await engine.client.get_workflow_handle(run_id).fetch_history() for run_id in run_ids
    ]
    replayer = Replayer(workflows=[RunWorkflow], workflow_runner=workflow_runner())
    for history in histories:
        await replayer.replay_workflow(history)  # raises on any non-determinism


async def test_the_recorded_histories_replay_without_nondeterminism(
    temporal_server: TemporalDevServer,
) -> None:
    """Runs last: every history the tests above recorded replays through the same loop."""
    ids = [run_id for address, run_id in RECORDED if address == temporal_server.address]
    assert ids, "run the whole module: the replay needs the histories of the tests above"
    engine = await TemporalEngine.connect(temporal_server.url)
    await _replay(engine, ids)
