"""Several OS processes sharing one SQLite file or one PostgreSQL schema.

Each race sends one command to N worker processes (tests/store/store_worker.py)
that have already opened the store and wait for it, so they act at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.store import ApprovalRecord, RunRecord, StateStore, open_store

WORKERS = 4  # racing processes per test (the CI machine has 2 cores)
WORKER_TIMEOUT_S = 30.0  # longest wait for one line from a worker (start-up included)
WORKER = str(Path(__file__).with_name("store_worker.py"))

# Racing workers are started once per store URL and reused by every test of this module
# (each test uses its own tenant); workers a test kills are its own.
_POOLS: dict[str, list[Worker]] = {}


class Worker:
    """One store_worker.py process: JSON commands in, JSON lines out."""

    def __init__(self, url: str, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, url, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw)
        self._lines.put(b"")

    async def line(self) -> Any:
        raw = await asyncio.to_thread(self._lines.get, True, WORKER_TIMEOUT_S)
        if not raw:
            assert self.proc.stderr is not None
            raise AssertionError(f"worker exited early: {self.proc.stderr.read().decode()[-2000:]}")
        return json.loads(raw)

    def send(self, action: str, tenant: str, ident: str, n: float = 1) -> None:
        assert self.proc.stdin is not None
        cmd = {"action": action, "tenant": tenant, "ident": ident, "n": n}
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(WORKER_TIMEOUT_S) == -signal.SIGKILL
        self.close_pipes()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # end of commands: the worker closes its store and exits
        assert self.proc.wait(WORKER_TIMEOUT_S) == 0
        self.close_pipes()

    def close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


async def start(url: str, name: str) -> Worker:
    worker = Worker(url, name)
    assert await worker.line() == "ready"
    return worker


@pytest.fixture(scope="module", autouse=True)
def _stop_pools() -> Iterator[None]:
    yield
    for workers in _POOLS.values():
        for w in workers:
            w.stop()
    _POOLS.clear()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('shared') / 'shared.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_store_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def parent(shared_url: str) -> AsyncIterator[StateStore]:
    store = await open_store(shared_url)
    yield store
    await store.aclose()


async def race(url: str, action: str, tenant: str, ident: str, n: int = 1) -> list[Any]:
    """Send one command to every racing worker at once; their results in worker order."""
    if url not in _POOLS:
        _POOLS[url] = list(await asyncio.gather(*(start(url, f"w{i}") for i in range(WORKERS))))
    workers = _POOLS[url]
    for w in workers:
        w.send(action, tenant, ident, n)
    return [await w.line() for w in workers]


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
    lease_s = 0.3
    await parent.create_run(
        RunRecord(run_id="run-1", tenant=tenant, principal="p", status="paused")
    )
    holder = await start(shared_url, "doomed")
    holder.send("hold", tenant, "run-1", lease_s)
    assert await holder.line() == {"claimed": True}
    holder.kill()
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
    churner = await start(shared_url, "doomed")
    churner.send("churn", tenant, "run-1")
    assert await churner.line() == {"started": True}
    churner.kill()
    seq = await parent.append_event(tenant, "run-1", "after", {})
    assert [e.seq for e in await parent.list_events(tenant, "run-1")] == list(range(1, seq + 1))
    assert seq >= 2


async def test_a_writer_killed_between_checkpoints_loses_no_acknowledged_one(
    shared_url: str, parent: StateStore, tenant: str
) -> None:
    """Acknowledged means committed: after a SIGKILL, every run is at least at the version its
    last acknowledged checkpoint gave it, with that version's state (a later checkpoint may
    have committed unacknowledged: never a half-written one)."""
    runs = 20
    writer = await start(shared_url, "doomed")
    writer.send("checkpoint", tenant, "run", runs)
    for _ in range(3):  # a few rounds acknowledged, then killed while writing the next
        acked = (await writer.line())["acked"]
    writer.proc.send_signal(signal.SIGKILL)
    assert writer.proc.wait(WORKER_TIMEOUT_S) == -signal.SIGKILL
    while raw := await asyncio.to_thread(writer._lines.get, True, WORKER_TIMEOUT_S):
        acked = json.loads(raw)["acked"]  # lines printed before the kill
    writer.close_pipes()
    assert len(acked) == runs
    for run_id, version in acked.items():
        stored = await parent.get_run(tenant, run_id)
        assert stored.version >= version
        assert stored.state == {"v": stored.version}


async def test_writers_contending_for_the_lock_killed_between_checkpoints_lose_no_acknowledged_one(
    shared_url: str, parent: StateStore, tenant: str
) -> None:
    """The same with two writers at once, and a third process appending to a run: they take
    the write lock from each other (SQLite: a group finding the file locked goes from the
    event loop's own connection to the store thread, which waits), then both are killed."""
    runs = 10
    churner = await start(shared_url, "churner")
    churner.send("churn", tenant, "run-c")
    assert await churner.line() == {"started": True}
    writers = [await start(shared_url, f"doomed{k}") for k in range(2)]
    for k, writer in enumerate(writers):
        writer.send("checkpoint", tenant, f"run{k}", runs)
    acked: list[dict[str, int]] = [{}, {}]
    for _ in range(3):
        for k, writer in enumerate(writers):
            acked[k] = (await writer.line())["acked"]
    for writer in (*writers, churner):
        writer.proc.send_signal(signal.SIGKILL)
    for k, writer in enumerate(writers):
        assert writer.proc.wait(WORKER_TIMEOUT_S) == -signal.SIGKILL
        while raw := await asyncio.to_thread(writer._lines.get, True, WORKER_TIMEOUT_S):
            acked[k] = json.loads(raw)["acked"]
        writer.close_pipes()
    assert churner.proc.wait(WORKER_TIMEOUT_S) == -signal.SIGKILL
    churner.close_pipes()
    for k in range(2):
        assert len(acked[k]) == runs
        for run_id, version in acked[k].items():
            stored = await parent.get_run(tenant, run_id)
            assert stored.version >= version
            assert stored.state == {"v": stored.version}
    seq = await parent.append_event(tenant, "run-c", "after", {})
    assert [e.seq for e in await parent.list_events(tenant, "run-c")] == list(range(1, seq + 1))
