"""SSE under load, over a real socket: 200 stream clients while 500 runs execute (scripted
model); every client gets every event of its run exactly once and in order, including the 50
that drop their connection part-way and reconnect with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from penguiflow_agents.server import ServerSettings
from tests.server.conftest import Service, live_service

RUNS = 500
CLIENTS = 200
RECONNECTING = 50


async def _follow(
    service: Service, run_id: str, *, drop_after: int | None
) -> list[tuple[int, str]]:
    """Read the run's stream to its end; with ``drop_after``, hang up after that many events
    (each connection) and reconnect with Last-Event-ID."""
    got: list[tuple[int, str]] = []
    connections = 0
    while True:
        connections += 1
        assert connections < 50, "the stream never ended"
        headers = service.auth("alice")
        if got:
            headers["Last-Event-ID"] = str(got[-1][0])
        taken = 0
        ended = False
        async with service.client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as r:
            assert r.status_code == 200
            event_id, kind = None, ""
            async for line in r.aiter_lines():
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    json.loads(line[6:])
                    assert event_id is not None
                    got.append((event_id, kind))
                    taken += 1
                    if kind in ("run_finished", "paused"):
                        ended = True
                        break
                    if drop_after is not None and taken >= drop_after:
                        break
            else:
                ended = True  # the server ended the stream
        if ended:
            return got


# About 20 s of CPU; on a shared, loaded 2-core machine it has taken over 70 s.
@pytest.mark.timeout(300)
async def test_two_hundred_streams_during_five_hundred_runs_lose_and_repeat_nothing() -> None:
    settings = ServerSettings(requests_per_minute=None, max_concurrent_runs=None, poll_s=0.5)
    async with live_service(settings) as service:
        service.llm.delay_s = 0.02

        async def start(i: int) -> str:
            r = await service.post("/v1/runs", json={"query": f"slow add {i} {i}"})
            assert r.status_code == 202, r.text
            run_id: str = r.json()["run_id"]
            return run_id

        sem = asyncio.Semaphore(50)

        async def start_bounded(i: int) -> str:
            async with sem:
                return await start(i)

        first = await asyncio.gather(*(start_bounded(i) for i in range(CLIENTS)))
        rng = random.Random(9)
        followers = [
            asyncio.create_task(
                _follow(service, run_id, drop_after=rng.randint(1, 3) if i < RECONNECTING else None)
            )
            for i, run_id in enumerate(first)
        ]
        rest = await asyncio.gather(*(start_bounded(i) for i in range(CLIENTS, RUNS)))
        results = await asyncio.wait_for(asyncio.gather(*followers), timeout=100)
        for run_id, got in zip(first, results, strict=True):
            stored = await service.store.list_events("acme", run_id)
            assert got == [(e.seq, e.kind) for e in stored], run_id
            assert got[-1][1] == "run_finished"
        for run_id in rest:  # the other runs ran to the end too
            for _ in range(1200):  # at most a minute
                if (await service.store.get_run("acme", run_id)).status != "running":
                    break
                await asyncio.sleep(0.05)
            assert (await service.store.get_run("acme", run_id)).status == "completed"
