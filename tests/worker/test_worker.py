"""Worker: jobs run once, duplicates and redeliveries are idempotent, shutdown drains or hands back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.bus import MemoryBus
from penguiflow_agents.exceptions import ConflictError, StoreError, UserError
from penguiflow_agents.llm import LLMRequest, LLMResponse
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.store import MemoryStore, RunRecord
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.worker import Job, Worker, submit, submit_resume, submit_run, wait_for_run

from .conftest import ADMIN, ALICE, WAIT_S, Lab, tenant_headers


async def test_a_run_job_runs_once_and_is_acked(lab: Lab) -> None:
    worker = lab.worker()
    async with lab.running(worker):
        job = await submit_run(lab.bus, "count for me", headers=ALICE)
        result = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
        await lab.acked()
    assert result.status == "completed" and result.answer == f"done {job.run_id}"
    assert lab.counts[job.run_id] == 1
    assert worker.stats["completed"] == 1
    record = await lab.store.get_run("acme", job.run_id)
    assert (record.principal, record.roles, record.claimed_by) == ("alice", ["staff"], None)


async def test_a_duplicate_job_of_a_finished_run_is_acked_without_running_again(lab: Lab) -> None:
    worker = lab.worker()
    async with lab.running(worker):
        job = await submit_run(lab.bus, "count for me", headers=ALICE)
        await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
        await submit(lab.bus, job)  # the same job again (a retrying submitter)
        await lab.until(lambda: worker.stats["skipped"] == 1, "the duplicate to be skipped")
        await lab.acked()
    assert lab.counts[job.run_id] == 1
    assert worker.stats["completed"] == 1


async def test_a_paused_run_is_acked_and_a_resume_job_finishes_it(lab: Lab) -> None:
    worker = lab.worker(lab.planner(policies=True, tool_name="count.gated"))
    async with lab.running(worker):
        job = await submit_run(lab.bus, "needs approval", headers=ALICE)
        paused = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
        assert paused.status == "paused" and lab.counts[job.run_id] == 0
        [pending] = paused.pending_approvals
        await ApprovalService(lab.store, lab.policies).decide(
            tenant="acme",
            approval_id=pending.id,
            principal=ADMIN.principal,
            roles=ADMIN.roles,
            decision="approve",
        )
        version = (await lab.store.get_run("acme", job.run_id)).version
        await submit_resume(lab.bus, job.run_id, headers=ADMIN)
        done = await wait_for_run(
            lab.store, "acme", job.run_id, timeout_s=WAIT_S, after_version=version
        )
    assert done.status == "completed"
    assert lab.counts[job.run_id] == 1
    assert worker.stats["paused"] == 1 and worker.stats["completed"] == 1


class _FasterThanThePause(MemoryStore):
    """An approver faster than the pause (found by the chaos soak): each request is approved,
    and its run's resume job published, as soon as the request exists; the run's paused state
    is written only once that resume job was handled, which found the run still running."""

    def __init__(self, bus: MemoryBus, lab: Lab) -> None:
        super().__init__()
        self.bus, self.lab = bus, lab

    async def create_approval(self, approval: Any, **options: Any) -> Any:
        created = await super().create_approval(approval, **options)
        await ApprovalService(self, self.lab.policies).decide(
            tenant=created.tenant,
            approval_id=created.id,
            principal=ADMIN.principal,
            roles=ADMIN.roles,
            decision="approve",
        )
        await submit_resume(self.bus, created.run_id, headers=ADMIN)
        return created

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        if run.status == "paused":  # the run's own job is the one left in flight
            await self.lab.until(
                lambda: _backlog_at_most(self.bus, 1),
                "the early resume job to be handled",
            )
        return await super().update_run(run, expected_version=expected_version)


async def _backlog_at_most(bus: MemoryBus, n: int) -> bool:
    return bool(await bus.backlog() <= n)


async def test_an_approval_decided_before_its_run_paused_is_not_lost(lab: Lab) -> None:
    store = _FasterThanThePause(lab.bus, lab)
    lab.store = store
    worker = lab.worker(lab.planner(policies=True, tool_name="count.gated"))
    async with lab.running(worker):
        job = await submit_run(lab.bus, "needs approval", headers=ALICE)
        await lab.until(lambda: worker.stats["skipped"] == 1, "the early resume to be skipped")
        await lab.acked()
        record = await store.get_run("acme", job.run_id)
    # The worker that paused the run saw the decision and went on: the call ran once.
    assert record.status == "completed", record.state
    assert lab.counts[job.run_id] == 1
    assert worker.stats["completed"] == 1 and worker.stats["skipped"] == 1


class _FrozenBeforeThePause(MemoryStore):
    """Each request is approved as soon as it exists, and the first run to pause freezes just
    before its paused state is written (its worker went silent, or died): the run is taken
    over from the checkpoint before its gated call, whose approval is already decided."""

    def __init__(self, lab: Lab) -> None:
        super().__init__()
        self.lab = lab
        self.frozen = asyncio.Event()

    async def create_approval(self, approval: Any, **options: Any) -> Any:
        created = await super().create_approval(approval, **options)
        await ApprovalService(self, self.lab.policies).decide(
            tenant=created.tenant,
            approval_id=created.id,
            principal=ADMIN.principal,
            roles=ADMIN.roles,
            decision="approve",
        )
        return created

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        if run.status == "paused" and not self.frozen.is_set():
            self.frozen.set()
            await asyncio.Event().wait()  # never written: cancelled at the end of the test
        return await super().update_run(run, expected_version=expected_version)


async def test_a_takeover_that_finds_its_approval_decided_runs_the_call_once(lab: Lab) -> None:
    store = _FrozenBeforeThePause(lab)
    lab.store = store
    frozen = lab.planner(policies=True, tool_name="count.gated", lease_s=1.0)
    run_id = "run_" + "f" * 32
    holder = asyncio.create_task(frozen.run("q", headers=ALICE, run_id=run_id, claim=True))
    try:
        await asyncio.wait_for(store.frozen.wait(), WAIT_S)
        await submit(lab.bus, Job.run("q", headers=ALICE, run_id=run_id))
        [_lost] = await lab.bus.consume("silent-worker", block_s=1.0)  # never acked or renewed
        worker = lab.worker(lab.planner(policies=True, tool_name="count.gated"))
        async with lab.running(worker):
            await lab.acked()
            record = await store.get_run("acme", run_id)
    finally:
        holder.cancel()
        with contextlib.suppress(BaseException):
            await holder
    assert record.status == "completed", record.state
    assert lab.counts[run_id] == 1
    kinds = [e.kind for e in await store.list_events("acme", run_id)]
    assert "step_recovered" in kinds and kinds.count("run_finished") == 1


class _ReadFailsOnce(MemoryStore):
    """A worker's next read of a run fails once when armed (its connection was terminated)."""

    armed = False

    async def get_run(self, tenant: str, run_id: str) -> RunRecord:
        task = asyncio.current_task()
        if self.armed and task is not None and task.get_name().startswith("job-"):
            self.armed = False
            raise StoreError("the connection to the store was terminated")
        return await super().get_run(tenant, run_id)


