"""The MessageBus contract, run against MemoryBus and RedisBus alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from penguiflow_agents.bus import MAX_JOB_BYTES, Delivery
from penguiflow_agents.exceptions import BusError, UserError

from .conftest import MakeBus

# A short visibility timeout keeps the redelivery tests fast (checks "not yet due" right away).
VT = 0.5


async def test_a_published_job_is_consumed_once_with_its_content(make_bus: MakeBus) -> None:
    bus = await make_bus()
    job_id = await bus.publish({"kind": "run", "n": 1, "text": "héllo", "roles": ["a"]})
    [got] = await bus.consume("c1", max_jobs=5, block_s=0.5)
    assert got.id == job_id and got.consumer == "c1" and got.attempt == 1
    assert got.job == {"kind": "run", "n": 1, "text": "héllo", "roles": ["a"]}
    assert await bus.consume("c2", block_s=0.05) == []  # in flight: nobody else gets it


async def test_jobs_come_in_publish_order_up_to_max_jobs(make_bus: MakeBus) -> None:
    bus = await make_bus()
    for i in range(5):
        await bus.publish({"i": i})
    first = await bus.consume("c1", max_jobs=3, block_s=0.5)
    rest = await bus.consume("c2", max_jobs=3, block_s=0.5)
    assert [d.job["i"] for d in first] == [0, 1, 2]
    assert [d.job["i"] for d in rest] == [3, 4]


async def test_consume_waits_for_a_job_published_meanwhile(make_bus: MakeBus) -> None:
    bus = await make_bus()
    waiting = asyncio.create_task(bus.consume("c1", block_s=3.0))
    await asyncio.sleep(0.05)  # let the consumer block first (the test is about waking it)
    await bus.publish({"late": True})
    started = time.monotonic()
    [got] = await asyncio.wait_for(waiting, 5)
    assert got.job == {"late": True}
    assert time.monotonic() - started < 2.5  # woken by the job, not by the block timeout


async def test_consume_with_nothing_returns_empty_after_block(make_bus: MakeBus) -> None:
    bus = await make_bus()
    started = time.monotonic()
    assert await bus.consume("c1", block_s=0.2) == []
    assert 0.1 < time.monotonic() - started < 3.0


async def test_an_acked_job_is_never_delivered_again(make_bus: MakeBus) -> None:
    bus = await make_bus(visibility_timeout_s=VT)
    await bus.publish({"x": 1})
    [got] = await bus.consume("c1", block_s=0.5)
    await bus.ack(got)
    await bus.ack(got)  # idempotent
    await asyncio.sleep(VT * 1.5)
    assert await bus.consume("c2", block_s=0.05) == []
    assert await bus.backlog() == 0


async def test_an_unacked_job_is_redelivered_after_the_visibility_timeout(
    make_bus: MakeBus,
) -> None:
    """A consumer that dies (never acks, never renews) loses its job to the next consumer."""
    bus = await make_bus(visibility_timeout_s=VT)
    await bus.publish({"x": 1})
    [first] = await bus.consume("dead-worker", block_s=0.5)
    assert await bus.consume("c2", block_s=0.05) == []  # not yet idle long enough
    await asyncio.sleep(VT * 1.2)
    [again] = await bus.consume("c2", block_s=0.5)
    assert again.id == first.id and again.job == first.job
    assert again.consumer == "c2" and again.attempt == 2


async def test_touch_keeps_a_job_from_being_redelivered(make_bus: MakeBus) -> None:
    bus = await make_bus(visibility_timeout_s=0.6)
    await bus.publish({"x": 1})
    [held] = await bus.consume("c1", block_s=0.5)
    for _ in range(5):  # 5 x 0.15 s: past the timeout, renewed every quarter of it
        await asyncio.sleep(0.15)
        assert await bus.touch([held]) == [held]
        assert await bus.consume("c2", block_s=0) == []


async def test_touch_reports_a_job_taken_over_by_another_consumer(make_bus: MakeBus) -> None:
    bus = await make_bus(visibility_timeout_s=VT)
    await bus.publish({"x": 1})
    [held] = await bus.consume("c1", block_s=0.5)
    await asyncio.sleep(VT * 1.2)
    [taken] = await bus.consume("c2", block_s=0.5)
    assert await bus.touch([held]) == []  # c1 learns it lost the job
    assert await bus.touch([taken]) == [taken]  # and its touch did not steal it back from c2


async def test_release_hands_a_job_back_at_once_without_counting_an_attempt(
    make_bus: MakeBus,
) -> None:
    bus = await make_bus(visibility_timeout_s=30.0)
    await bus.publish({"x": 1})
    [held] = await bus.consume("c1", block_s=0.5)
    await bus.release(held)
    [again] = await bus.consume("c2", block_s=0.5)  # long before the 30 s timeout
    assert again.id == held.id and again.attempt == 1


async def test_a_job_past_max_deliveries_becomes_a_dead_letter(make_bus: MakeBus) -> None:
    bus = await make_bus(visibility_timeout_s=0.1, max_deliveries=2)
    await bus.publish({"poison": True})
    attempts = []
    for _ in range(2):
        [got] = await bus.consume("crashy", block_s=0.5)
        attempts.append(got.attempt)
        await asyncio.sleep(0.15)
    assert attempts == [1, 2]
    assert await bus.consume("c2", block_s=0.05) == []  # the third delivery is refused
    [dead] = await bus.dead_letters()
    assert dead.job == {"poison": True} and dead.attempt == 3
    assert await bus.backlog() == 0
    assert await bus.dead_letter_count() == 1  # what the penguiflow_bus_dead_letters gauge shows


async def test_the_backlog_is_bounded_and_a_full_bus_refuses_jobs(make_bus: MakeBus) -> None:
    """Back-pressure instead of silent loss: publish fails when max_backlog jobs are not done."""
    bus = await make_bus(max_backlog=3)
    for i in range(3):
        await bus.publish({"i": i})
    with pytest.raises(BusError, match=r"backlog.*full"):
        await bus.publish({"i": 3})
    delivered = await bus.consume("c1", max_jobs=2, block_s=0.5)
    with pytest.raises(BusError):  # in flight still counts: not done yet
        await bus.publish({"i": 3})
    await bus.ack(delivered[0])
    await bus.publish({"i": 3})  # room for exactly one more
    assert await bus.backlog() == 3
    remaining = [delivered[1], *await bus.consume("c1", max_jobs=5, block_s=0.5)]
    assert sorted(d.job["i"] for d in remaining) == [1, 2, 3]  # nothing was trimmed away


async def test_jobs_that_are_not_json_objects_or_too_large_are_refused(make_bus: MakeBus) -> None:
    bus = await make_bus()
    with pytest.raises(UserError, match="JSON"):
        await bus.publish({"when": object()})
    with pytest.raises(UserError, match="mapping"):
        await bus.publish(["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(UserError, match="over the limit"):
        await bus.publish({"text": "x" * (MAX_JOB_BYTES + 1)})


async def test_bad_consume_arguments_are_refused(make_bus: MakeBus) -> None:
    bus = await make_bus()
    with pytest.raises(UserError, match="consumer"):
        await bus.consume("", block_s=0)
    with pytest.raises(UserError, match="max_jobs"):
        await bus.consume("c1", max_jobs=0, block_s=0)


async def test_a_closed_bus_raises_bus_error(make_bus: MakeBus) -> None:
    bus = await make_bus()
    await bus.aclose()
    await bus.aclose()  # idempotent
    with pytest.raises(BusError, match="closed"):
        await bus.publish({"x": 1})
    with pytest.raises(BusError, match="closed"):
        await bus.ack(Delivery(id="1-0", job={}, consumer="c1"))
