"""map_concurrent: input order, bounded concurrency, the first error with its index, cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.runtime import (
    Context,
    FlowError,
    Headers,
    MapItemError,
    Message,
    Node,
    create,
    map_concurrent,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once


async def test_results_come_back_in_input_order_whatever_order_calls_finish() -> None:
    rng = random.Random(3)
    delays = [rng.random() / 200 for _ in range(30)]

    async def square(i: int) -> int:
        await asyncio.sleep(delays[i])
        return i * i

    assert await map_concurrent(range(30), square, max_concurrency=7) == [i * i for i in range(30)]
    assert await map_concurrent([], square) == []


async def test_no_more_than_max_concurrency_calls_run_at_once() -> None:
    running = 0
    peak = 0

    async def track(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running -= 1
        return i

    await map_concurrent(range(50), track, max_concurrency=4)
    assert peak == 4


async def test_the_first_error_is_reported_with_its_index_and_the_rest_are_cancelled() -> None:
    cancelled: list[int] = []
    release = asyncio.Event()

    async def work(i: int) -> int:
        if i == 5:
            raise KeyError("missing thing")
        try:
            await asyncio.wait_for(release.wait(), TIMEOUT_S)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    with pytest.raises(MapItemError) as info:
        await map_concurrent(range(10), work, max_concurrency=10)
    assert info.value.index == 5
    assert isinstance(info.value.error, KeyError)
    assert isinstance(info.value.__cause__, KeyError)
    assert str(info.value) == "item 5 failed: KeyError: 'missing thing'"
    assert sorted(cancelled) == [i for i in range(10) if i != 5]


async def test_inside_a_node_the_error_index_reaches_the_fetcher(acme: Headers) -> None:
    async def lookup(x: int) -> int:
        if x == 3:
            raise ValueError("no record")
        return x

    async def node(msg: Message[list[int]], ctx: Context) -> list[int]:
        return await map_concurrent(msg.payload, lookup, max_concurrency=2)

    async with create(Node(node).to()) as flow:
        ok = Message(payload=[1, 2], headers=acme)
        bad = Message(payload=[0, 1, 2, 3, 4], headers=acme)
        await flow.emit(ok)
        await flow.emit(bad)
        assert await flow.fetch(ok.trace_id, timeout_s=TIMEOUT_S) == [1, 2]
        with pytest.raises(FlowError) as info:
            await flow.fetch(bad.trace_id, timeout_s=TIMEOUT_S)
    assert "item 3 failed: ValueError: no record" in info.value.message


async def test_cancelling_the_trace_cancels_every_running_item(acme: Headers) -> None:
    started = 0
    all_started = asyncio.Event()
    cancelled = 0

    async def hang(i: int) -> int:
        nonlocal started, cancelled
        started += 1
        if started == 3:
            all_started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return i

    async def node(msg: Message[int], ctx: Context) -> list[int]:
        return await map_concurrent(range(msg.payload), hang, max_concurrency=3)

    async with create(Node(node).to()) as flow:
        msg = Message(payload=10, headers=acme)
        await flow.emit(msg)
        await asyncio.wait_for(all_started.wait(), TIMEOUT_S)
        assert await flow.cancel(msg.trace_id)
    assert cancelled == 3 and started == 3


async def test_max_concurrency_must_be_positive() -> None:
    async def same(i: int) -> int:
        return i

    with pytest.raises(UserError, match="max_concurrency must be an int >= 1, got 0"):
        await map_concurrent([1], same, max_concurrency=0)
