"""What only RedisBus does: the stream as the backlog, URLs, group recovery, errors, cleanup."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from penguiflow_agents._owner import new_owner
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


def process_name(pid: int) -> str:
    """A consumer name for ``pid`` in the worker's ``host:pid:token:boot_id:pid_namespace`` form."""
    _host, _pid, token, boot_id, pid_ns = new_owner().split(":")
    return ":".join((socket.gethostname(), str(pid), token, boot_id, pid_ns))


@pytest.fixture
def gone_and_alive() -> Iterator[tuple[int, int]]:
    """The PID of a process that has ended (it names no process any more) and of a live one."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield gone.pid, alive.pid
    alive.kill()
    alive.wait()


async def test_jobs_of_a_dead_process_of_this_host_are_taken_over_at_once(
    redis_url: str, stream: str, raw: aioredis.Redis, gone_and_alive: tuple[int, int]
) -> None:
    """A SIGKILLed worker's jobs go to the next consumer without waiting for the visibility
    timeout (300 s here); a live process's job stays where it is; the dead one is forgotten."""
    gone, alive, me = (process_name(pid) for pid in (*gone_and_alive, os.getpid()))
    bus = await RedisBus.open(redis_url, stream=stream, visibility_timeout_s=300)
    try:
        await bus.publish({"n": 1})
        await bus.publish({"n": 2})
        [held_by_dead] = await bus.consume(gone, block_s=0.5)
        [held_by_live] = await bus.consume(alive, block_s=0.5)
        other = await RedisBus.open(redis_url, stream=stream, visibility_timeout_s=300)
        try:
            [taken] = await other.consume(me, max_jobs=5, block_s=0.5)
            assert taken.job == held_by_dead.job == {"n": 1}
            assert taken.attempt == 2  # a delivery counted like any redelivery
            assert await other.consume(me, block_s=0.2) == []
            await other.ack(taken)
        finally:
            await other.aclose()
        consumers = {c["name"]: c["pending"] for c in await raw.xinfo_consumers(stream, bus.group)}
        assert gone not in consumers
        assert consumers[alive] == 1 and held_by_live.job == {"n": 2}
    finally:
        await bus.aclose()


async def test_a_consumer_name_of_another_form_is_never_judged_dead(
    redis_url: str, stream: str
) -> None:
    bus = await RedisBus.open(redis_url, stream=stream, visibility_timeout_s=300)
    try:
        await bus.publish({"n": 1})
        await bus.consume("worker-a:99999999", block_s=0.5)
        assert await bus.consume("worker-b", block_s=0.2) == []  # waits for the timeout
    finally:
        await bus.aclose()