async def test_a_resume_job_that_meets_a_store_error_is_not_acked_until_it_resumed(
    lab: Lab,
) -> None:
    """Found by the chaos soak: the job was acknowledged because the run was (still) paused,
    and the decided run stayed paused for good."""
    store = _ReadFailsOnce()
    lab.store = store
    worker = lab.worker(lab.planner(policies=True, tool_name="count.gated"))
    async with lab.running(worker):
        job = await submit_run(lab.bus, "needs approval", headers=ALICE)
        paused = await wait_for_run(store, "acme", job.run_id, timeout_s=WAIT_S)
        [pending] = paused.pending_approvals
        await ApprovalService(store, lab.policies).decide(
            tenant="acme",
            approval_id=pending.id,
            principal=ADMIN.principal,
            roles=ADMIN.roles,
            decision="approve",
        )
        version = (await store.get_run("acme", job.run_id)).version
        store.armed = True
        await submit_resume(lab.bus, job.run_id, headers=ADMIN)
        done = await wait_for_run(
            store, "acme", job.run_id, timeout_s=WAIT_S, after_version=version
        )
        await lab.acked()
    assert not store.armed  # the failure happened
    assert done.status == "completed"
    assert lab.counts[job.run_id] == 1


async def test_a_worker_runs_at_most_concurrency_jobs_at_once(lab: Lab) -> None:
    lab.gate = asyncio.Event()
    worker = lab.worker(concurrency=2)
    async with lab.running(worker):
        jobs = [await submit_run(lab.bus, f"q{i}", headers=ALICE) for i in range(5)]
        await lab.until(lambda: lab.active == 2, "two jobs in their tool")
        await asyncio.sleep(0.3)  # a margin in which a third job would have started
        assert lab.active == 2 and worker.in_flight == 2
        lab.gate.set()
        for job in jobs:
            result = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
            assert result.status == "completed"
    assert lab.max_active == 2
    assert all(lab.counts[job.run_id] == 1 for job in jobs)


