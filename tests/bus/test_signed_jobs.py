"""Signed jobs (issue #12 §8): with a bus secret, only jobs signed with it reach a consumer.

The attack: whoever can write to Redis ``XADD``s a job as any tenant and role.
With ``PENGUIFLOW_BUS_SECRET`` set, such a job (unsigned, tampered, or signed
with another secret) becomes a dead letter with its reason; the secret is
required when the bus is not on loopback.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from penguiflow_agents.bus import BUS_SECRET_ENV, MemoryBus, RedisBus, open_bus
from penguiflow_agents.bus._signing import is_local_bus_url
from penguiflow_agents.exceptions import UserError

SECRET = "s3cret-of-the-bus-0123456789"
JOB = {"kind": "run", "tenant": "acme", "principal": "alice", "roles": ["staff"], "run_id": "r1"}


@pytest.fixture
async def stream(redis_url: str) -> AsyncIterator[str]:
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


async def test_a_signed_job_is_delivered_as_published(redis_url: str, stream: str) -> None:
    submitter = await RedisBus.open(redis_url, stream=stream, secret=SECRET)
    worker = await RedisBus.open(redis_url, stream=stream, secret=SECRET)
    try:
        await submitter.publish(JOB)
        [got] = await worker.consume("w1", block_s=1.0)
        assert got.job == JOB  # the signature is checked and taken off
        assert await worker.dead_letters() == []
    finally:
        await submitter.aclose()
        await worker.aclose()


async def test_forged_jobs_written_straight_to_redis_become_dead_letters(
    redis_url: str, stream: str, raw: aioredis.Redis
) -> None:
    honest = await RedisBus.open(redis_url, stream=stream, secret=SECRET)
    other = await RedisBus.open(redis_url, stream=stream, secret="another-secret-0123456789")
    try:
        # 1. unsigned, as anyone with write access to Redis would enqueue it
        forged = {**JOB, "tenant": "victim", "roles": ["admin"]}
        await raw.xadd(stream, {"job": json.dumps(forged)})
        # 2. a signed job whose role was raised afterwards
        await honest.publish(JOB)
        [entry] = (await raw.xrange(stream))[-1:]
        tampered = json.loads(entry[1]["job"])
        assert tampered["sig"].startswith("hmac-sha256:")
        tampered["roles"] = ["admin"]
        await raw.xdel(stream, entry[0])
        await raw.xadd(stream, {"job": json.dumps(tampered)})
        # 3. signed with another secret; 4. not even JSON
        await other.publish({**JOB, "run_id": "r2"})
        await raw.xadd(stream, {"job": "{not json"})
        # 5. one honest job after them all
        await honest.publish({**JOB, "run_id": "r3"})

        delivered = []
        for _ in range(5):
            delivered += await honest.consume("w1", max_jobs=10, block_s=0.2)
        assert [d.job["run_id"] for d in delivered] == ["r3"]
        dead = await honest.dead_letters()
        reasons = [d.reason for d in dead]
        assert len(dead) == 4
        assert reasons[0].startswith("unsigned")
        assert reasons[1].startswith("bad signature") and reasons[2].startswith("bad signature")
        assert reasons[3].startswith("malformed")
        assert dead[0].job["tenant"] == "victim"  # kept for inspection
        for d in delivered:
            await honest.ack(d)
        assert await raw.xlen(stream) == 0  # refused jobs left the stream: never retried
    finally:
        await honest.aclose()
        await other.aclose()


async def test_without_a_secret_on_loopback_jobs_flow_as_before(
    redis_url: str, stream: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BUS_SECRET_ENV, raising=False)
    bus = await RedisBus.open(redis_url, stream=stream)
    try:
        assert not bus.signed
        await raw.xadd(stream, {"job": json.dumps(JOB)})
        [got] = await bus.consume("w1", block_s=0.5)
        assert got.job == JOB
    finally:
        await bus.aclose()


async def test_the_secret_comes_from_the_environment(
    redis_url: str, stream: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BUS_SECRET_ENV, SECRET)
    bus = await open_bus(f"{redis_url}?stream={stream}")
    try:
        assert isinstance(bus, RedisBus) and bus.signed
        await raw.xadd(stream, {"job": json.dumps(JOB)})
        assert await bus.consume("w1", block_s=0.3) == []
        [dead] = await bus.dead_letters()
        assert dead.reason.startswith("unsigned")
    finally:
        await bus.aclose()


def test_a_bus_off_this_host_needs_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUS_SECRET_ENV, raising=False)
    for url in ("redis://:pw@10.1.2.3:6379/0", "rediss://redis.example.com:6380/0"):
        with pytest.raises(UserError, match=BUS_SECRET_ENV) as info:
            RedisBus(url)
        assert "pw" not in str(info.value)
    monkeypatch.setenv(BUS_SECRET_ENV, "short")
    with pytest.raises(UserError, match="at least 16"):
        RedisBus("redis://10.1.2.3:6379/0")
    monkeypatch.setenv(BUS_SECRET_ENV, SECRET)
    assert RedisBus("redis://10.1.2.3:6379/0").signed  # connects lazily: nothing to reach yet


def test_what_counts_as_this_host() -> None:
    local = ["redis://127.0.0.1:6379/0", "redis://localhost/0", "redis://[::1]:6379", "unix:///r"]
    remote = ["redis://10.0.0.5/0", "redis://redis:6379/0", "rediss://0.0.0.0:1/0"]
    assert all(is_local_bus_url(u) for u in local)
    assert not any(is_local_bus_url(u) for u in remote)


async def test_memory_bus_with_a_secret_refuses_a_changed_job() -> None:
    bus = MemoryBus(secret=SECRET)
    job_id = await bus.publish(JOB)
    text = json.loads(bus._jobs[job_id])
    text["tenant"] = "victim"
    bus._jobs[job_id] = json.dumps(text)  # what a writer with access to the storage would do
    await bus.publish({**JOB, "run_id": "r2"})
    got = await bus.consume("w1", max_jobs=5, block_s=0.1)
    assert [d.job["run_id"] for d in got] == ["r2"]
    [dead] = await bus.dead_letters()
    assert dead.reason.startswith("bad signature") and await bus.backlog() == 1
