"""Fixtures for the bus tests: each test gets its own bus of each implementation.

Redis buses live in database 15 (the ``redis_url`` fixture) under a stream
name unique to the test, deleted afterwards, so tests never see each other's
jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from penguiflow_agents.bus import MemoryBus, MessageBus, RedisBus

# Returns Any: the tests also use the inspection methods both buses have (backlog, dead_letters).
MakeBus = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[MakeBus]:
    """``await make_bus(**options)``: a bus of the implementation under test.

    Every Redis bus made in one test shares one stream and group (like
    processes sharing a queue); a MemoryBus is shared by returning the same
    instance for the same options.
    """
    made: list[MessageBus] = []
    if request.param == "memory":
        shared: dict[str, MemoryBus] = {}

        async def make_memory(**options: Any) -> MessageBus:
            key = repr(sorted(options.items()))
            if key not in shared:
                shared[key] = MemoryBus(**options)
                made.append(shared[key])
            return shared[key]

        yield make_memory
    else:
        url = request.getfixturevalue("redis_url")
        stream = f"pf-test:{uuid.uuid4().hex[:12]}"

        async def make_redis(**options: Any) -> MessageBus:
            bus = await RedisBus.open(url, stream=stream, group="workers", **options)
            made.append(bus)
            return bus

        yield make_redis
        client = aioredis.Redis.from_url(url)
        await client.delete(stream, f"{stream}:dead")
        await client.aclose()
    for bus in made:
        await bus.aclose()
