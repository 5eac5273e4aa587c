"""Slot limiters: the in-process one, and Redis leases shared by processes (real Redis).

- at most ``limit`` slots are held at once, across limiter instances on one Redis
  (as across processes), and a waiter gets a slot when one is released;
- a slot nobody renews (its process died) comes back when its lease ends, a held
  slot's lease is renewed while its call runs;
- ``rate_per_s`` is a token bucket: a burst of ``max(1, rate)``, then ``rate`` per second;
- a ``ProtectedSource`` on a Redis limiter answers ``overloaded`` after its queue
  timeout, and ``unavailable`` (never an unprotected call) when Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from penguiflow_agents.exceptions import BusError
from penguiflow_agents.tools import (
    CallContext,
    LocalSlotLimiter,
    RedisSlotLimiter,
    SlotLimiter,
    ToolErrorKind,
    ToolRegistry,
    tool,
)
from penguiflow_agents.tools._slots import TokenBucket, fleet_limiter

# Longest a wait of these tests may take (a busy 2-core machine).
WAIT_S = 20.0


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = f"pf-slots-test:{uuid.uuid4().hex[:10]}"
    yield name
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def limiters(redis_url: str, prefix: str) -> AsyncIterator[list[RedisSlotLimiter]]:
    """Three limiters on one Redis and prefix: three processes of one fleet."""
    made = [RedisSlotLimiter(redis_url, prefix=prefix, lease_s=1.0) for _ in range(3)]
    yield made
    for limiter in made:
        await limiter.aclose()


async def test_slots_are_held_at_most_limit_at_once_across_limiters(
    limiters: list[RedisSlotLimiter],
) -> None:
    a, b, c = limiters
    first = await a.acquire("db", limit=2, rate_per_s=None, timeout_s=1.0)
    second = await b.acquire("db", limit=2, rate_per_s=None, timeout_s=1.0)
    with pytest.raises(TimeoutError):
        await c.acquire("db", limit=2, rate_per_s=None, timeout_s=0.2)
    waiter = asyncio.create_task(c.acquire("db", limit=2, rate_per_s=None, timeout_s=WAIT_S))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await first.release()
    third = await asyncio.wait_for(waiter, WAIT_S)
    other = await a.acquire("other", limit=1, rate_per_s=None, timeout_s=1.0)  # its own slots
    for slot in (second, third, other):
        await slot.release()


async def test_a_slot_nobody_renews_comes_back_when_its_lease_ends(
    limiters: list[RedisSlotLimiter], redis_url: str
) -> None:
    dead, alive, _ = limiters
    slot = await dead.acquire("db", limit=1, rate_per_s=None, timeout_s=1.0)
    renewer = slot._renewer  # type: ignore[attr-defined]
    renewer.cancel()  # its process died: nobody renews, nobody releases
    started = time.monotonic()
    taken = await alive.acquire("db", limit=1, rate_per_s=None, timeout_s=WAIT_S)
    waited = time.monotonic() - started
    assert 0.5 < waited < WAIT_S  # not at once: only once the 1 s lease ran out
    await taken.release()


async def test_a_held_slot_is_renewed_while_its_call_runs(
    limiters: list[RedisSlotLimiter],
) -> None:
    holder, other, _ = limiters
    slot = await holder.acquire("db", limit=1, rate_per_s=None, timeout_s=1.0)
    # Three leases long: without renewal the slot would have come back twice over.
    with pytest.raises(TimeoutError):
        await other.acquire("db", limit=1, rate_per_s=None, timeout_s=3.0)
    await slot.release()
    again = await other.acquire("db", limit=1, rate_per_s=None, timeout_s=1.0)
    await again.release()


async def test_rate_per_s_is_a_token_bucket_shared_by_the_fleet(
    limiters: list[RedisSlotLimiter],
) -> None:
    a, b, _ = limiters
    burst = [await x.acquire("api", limit=10, rate_per_s=2.0, timeout_s=0) for x in (a, b)]
    for slot in burst:
        await slot.release()
    with pytest.raises(TimeoutError):  # two taken by the burst: the next is ~0.5 s away
        await a.acquire("api", limit=10, rate_per_s=2.0, timeout_s=0.1)
    started = time.monotonic()
    slot = await b.acquire("api", limit=10, rate_per_s=2.0, timeout_s=WAIT_S)
    assert time.monotonic() - started > 0.2
    await slot.release()


def test_the_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket.full(2.0, now=0.0)
    assert [bucket.take(0.0), bucket.take(0.0)] == [0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    slow = TokenBucket.full(0.5, now=0.0)  # below one per second: a burst of one
    assert slow.take(0.0) == 0.0 and slow.take(1.0) == pytest.approx(1.0)


async def test_the_local_limiter_holds_its_limit_and_rate() -> None:
    limiter: SlotLimiter = LocalSlotLimiter()
    held = await limiter.acquire("s", limit=1, rate_per_s=None, timeout_s=1.0)
    with pytest.raises(TimeoutError):
        await limiter.acquire("s", limit=1, rate_per_s=None, timeout_s=0.05)
    await held.release()
    await held.release()  # twice is once
    first = await limiter.acquire("r", limit=5, rate_per_s=1.0, timeout_s=0)
    with pytest.raises(TimeoutError):
        await limiter.acquire("r", limit=5, rate_per_s=1.0, timeout_s=0.1)
    await first.release()


def test_only_a_redis_bus_gives_a_fleet_limiter() -> None:
    assert fleet_limiter(None) is None and fleet_limiter("memory://") is None
    limiter = fleet_limiter("redis://127.0.0.1:6379/0?stream=jobs&group=w")
    assert isinstance(limiter, RedisSlotLimiter) and limiter.prefix == "jobs"


def _registry(limiter: SlotLimiter, gate: asyncio.Event, **settings: Any) -> ToolRegistry:
    @tool
    async def wait() -> str:
        """Wait for the gate."""
        await gate.wait()
        return "done"

    registry = ToolRegistry()
    registry.add_functions(wait, source="slow", **settings)
    registry.use_limiter(limiter)
    return registry


async def test_a_registry_on_a_redis_limiter_is_overloaded_by_another_process_calls(
    limiters: list[RedisSlotLimiter],
) -> None:
    gate = asyncio.Event()
    one = _registry(limiters[0], gate, max_concurrency=1, queue_timeout_s=0.3, timeout_s=WAIT_S)
    two = _registry(limiters[1], gate, max_concurrency=1, queue_timeout_s=0.3, timeout_s=WAIT_S)
    busy = asyncio.create_task(one.call("slow.wait", {}, CallContext()))
    await asyncio.sleep(0.2)
    refused = await two.call("slow.wait", {}, CallContext())
    assert refused.error_kind is ToolErrorKind.OVERLOADED, refused.error
    assert "max_concurrency" in (refused.error or "")
    gate.set()
    assert (await asyncio.wait_for(busy, WAIT_S)).ok
    assert (await two.call("slow.wait", {}, CallContext())).ok


async def test_an_unreachable_limiter_fails_the_call_as_unavailable_without_calling() -> None:
    calls = 0

    @tool
    async def ping() -> str:
        """Count a call."""
        nonlocal calls
        calls += 1
        return "pong"

    limiter = RedisSlotLimiter("redis://127.0.0.1:1/0", prefix="nowhere")
    registry = ToolRegistry()
    registry.add_functions(ping, source="svc", retries={"max_attempts": 1})
    registry.use_limiter(limiter)
    result = await registry.call("svc.ping", {}, CallContext())
    await limiter.aclose()
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert "Redis" in (result.error or "") and "not made" in (result.error or "")
    assert calls == 0
    down = RedisSlotLimiter("redis://127.0.0.1:1/0")
    with pytest.raises(BusError):
        await down.acquire("svc", limit=1, rate_per_s=None, timeout_s=0)
    await down.aclose()


async def test_a_service_on_a_redis_bus_takes_its_slots_from_that_redis(
    tmp_path: Any, redis_url: str
) -> None:
    """`serve --bus redis://...`: the registry it loads shares slots with the workers."""
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.server import KeyRing, ServerSettings, create_app
    from penguiflow_agents.store import MemoryStore
    from penguiflow_agents.testing import ScriptedLLM

    (tmp_path / "tools").mkdir()
    stream = f"pf-slots-serve:{uuid.uuid4().hex[:10]}"
    settings = ServerSettings(tools=str(tmp_path / "tools"), bus=f"{redis_url}?stream={stream}")
    app = create_app(
        settings,
        store=MemoryStore(),
        policies=PolicySet.from_documents([]),
        keys=KeyRing([]),
        llm=ScriptedLLM([]),
    )
    async with app.router.lifespan_context(app):
        limiter = app.state.penguiflow.registry._limiter
        assert isinstance(limiter, RedisSlotLimiter) and limiter.prefix == stream
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(stream, f"{stream}:dead")
    await client.aclose()
