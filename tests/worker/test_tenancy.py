"""A job acts as its own tenant: it can neither see nor touch another tenant's runs."""

from __future__ import annotations

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import NotFoundError
from penguiflow_agents.worker import Job, submit, submit_resume, submit_run, wait_for_run

from .conftest import WAIT_S, Lab

ACME = Headers(tenant="acme", principal="alice", roles=["staff"])
GLOBEX = Headers(tenant="globex", principal="mallory", roles=["admin"])


async def test_a_resume_job_of_another_tenant_leaves_the_run_untouched(lab: Lab) -> None:
    worker = lab.worker(lab.planner(policies=True, tool_name="count.gated"))
    async with lab.running(worker):
        job = await submit_run(lab.bus, "gated", headers=ACME)
        paused = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
        [pending] = paused.pending_approvals
        await ApprovalService(lab.store, lab.policies).decide(
            tenant="acme",
            approval_id=pending.id,
            principal="root",
            roles=["admin"],
            decision="approve",
        )
        before = await lab.store.get_run("acme", job.run_id)
        events_before = await lab.store.list_events("acme", job.run_id)
        await submit_resume(lab.bus, job.run_id, headers=GLOBEX)  # the id leaked to globex
        await lab.until(lambda: worker.stats["skipped"] == 1, "the foreign job to be dropped")
        await lab.acked()
        after = await lab.store.get_run("acme", job.run_id)
        assert (after.status, after.version) == ("paused", before.version)
        assert await lab.store.list_events("acme", job.run_id) == events_before
        assert lab.counts[job.run_id] == 0  # the approved call did not run for globex
        with pytest.raises(NotFoundError):
            await lab.store.get_run("globex", job.run_id)


async def test_a_run_job_reusing_another_tenants_run_id_gets_a_run_of_its_own(lab: Lab) -> None:
    worker = lab.worker()
    async with lab.running(worker):
        mine = await submit_run(lab.bus, "acme's question", headers=ACME)
        first = await wait_for_run(lab.store, "acme", mine.run_id, timeout_s=WAIT_S)
        events_before = await lab.store.list_events("acme", mine.run_id)
        await submit(lab.bus, Job.run("globex's question", headers=GLOBEX, run_id=mine.run_id))
        theirs = await wait_for_run(lab.store, "globex", mine.run_id, timeout_s=WAIT_S)
    assert theirs.status == "completed"
    acme_run = await lab.store.get_run("acme", mine.run_id)
    globex_run = await lab.store.get_run("globex", mine.run_id)
    assert (acme_run.query, acme_run.principal) == ("acme's question", "alice")
    assert (globex_run.query, globex_run.principal) == ("globex's question", "mallory")
    assert (await lab.store.get_run("acme", mine.run_id)).state["result"]["answer"] == first.answer
    assert await lab.store.list_events("acme", mine.run_id) == events_before


async def test_waiting_on_another_tenants_run_sees_nothing(lab: Lab) -> None:
    worker = lab.worker()
    async with lab.running(worker):
        job = await submit_run(lab.bus, "acme only", headers=ACME)
        await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
    with pytest.raises(TimeoutError, match="still queued"):
        await wait_for_run(lab.store, "globex", job.run_id, timeout_s=0.2)