async def test_two_workers_sharing_a_stream_run_each_job_exactly_once(shared_lab: Lab) -> None:
    lab = shared_lab
    first, second = lab.worker(concurrency=3), lab.worker(concurrency=3)
    async with lab.running(first, second):
        jobs = [await submit_run(lab.bus, f"q{i}", headers=ALICE) for i in range(12)]
        results = [
            await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S) for job in jobs
        ]
        await lab.acked()
    assert {r.status for r in results} == {"completed"}
    assert {job.run_id: lab.counts[job.run_id] for job in jobs} == {job.run_id: 1 for job in jobs}
    assert first.stats["completed"] + second.stats["completed"] == 12
    assert first.stats["skipped"] + second.stats["skipped"] == 0


@contextlib.asynccontextmanager
async def stalled_run(
    lab: Lab, *, lease_s: float
) -> AsyncIterator[tuple[str, asyncio.Task[object]]]:
    """A run started with a claim by a planner that then stalls in its second model turn
    (a worker that hangs, or died on another host: its claim stays until the lease runs out)."""
    headers = ALICE
    job = Job.run("stall", headers=headers)
    stalled = lab.planner(hang=True, lease_s=lease_s)
    task: asyncio.Task[object] = asyncio.create_task(
        stalled.run("stall", headers=headers, run_id=job.run_id, claim=True)
    )
    await lab.until(lab.hanging.is_set, "the stalled planner to hang")
    try:
        yield job.run_id, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConflictError):
            await task  # a planner that lost its run raises ConflictError rather than write


async def test_a_first_delivery_of_a_run_held_by_a_live_claim_is_acked_without_running(
    lab: Lab,
) -> None:
    """A duplicate job: the holder of the claim finishes the run, this worker does nothing."""
    async with stalled_run(lab, lease_s=600.0) as (run_id, _task):
        worker = lab.worker()
        async with lab.running(worker):
            await submit(lab.bus, Job.run("stall", headers=ALICE, run_id=run_id))
            await lab.until(lambda: worker.stats["skipped"] == 1, "the job to be skipped")
            await lab.acked()
            record = await lab.store.get_run("acme", run_id)
            assert record.status == "running" and record.claimed_by is not None
            assert lab.counts[run_id] == 1


