"""POST /v1/runs/{id}/cancel reaches a run executing on a worker in another OS process.

serve --bus (the app, in this process) and a worker process (tests/worker/worker_proc.py) on
a real Redis stream and PostgreSQL store: the run hangs in its second model turn on the
worker; the cancel writes a request in the run's log, the worker cancels the run (its planner
records it as cancelled), acknowledges the job and keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from penguiflow_agents.bus import RedisBus
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.server import ServerSettings, create_app
from penguiflow_agents.store import open_store
from penguiflow_agents.worker import CANCEL_REQUESTED
from tests.server.conftest import KEYS, POLICIES, QuestionLLM, error_of, key_ring, tool_registry

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WORKER = Path(__file__).parents[1] / "worker" / "worker_proc.py"
# Longest one step may take (a process's imports included, on a busy 2-core machine).
WAIT_S = 60.0


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@contextlib.asynccontextmanager
async def _urls(postgres_dsn: str, redis_url: str) -> AsyncIterator[tuple[str, str]]:
    schema = f"pf_cancel_{uuid.uuid4().hex[:12]}"
    stream = f"pf-cancel-test:{uuid.uuid4().hex[:12]}"
    store_url = f"{postgres_dsn}{'&' if '?' in postgres_dsn else '?'}schema={schema}"
    bus_url = f"{redis_url}{'&' if '?' in redis_url else '?'}stream={stream}"
    try:
        yield store_url, bus_url
    finally:
        conn = await asyncpg.connect(postgres_dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
        r = aioredis.Redis.from_url(redis_url)
        await r.delete(stream, f"{stream}:dead")
        await r.aclose()


def _start_worker(bus_url: str, store_url: str, count: Path) -> subprocess.Popen[bytes]:
    """The worker process; its second model turn hangs (it writes COUNT.hanging first)."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), bus_url, store_url, str(count)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HANG_IN_SECOND_TURN": "1"},
    )


async def _until_exists(path: Path, proc: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not await asyncio.to_thread(path.exists):
            assert proc.poll() is None, "the worker process exited early"
            await asyncio.sleep(0.05)


async def test_a_cancel_through_the_api_stops_a_run_on_a_worker_process(
    postgres_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    async with _urls(postgres_dsn, redis_url) as (store_url, bus_url):
        store = await open_store(store_url)  # creates the schema before two processes race
        worker = _start_worker(bus_url, store_url, count)
        try:
            app = create_app(
                ServerSettings(store=store_url, bus=bus_url, poll_s=0.1),
                registry=tool_registry(),
                policies=PolicySet.from_documents(POLICIES),
                keys=key_ring(),
                llm=QuestionLLM(),
            )
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    started = await client.post(
                        "/v1/runs", json={"query": "bump and hang"}, headers=_auth("alice")
                    )
                    assert started.status_code == 202, started.text
                    run_id = started.json()["run_id"]
                    # The worker process ran the tool and hangs in the second model turn.
                    await _until_exists(Path(f"{count}.hanging"), worker)
                    doc = (await client.get(f"/v1/runs/{run_id}", headers=_auth("alice"))).json()
                    assert doc["status"] == "running"

                    # Another tenant's cancel is refused like an unknown id, and asks nothing.
                    foreign = await client.post(
                        f"/v1/runs/{run_id}/cancel", headers=_auth("globex")
                    )
                    unknown = await client.post(
                        "/v1/runs/run_unknown0000/cancel", headers=_auth("globex")
                    )
                    assert foreign.status_code == unknown.status_code == 404
                    assert error_of(foreign)["message"] == error_of(unknown)["message"].replace(
                        "run_unknown0000", run_id
                    )
                    kinds = [e.kind for e in await store.list_events("acme", run_id)]
                    assert CANCEL_REQUESTED not in kinds

                    cancelled = await client.post(
                        f"/v1/runs/{run_id}/cancel", headers=_auth("alice")
                    )
                    assert cancelled.status_code == 200, cancelled.text
                    assert cancelled.json()["status"] == "cancelled"
            record = await store.get_run("acme", run_id)
            assert record.status == "cancelled"
            events = await store.list_events("acme", run_id)
            requested = [e for e in events if e.kind == CANCEL_REQUESTED]
            assert [e.data for e in requested] == [{"by": "alice"}]
            assert events[-1].kind == "run_finished"
            assert events[-1].data["status"] == "cancelled"
            assert requested[0].seq < events[-1].seq
            assert count.read_text().splitlines() == [run_id]  # the tool ran once, not again
            # The worker process lives on, acknowledged the job, and stops cleanly.
            assert worker.poll() is None
            bus = await RedisBus.open(bus_url)
            try:
                async with asyncio.timeout(WAIT_S):
                    for _ in iter(int, 1):  # until the job is acknowledged (backlog 0)
                        if not await bus.backlog():
                            break
                        await asyncio.sleep(0.1)
            finally:
                await bus.aclose()
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait, WAIT_S) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(WAIT_S)
            await store.aclose()
