"""A worker's run survives its PostgreSQL connections being terminated (found by the chaos soak).

Real Redis and PostgreSQL. The backends under one of the run's writes are terminated
(``pg_terminate_backend``, selected by the store's ``application_name``) on every attempt
the store makes, so the write fails past the store's own retries with
``StoreUnavailableError``. The planner does not record the run as failed: it stops, the
worker hands the claim back and takes the run over from its last checkpoint, and the run
completes. The non-idempotent tool ran exactly once: when its result could not be recorded
the takeover finds the call begun and reports it ``unknown`` instead of running it again.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from penguiflow_agents.bus import RedisBus
from penguiflow_agents.exceptions import StoreUnavailableError
from penguiflow_agents.store import _postgres, open_store
from penguiflow_agents.worker import submit_run, wait_for_run

from .conftest import ALICE, WAIT_S, Lab, pg_url


@contextlib.asynccontextmanager
async def connections_die(
    admin: asyncpg.Connection, statement: str, *, times: int, skip: int = 0
) -> AsyncIterator[list[int]]:
    """Before each of ``times`` statements containing ``statement`` (after the first ``skip``
    of them), its backend is terminated: the statement meets a dead connection (and does not
    run)."""
    killed: list[int] = []
    seen = 0
    real_acquire = asyncpg.pool.Pool.acquire

    class Dies:
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            attr = getattr(self._conn, name)
            if name not in ("fetch", "fetchrow", "fetchval", "execute"):
                return attr

            async def call(query: str, *args: Any, **kwargs: Any) -> Any:
                nonlocal seen
                if statement in query:
                    seen += 1
                if statement in query and seen > skip and len(killed) < times:
                    pid = self._conn.get_server_pid()
                    killed.append(pid)
                    await admin.execute("SELECT pg_terminate_backend($1)", pid)
                return await attr(query, *args, **kwargs)

            return call

    @contextlib.asynccontextmanager
    async def acquire(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with real_acquire(self, *args, **kwargs) as conn:
            yield Dies(conn)

    asyncpg.pool.Pool.acquire = acquire  # type: ignore[method-assign,assignment]
    try:
        yield killed
    finally:
        asyncpg.pool.Pool.acquire = real_acquire  # type: ignore[method-assign]


@pytest.fixture
async def pg_lab(
    postgres_dsn: str, redis_url: str
) -> AsyncIterator[tuple[Lab, asyncpg.Connection]]:
    name = f"pf-outage-{uuid.uuid4().hex[:8]}"
    store = await open_store(f"{pg_url(postgres_dsn)}&application_name={name}")
    stream = f"pf-worker-test:{uuid.uuid4().hex[:12]}"
    bus = await RedisBus.open(redis_url, stream=stream, visibility_timeout_s=30.0)
    admin = await asyncpg.connect(postgres_dsn)
    yield Lab(store=store, bus=bus), admin
    await admin.close()
    await bus.aclose()
    await store.aclose()
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(stream, f"{stream}:dead")
    await client.aclose()


@pytest.mark.parametrize(
    ("skip", "unknown"),
    [
        (0, False),  # the checkpoint before the tool's step: the takeover runs the step
        (1, True),  # the checkpoint after it (the tool ran): the call is "unknown", not rerun
    ],
)
async def test_a_run_whose_store_connection_keeps_dying_is_taken_over_not_failed(
    pg_lab: tuple[Lab, asyncpg.Connection], skip: int, unknown: bool
) -> None:
    lab, admin = pg_lab
    worker = lab.worker(lab.planner(lease_s=60.0))  # far longer than the test: no lapse
    attempts = 1 + len(_postgres.RETRY_BACKOFF_S)
    async with (
        lab.running(worker),
        connections_die(admin, "UPDATE runs SET principal", times=attempts, skip=skip) as killed,
    ):
        job = await submit_run(lab.bus, "count for me", headers=ALICE)
        result = await wait_for_run(lab.store, "acme", job.run_id, timeout_s=WAIT_S)
        await lab.acked()  # long before the bus's 30 s visibility timeout: no redelivery
    assert len(killed) == attempts  # the write failed on every attempt of the store
    assert result.status == "completed", result.error
    assert lab.counts[job.run_id] == 1  # the non-idempotent tool ran once
    assert worker.stats["taken_over"] == 1 and worker.stats["failed"] == 0
    assert [(s.tool, s.outcome) for s in result.steps] == [
        ("count.bump", "unknown" if unknown else "ok")
    ]


async def test_in_process_the_same_outage_fails_the_run_with_its_reason(
    pg_lab: tuple[Lab, asyncpg.Connection],
) -> None:
    """No worker to take the run over: the run ends failed, saying why."""
    lab, admin = pg_lab
    planner = lab.planner(lease_s=60.0)
    attempts = 1 + len(_postgres.RETRY_BACKOFF_S)
    async with connections_die(admin, "UPDATE runs SET principal", times=attempts) as killed:
        with pytest.raises(StoreUnavailableError):
            await planner.run("count for me", headers=ALICE, run_id="r-inproc", claim=True)
    assert len(killed) == attempts
    run = await lab.store.get_run("acme", "r-inproc")
    assert run.status == "failed"
    assert "StoreUnavailableError" in str(run.state)
    assert lab.counts["r-inproc"] == 0