@contextlib.contextmanager
def frozen_run(lab: Lab, *, lease_s: float) -> Iterator[str]:
    """A run whose holder froze mid-run: started with a claim in another thread's event loop,
    which then blocks in its second model turn (a dead or wedged worker on another host: it
    neither writes nor renews its lease, and its pid is alive)."""
    job = Job.run("freeze", headers=ALICE)
    frozen, thaw = threading.Event(), threading.Event()

    def freeze(_request: LLMRequest) -> LLMResponse:
        frozen.set()
        thaw.wait(WAIT_S * 3)  # blocks the whole loop of that thread
        return LLMResponse(content="too late")

    holder = ReactPlanner(
        llm=ScriptedLLM([lab.call_tool_turn(), freeze]),
        registry=lab.registry(),
        store=lab.store,
        claim_lease_s=lease_s,
    )
    outcome: list[BaseException | object] = []

    def drive() -> None:
        try:
            outcome.append(
                asyncio.run(holder.run("freeze", headers=ALICE, run_id=job.run_id, claim=True))
            )
        except BaseException as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        assert frozen.wait(WAIT_S), "the holder never reached its second turn"
        yield job.run_id
    finally:
        thaw.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    # Thawed, the old holder finds the run taken over: it raises instead of writing.
    assert outcome and isinstance(outcome[0], ConflictError), outcome


async def test_a_redelivered_job_of_a_frozen_holders_run_takes_it_over_when_the_lease_lapses(
    lab: Lab,
) -> None:
    """Its worker went silent while its claim still held: the run is neither lost nor run twice."""
    with frozen_run(lab, lease_s=1.0) as run_id:
        await submit(lab.bus, Job.run("freeze", headers=ALICE, run_id=run_id))
        [lost] = await lab.bus.consume("silent-worker", block_s=1.0)  # never acked or renewed
        assert lost.attempt == 1
        worker = lab.worker()
        async with lab.running(worker):
            result = await wait_for_run(lab.store, "acme", run_id, timeout_s=WAIT_S)
            await lab.acked()
        assert result.status == "completed" and result.answer == f"done {run_id}"
        assert lab.counts[run_id] == 1  # resumed from the checkpoint after the tool call
        assert worker.stats["taken_over"] == 1
    record = await lab.store.get_run("acme", run_id)
    assert record.status == "completed" and record.state["result"]["answer"] == f"done {run_id}"
    kinds = [e.kind for e in await lab.store.list_events("acme", run_id)]
    assert kinds.count("run_finished") == 1


async def test_a_redelivered_job_whose_holder_finishes_the_run_is_acked_without_running(
    lab: Lab,
) -> None:
    """While a redelivered job watches, the live holder ends the run: nothing runs twice."""
    async with stalled_run(lab, lease_s=600.0) as (run_id, task):
        await submit(lab.bus, Job.run("stall", headers=ALICE, run_id=run_id))
        await lab.bus.consume("silent-worker", block_s=1.0)
        worker = lab.worker()
        async with lab.running(worker):
            await asyncio.sleep(0.5)  # the job comes back after the 0.3 s visibility timeout
            lab.hang.set()  # the holder answers
            result = await wait_for_run(lab.store, "acme", run_id, timeout_s=WAIT_S)
            await lab.until(lambda: worker.stats["skipped"] == 1, "the job to be skipped")
            await lab.acked()
        assert result.status == "completed" and await task == result
        assert lab.counts[run_id] == 1 and worker.stats["taken_over"] == 0


async def test_stopping_lets_a_running_job_finish_within_the_drain_timeout(lab: Lab) -> None:
    lab.gate = asyncio.Event()
    worker = lab.worker(drain_timeout_s=WAIT_S)
    task = asyncio.create_task(worker.run())
    job = await submit_run(lab.bus, "slow", headers=ALICE)
    await lab.until(lambda: lab.active == 1, "the job to be in its tool")
    worker.stop()
    await asyncio.sleep(0.1)  # the worker is draining, not yet done
    assert not task.done()
    lab.gate.set()
    await asyncio.wait_for(task, WAIT_S)
    result = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=1.0)
    assert result.status == "completed"
    assert await lab.bus.backlog() == 0
    assert worker.stats["released"] == 0


