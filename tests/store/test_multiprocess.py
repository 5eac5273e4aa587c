"""Several OS processes sharing one SQLite file or one PostgreSQL schema.

Each race starts N worker processes (tests/store/store_worker.py), waits until
every one has opened the store, then releases them all at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.store import ApprovalRecord, RunRecord, StateStore, open_store

WORKERS = 4  # racing processes per test (the CI machine has 2 cores)
WORKER_TIMEOUT_S = 30.0  # longest wait for one line from a worker (start-up included)
WORKER = str(Path(__file__).with_name("store_worker.py"))


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("pg_store_url"))


@pytest.fixture
async def parent(shared_url: str) -> AsyncIterator[StateStore]:
    store = await open_store(shared_url)
    yield store
    await store.aclose()


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self) -> Any:
        assert self.proc.stdout is not None
        async with asyncio.timeout(WORKER_TIMEOUT_S):
            raw = await self.proc.stdout.readline()
        if not raw:
            assert self.proc.stderr is not None
            err = await self.proc.stderr.read()
            raise AssertionError(f"worker exited early: {err.decode()[-2000:]}")
        return json.loads(raw)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def finish(self) -> None:
        async with asyncio.timeout(WORKER_TIMEOUT_S):
            assert await self.proc.wait() == 0

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(WORKER_TIMEOUT_S):
            assert await self.proc.wait() == -signal.SIGKILL


async def start(url: str, action: str, tenant: str, ident: str, name: str, n: int = 1) -> Worker:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        WORKER,
        url,
        action,
        tenant,
        ident,
        name,
        str(n),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    worker = Worker(proc)
    assert await worker.line() == "ready"
    return worker


async def race(url: str, action: str, tenant: str, ident: str, n: int = 1) -> list[Any]:
    """Start WORKERS processes, release them together, return their results in order."""
    workers = await asyncio.gather(
        *(start(url, action, tenant, ident, f"w{i}", n) for i in range(WORKERS))
    )
    for w in workers:
        w.go()
    results = [await w.line() for w in workers]
    for w in workers:
        await w.finish()
    return results


async def test_processes_racing_claim_run_have_exactly_one_winner(
    shared_url: str, parent: StateStore, tenant: str
) -> None:
    await parent.create_run(
        RunRecord(run_id="run-1", tenant=tenant, principal="p", status="paused")
    )
    results = await race(shared_url, "claim", tenant, "run-1")
    assert [r["won"] for r in results].count(True) == 1
    run = await parent.get_run(tenant, "run-1")
    assert (run.status, run.version, run.claimed_by) == (
        "running",
        1,
        f"w{[r['won'] for r in results].index(True)}",
    )


async def test_processes_racing_decide_approval_have_exactly_one_winner(
    shared_url: str, parent: StateStore, tenant: str
) -> None:
    await parent.create_approval(
        ApprovalRecord(
            id="ap-1",
            tenant=tenant,
            run_id="run-1",
            call_id="c1",
            tool="files.write",
            arguments={},
            arguments_sha256="x",
            tool_hash="y",
            policy_version="v1",
            requested_by="alice",
            approvers=["role:admin"],
            rule={},
            expires_at=time.time() + 60,
        )
    )
    results = await race(shared_url, "decide", tenant, "ap-1")
    winner = [r["won"] for r in results].index(True)
    assert [r["won"] for r in results].count(True) == 1
    assert all(f"'w{winner}'" in r["error"] for r in results if not r["won"])
    decided = await parent.get_approval(tenant, "ap-1")
    assert decided.decision is not None and decided.decision.decided_by == f"w{winner}"


async def test_processes_racing_begin_call_have_exactly_one_winner(
    shared_url: str, parent: StateStore, tenant: str
) -> None:
    results = await race(shared_url, "begin", tenant, "call-1")
    assert [r["won"] for r in results].count(True) == 1


async def test_processes_appending_to_one_run_get_unique_gapless_seqs(
    shared_url: str, parent: StateStore, tenant: str
) -> None:
    per_worker = 25
    results = await race(shared_url, "append", tenant, "run-1", per_worker)
    seqs = [s for r in results for s in r["seqs"]]
    assert sorted(seqs) == list(range(1, WORKERS * per_worker + 1))
    assert all(r["seqs"] == sorted(r["seqs"]) for r in results)  # each writer's events in its order
    events = await parent.list_events(tenant, "run-1")
    assert [e.seq for e in events] == list(range(1, WORKERS * per_worker + 1))


async def test_a_sigkilled_claimer_leaves_a_run_reclaimable_after_its_lease(
    shared_url: str, parent: StateStore, tenant: str
) -> None:
    lease_s = 1
    await parent.create_run(
        RunRecord(run_id="run-1", tenant=tenant, principal="p", status="paused")
    )
    holder = await start(shared_url, "hold", tenant, "run-1", "doomed", lease_s)
    holder.go()
    assert await holder.line() == {"claimed": True}
    await holder.kill()
    left = await parent.get_run(tenant, "run-1")
    assert (left.status, left.claimed_by) == ("running", "doomed")
    assert left.claim_expires_at is not None
    # Waiting for the lease to run out is the point of the test.
    await asyncio.sleep(max(0.0, left.claim_expires_at - time.time()) + 0.05)
    taken = await parent.claim_run(
        tenant, "run-1", owner="rescuer", from_statuses=["paused"], lease_s=30
    )
    assert taken is not None
    assert (taken.claimed_by, taken.version) == ("rescuer", left.version + 1)


async def test_a_writer_killed_mid_stream_leaves_the_log_gapless_and_usable(
    shared_url: str, parent: StateStore, tenant: str
) -> None:
    churner = await start(shared_url, "churn", tenant, "run-1", "doomed")
    churner.go()
    assert await churner.line() == {"started": True}
    await churner.kill()
    seq = await parent.append_event(tenant, "run-1", "after", {})
    assert [e.seq for e in await parent.list_events(tenant, "run-1")] == list(range(1, seq + 1))
    assert seq >= 2
