"""serve with a bus: runs are jobs for workers on a real Redis stream and PostgreSQL store; the
server still answers ?wait=true, streams events (read from the store), and resumes a decided run
by submitting a resume job."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from penguiflow_agents.bus import open_bus
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.server import ServerSettings, create_app
from penguiflow_agents.store import open_store
from penguiflow_agents.worker import Worker
from tests.server.conftest import (
    KEYS,
    POLICIES,
    QuestionLLM,
    key_ring,
    parse_sse,
    tool_registry,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@contextlib.asynccontextmanager
async def _deployment(postgres_dsn: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    schema = f"pf_svc_{uuid.uuid4().hex[:12]}"
    stream = f"pf-svc-test:{uuid.uuid4().hex[:12]}"
    store_url = f"{postgres_dsn}{'&' if '?' in postgres_dsn else '?'}schema={schema}"
    bus_url = f"{redis_url}{'&' if '?' in redis_url else '?'}stream={stream}"
    policies = PolicySet.from_documents(POLICIES)
    app = create_app(
        ServerSettings(store=store_url, bus=bus_url, poll_s=0.1),
        registry=tool_registry(),
        policies=policies,
        keys=key_ring(),
        llm=QuestionLLM(),
    )
    # The worker: its own store and bus connections, as another process would have.
    worker_store = await open_store(store_url)
    worker_bus = await open_bus(bus_url)
    planner = ReactPlanner(
        llm=QuestionLLM(),
        registry=tool_registry(),
        store=worker_store,
        policies=policies,
        record_events=True,
    )
    worker = Worker(
        worker_bus, lambda _model: contextlib.nullcontext(planner), worker_store, block_s=0.2
    )
    running = asyncio.create_task(worker.run())
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client
    finally:
        worker.stop()
        await asyncio.wait({running}, timeout=30)
        await worker_bus.aclose()
        await worker_store.aclose()
        conn = await asyncpg.connect(postgres_dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
        r = aioredis.Redis.from_url(redis_url)
        await r.delete(stream, f"{stream}:dead")
        await r.aclose()


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


async def test_runs_on_a_worker_are_awaited_streamed_decided_and_resumed(
    postgres_dsn: str, redis_url: str
) -> None:
    async with _deployment(postgres_dsn, redis_url) as client:
        r = await client.post(
            "/v1/runs?wait=true", json={"query": "add 2 3"}, headers=_auth("alice")
        )
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        assert doc["status"] == "completed" and doc["answer"] == "done: 5"

        # A stream opened while the worker executes: every event, from the store, in order.
        started = await client.post(
            "/v1/runs", json={"query": "slow add 1 1"}, headers=_auth("alice")
        )
        assert started.status_code == 202
        run_id = started.json()["run_id"]
        events = parse_sse(
            (await client.get(f"/v1/runs/{run_id}/events", headers=_auth("alice"))).text
        )
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events[0].kind == "run_started" and events[-1].kind == "run_finished"
        assert "tool_call_finished" in [e.kind for e in events]

        paused = await client.post(
            "/v1/runs?wait=true", json={"query": "write hi"}, headers=_auth("alice")
        )
        assert paused.json()["status"] == "paused"
        approval = paused.json()["pending_approvals"][0]["id"]
        decided = await client.post(
            f"/v1/approvals/{approval}/decision",
            json={"decision": "approve"},
            headers=_auth("boss"),
        )
        assert decided.status_code == 200
        last = parse_sse(
            (
                await client.get(
                    f"/v1/runs/{paused.json()['run_id']}/events",
                    headers={**_auth("alice"), "Last-Event-ID": "1"},
                )
            ).text
        )
        assert last[-1].kind == "paused"  # the first stream ends at the pause
        async with asyncio.timeout(60):
            while True:
                run = (
                    await client.get(f"/v1/runs/{paused.json()['run_id']}", headers=_auth("alice"))
                ).json()
                if run["status"] == "completed":
                    break
                await asyncio.sleep(0.1)
        assert run["answer"] == "done: wrote 2 characters to /shared/n.txt"
