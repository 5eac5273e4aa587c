"""Subflows carry trace, headers, deadline and cancellation; controller loops obey a hop budget."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from penguiflow_agents.exceptions import NotFoundError
from penguiflow_agents.runtime import (
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    StreamChunk,
    create,
    predicate_router,
    subflow,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once


async def test_a_subflow_runs_with_the_parents_trace_headers_and_deadline(acme: Headers) -> None:
    seen: dict[str, Any] = {}

    async def inner(msg: Message[str], ctx: Context) -> str:
        seen.update(trace=ctx.trace_id, headers=ctx.headers, deadline=ctx.deadline_s)
        await ctx.emit_chunk("inner working", stream_id="status")
        return msg.payload.upper()

    child = create(Node(inner).to())

    async def outer(msg: Message[str], ctx: Context) -> str:
        return f"outer({msg.payload})"

    sub = subflow(child, name="child")
    last = Node(outer)
    deadline = time.time() + 30
    async with create(sub.to(last), last.to()) as flow:
        assert child.running  # started with its parent
        msg = Message(payload="hi", headers=acme, deadline_s=deadline)
        await flow.emit(msg)
        items = [item async for item in flow.stream(msg.trace_id)]
    assert not child.running  # and stopped with it
    assert seen == {"trace": msg.trace_id, "headers": acme, "deadline": deadline}
    chunk, result = items
    assert (
        isinstance(chunk, StreamChunk)
        and chunk.text == "inner working"
        and chunk.stream_id == "status"
    )
    assert chunk.trace_id == msg.trace_id and chunk.seq == 0
    assert result == "outer(HI)"


async def test_a_subflow_failure_fails_the_parent_trace_with_the_same_code(acme: Headers) -> None:
    async def inner(msg: Message[str], ctx: Context) -> str:
        raise LookupError("inner lost it")

    sub = subflow(create(Node(inner).to()), name="child")
    async with create(sub.to()) as flow:
        msg = Message(payload="x", headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert info.value.code is FlowErrorCode.NODE_EXCEPTION
    assert info.value.node == "child"
    assert "failed at its node 'inner'" in info.value.message
    assert "LookupError: inner lost it" in info.value.message


async def test_cancelling_the_parent_trace_cancels_the_subflow(acme: Headers) -> None:
    inner_started = asyncio.Event()
    inner_cancelled = asyncio.Event()

    async def inner(msg: Message[str], ctx: Context) -> str:
        inner_started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            inner_cancelled.set()
            raise
        return "never"

    child = create(Node(inner).to())
    sub = subflow(child, name="child")
    async with create(sub.to()) as flow:
        msg = Message(payload="x", headers=acme)
        await flow.emit(msg)
        await asyncio.wait_for(inner_started.wait(), TIMEOUT_S)
        assert await flow.cancel(msg.trace_id)
        assert inner_cancelled.is_set()
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
        assert info.value.code is FlowErrorCode.CANCELLED
        with pytest.raises(NotFoundError):  # nothing of the trace is left in the child
            await child.fetch(msg.trace_id, timeout_s=TIMEOUT_S)


async def test_a_subflows_deadline_is_the_parents(acme: Headers) -> None:
    async def inner(msg: Message[str], ctx: Context) -> str:
        await asyncio.sleep(60)
        return "never"

    sub = subflow(create(Node(inner).to()), name="child")
    async with create(sub.to()) as flow:
        msg = Message(payload="x", headers=acme, deadline_s=time.time() + 0.1)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert info.value.code is FlowErrorCode.DEADLINE_EXCEEDED


async def test_a_controller_loop_runs_until_it_routes_to_its_exit(acme: Headers) -> None:
    async def step(msg: Message[int], ctx: Context) -> int:
        return msg.payload + 1

    async def done(msg: Message[int], ctx: Context) -> str:
        return f"stopped at {msg.payload}"

    work, finish = Node(step), Node(done)
    router = predicate_router("again?", lambda msg: "done" if msg.payload >= 5 else "step")
    async with create(
        work.to(router), router.to(work, finish), finish.to(), allow_cycles=True
    ) as flow:
        msg = Message(payload=0, headers=acme)
        await flow.emit(msg)
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == "stopped at 5"


async def test_a_controller_loop_that_never_exits_is_stopped_by_its_hop_budget(
    acme: Headers, recorder: Any
) -> None:
    steps = 0

    async def spin(msg: Message[int], ctx: Context) -> None:
        nonlocal steps
        steps += 1
        await ctx.emit(msg.payload + 1, to="spin")

    async def never(msg: Message[int], ctx: Context) -> int:
        return msg.payload

    loop, exit_ = Node(spin), Node(never)
    flow = create(
        loop.to(loop, exit_), exit_.to(), allow_cycles=True, max_hops=25, middlewares=[recorder]
    )
    async with flow:
        msg = Message(payload=0, headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert info.value.code is FlowErrorCode.HOP_BUDGET_EXCEEDED
    assert info.value.node == "spin"
    assert "max_hops=25" in info.value.message
    assert steps == 25
    assert recorder.kinds(trace_id=msg.trace_id).count("node_failed") == 1