async def test_stopping_past_the_drain_timeout_hands_the_run_back_for_another_worker(
    lab: Lab,
) -> None:
    """The run is not cancelled: another worker continues it from its last step at once."""
    stopping = lab.worker(lab.planner(hang=True), drain_timeout_s=0.1)
    task = asyncio.create_task(stopping.run())
    job = await submit_run(lab.bus, "long", headers=ALICE)
    await lab.until(lab.hanging.is_set, "the run to hang in its second turn")
    stopping.stop()
    await asyncio.wait_for(task, WAIT_S)
    assert stopping.stats["released"] == 1
    record = await lab.store.get_run("acme", job.run_id)
    assert record.status == "running"  # not "cancelled": handed back
    assert await lab.bus.backlog() == 1
    successor = lab.worker()
    async with lab.running(successor):
        result = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
    assert result.status == "completed"
    assert lab.counts[job.run_id] == 1
    assert successor.stats["taken_over"] == 1
    kinds = [e.kind for e in await lab.store.list_events("acme", job.run_id)]
    assert kinds.count("run_finished") == 1


async def test_an_invalid_job_is_acked_and_counted(lab: Lab) -> None:
    worker = lab.worker()
    async with lab.running(worker):
        await lab.bus.publish({"kind": "explode", "tenant": "acme", "run_id": "r1"})
        await lab.until(lambda: worker.stats["invalid"] == 1, "the job to be refused")
        await lab.acked()


async def test_a_model_the_factory_cannot_open_fails_the_run_with_the_reason(lab: Lab) -> None:
    @contextlib.asynccontextmanager
    async def factory(model: str | None) -> AsyncIterator[ReactPlanner]:
        raise UserError(f"unknown model {model!r}")
        yield lab.planner()  # pragma: no cover

    worker = Worker(lab.bus, factory, lab.store, block_s=0.05)
    async with lab.running(worker):
        job = await submit_run(lab.bus, "hi", headers=ALICE, model="nope/none")
        result = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
    assert result.status == "failed"
    assert result.error is not None and "unknown model 'nope/none'" in result.error


async def test_a_worker_refuses_planners_on_another_store(lab: Lab) -> None:
    elsewhere = ReactPlanner(llm=lab.llm(), registry=lab.registry(), store=MemoryStore())
    worker = Worker(lab.bus, lambda _m: contextlib.nullcontext(elsewhere), lab.store, block_s=0.05)
    async with lab.running(worker):
        job = await submit_run(lab.bus, "hi", headers=tenant_headers("acme"))
        result = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
    assert result.status == "failed" and "worker's own store" in (result.error or "")


def test_bad_worker_settings_are_refused(lab: Lab) -> None:
    with pytest.raises(UserError, match="concurrency"):
        lab.worker(concurrency=0)
    with pytest.raises(UserError, match="drain_timeout_s"):
        lab.worker(drain_timeout_s=-1)


class FlakyStore(MemoryStore):
    """A MemoryStore whose next ``fail_writes`` run writes fail like a store that went away."""

    fail_writes = 0

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise StoreError("the store is unreachable (test)")
        return await super().update_run(run, expected_version=expected_version)


async def test_a_run_whose_planner_died_of_a_store_error_is_handed_back_and_finished() -> None:
    """The run is not left held by a planner that is gone: the job's redelivery finishes it."""
    store = FlakyStore()
    lab = Lab(store=store, bus=MemoryBus(visibility_timeout_s=0.3))
    store.fail_writes = 2  # its first checkpoint fails, and so does recording the failure
    worker = lab.worker(lab.planner(lease_s=60.0))
    async with lab.running(worker):
        job = await submit_run(lab.bus, "flaky", headers=ALICE)
        result = await wait_for_run(store, "acme", job.run_id, timeout_s=WAIT_S)
        await lab.acked()
    assert result.status == "completed" and lab.counts[job.run_id] == 1
    assert worker.stats["taken_over"] == 1  # by its own redelivery, long before the 60 s lease
