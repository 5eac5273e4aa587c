"""What only RedisBus does: the stream as the backlog, URLs, group recovery, errors, cleanup."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from penguiflow_agents.bus import MemoryBus, RedisBus, open_bus
from penguiflow_agents.exceptions import BusError, UserError


@pytest.fixture
async def stream(redis_url: str) -> AsyncIterator[str]:
    """A stream name of this test only, deleted afterwards."""
    name = f"pf-test:{uuid.uuid4().hex[:12]}"
    yield name
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(name, f"{name}:dead")
    await client.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_the_stream_holds_exactly_the_jobs_not_yet_done_and_stays_bounded(
    redis_url: str, stream: str, raw: aioredis.Redis
) -> None:
    bus = await RedisBus.open(redis_url, stream=stream, max_backlog=5)
    try:
        for i in range(5):
            await bus.publish({"i": i})
        with pytest.raises(BusError):
            await bus.publish({"i": 5})
        assert await raw.xlen(stream) == 5
        for delivery in await bus.consume("c1", max_jobs=5, block_s=0.5):
            await bus.ack(delivery)
        assert await raw.xlen(stream) == 0  # acknowledged jobs are deleted, not just acked
        for i in range(5):
            await bus.publish({"i": i})
        assert await raw.xlen(stream) == 5
    finally:
        await bus.aclose()


async def test_stream_and_group_can_come_from_the_url(
    redis_url: str, stream: str, raw: aioredis.Redis
) -> None:
    bus = await open_bus(f"{redis_url}?stream={stream}&group=pool-a")
    try:
        assert isinstance(bus, RedisBus)
        assert (bus.stream, bus.group) == (stream, "pool-a")
        await bus.publish({"x": 1})
        [group] = await raw.xinfo_groups(stream)
        assert group["name"] == "pool-a"
    finally:
        await bus.aclose()


async def test_jobs_published_before_the_group_exists_are_not_missed(
    redis_url: str, stream: str, raw: aioredis.Redis
) -> None:
    """Someone deleted the stream (and its group); the next jobs still reach the workers."""
    submitter = await RedisBus.open(redis_url, stream=stream)
    worker = await RedisBus.open(redis_url, stream=stream)
    try:
        await raw.delete(stream)
        await submitter.publish({"after": "delete"})  # recreates the stream, not the group
        [got] = await worker.consume("c1", block_s=0.5)
        assert got.job == {"after": "delete"}
    finally:
        await submitter.aclose()
        await worker.aclose()


async def test_closing_forgets_consumers_that_hold_nothing_and_keeps_the_others(
    redis_url: str, stream: str, raw: aioredis.Redis
) -> None:
    bus = await RedisBus.open(redis_url, stream=stream)
    await bus.publish({"x": 1})
    await bus.consume("holder", block_s=0.5)
    await bus.consume("idle", block_s=0)
    await bus.aclose()
    consumers = {c["name"] for c in await raw.xinfo_consumers(stream, "penguiflow-workers")}
    assert consumers == {"holder"}  # its job stays claimable by others


async def test_an_unreachable_redis_is_a_bus_error_without_the_password(stream: str) -> None:
    with pytest.raises(BusError) as caught:
        await RedisBus.open("redis://:s3cret-pw@127.0.0.1:1/0", stream=stream)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value) and "Redis is running" in str(caught.value)


async def test_open_bus_picks_the_implementation_from_the_url(redis_url: str, stream: str) -> None:
    memory = await open_bus("memory://", max_backlog=7)
    assert isinstance(memory, MemoryBus) and memory.max_backlog == 7
    redis_bus = await open_bus(redis_url, stream=stream, visibility_timeout_s=2.5)
    try:
        assert isinstance(redis_bus, RedisBus) and redis_bus.visibility_timeout_s == 2.5
    finally:
        await redis_bus.aclose()
    with pytest.raises(UserError, match="unknown scheme 'amqp'"):
        await open_bus("amqp://guest:pw@127.0.0.1/")
    with pytest.raises(UserError, match="max_backlog"):
        MemoryBus(max_backlog=0)
