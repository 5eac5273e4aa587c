"""Jobs: validated at the boundary, identity and ids only (no secrets), and the submitter's wait."""

from __future__ import annotations

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.bus import MemoryBus
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.store import MemoryStore, RunRecord
from penguiflow_agents.worker import Job, new_run_id, submit_run, wait_for_run

ALICE = Headers(tenant="acme", principal="alice", roles=["viewer", "staff", "viewer"])


def test_a_run_job_carries_identity_question_and_a_fresh_run_id_only() -> None:
    job = Job.run("What time is it?", headers=ALICE, model="openai/gpt-4.1-mini")
    assert job.run_id.startswith("run_") and len(job.run_id) == 36
    assert job.to_dict() == {
        "kind": "run",
        "tenant": "acme",
        "principal": "alice",
        "roles": ["staff", "viewer"],
        "run_id": job.run_id,
        "query": "What time is it?",
        "model": "openai/gpt-4.1-mini",
        "session_id": None,
    }
    assert Job.from_dict(job.to_dict()) == job
    assert job.headers == Headers(tenant="acme", principal="alice", roles=["staff", "viewer"])


def test_a_resume_job_names_the_run_and_the_caller() -> None:
    job = Job.resume("run_abc", headers=ALICE)
    assert job.to_dict() == {
        "kind": "resume",
        "tenant": "acme",
        "principal": "alice",
        "roles": ["staff", "viewer"],
        "run_id": "run_abc",
    }


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"kind": "delete", "tenant": "acme", "run_id": "r"}, "'kind'"),
        ({"kind": "run", "run_id": "r", "query": "q"}, "'tenant'"),
        ({"kind": "run", "tenant": "", "run_id": "r", "query": "q"}, "'tenant'"),
        ({"kind": "run", "tenant": "acme", "run_id": "r", "query": "  "}, "non-empty 'query'"),
        ({"kind": "resume", "tenant": "acme"}, "'run_id'"),
        (
            {"kind": "run", "tenant": "acme", "run_id": "r", "query": "q", "roles": "admin"},
            "'roles'",
        ),
    ],
)
def test_a_malformed_job_is_refused_with_the_field_named(
    data: dict[str, object], words: str
) -> None:
    with pytest.raises(UserError, match=words):
        Job.from_dict(data)


def test_keys_a_newer_submitter_adds_are_ignored() -> None:
    job = Job.from_dict({"kind": "resume", "tenant": "acme", "run_id": "r", "priority": 5})
    assert job.run_id == "r" and "priority" not in job.to_dict()


def test_new_run_ids_are_unique() -> None:
    assert len({new_run_id() for _ in range(1000)}) == 1000


async def test_wait_for_run_times_out_saying_where_the_run_stands() -> None:
    store = MemoryStore()
    job = await submit_run(MemoryBus(), "q", headers=ALICE)
    with pytest.raises(TimeoutError, match="still queued"):
        await wait_for_run(store, "acme", job.run_id, timeout_s=0.1)
    await store.create_run(RunRecord(run_id=job.run_id, tenant="acme", principal="alice"))
    with pytest.raises(TimeoutError, match="still running"):
        await wait_for_run(store, "acme", job.run_id, timeout_s=0.1)
    with pytest.raises(UserError, match="timeout_s"):
        await wait_for_run(store, "acme", job.run_id, timeout_s=0)


async def test_wait_for_run_after_a_version_ignores_the_state_before_it() -> None:
    store = MemoryStore()
    record = await store.create_run(
        RunRecord(
            run_id="r1",
            tenant="acme",
            principal="alice",
            status="failed",
            state={"result": {"status": "failed", "run_id": "r1", "error": "old"}},
        )
    )
    assert (await wait_for_run(store, "acme", "r1", timeout_s=1)).error == "old"
    with pytest.raises(TimeoutError, match="still failed"):
        await wait_for_run(store, "acme", "r1", timeout_s=0.1, after_version=record.version)
