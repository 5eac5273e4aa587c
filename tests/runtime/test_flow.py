"""Running a flow: both modes, backpressure and order, validation, concurrency, lifecycle."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from pydantic import BaseModel

from penguiflow_agents.exceptions import NotFoundError, UserError
from penguiflow_agents.runtime import (
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    NodePolicy,
    create,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once


async def _yield_many(times: int = 20) -> None:
    """Let every runnable task run (not a sleep: no wall-clock assumption)."""
    for _ in range(times):
        await asyncio.sleep(0)


class Query(BaseModel):
    text: str


class Answer(BaseModel):
    text: str
    length: int


async def test_payload_mode_runs_a_linear_flow() -> None:
    async def inc(x: int, ctx: Context) -> int:
        return x + 1

    async def double(x: int, ctx: Context) -> int:
        return x * 2

    a, b = Node(inc), Node(double)
    async with create(a.to(b), b.to()) as flow:
        for i in range(5):
            await flow.emit(i)
        assert [await flow.fetch(timeout_s=TIMEOUT_S) for _ in range(5)] == [2, 4, 6, 8, 10]


async def test_envelope_mode_keeps_headers_and_trace_and_fetch_returns_the_payload(
    acme: Headers,
) -> None:
    seen: list[tuple[str | None, Headers | None]] = []

    async def first(msg: Message[str], ctx: Context) -> str:
        seen.append((ctx.trace_id, ctx.headers))
        return msg.payload.upper()

    async def second(msg: Message[str], ctx: Context) -> str:
        assert isinstance(msg, Message)
        seen.append((msg.trace_id, msg.headers))
        return msg.payload + "!"

    a, b = Node(first), Node(second)
    async with create(a.to(b), b.to()) as flow:
        msg = Message(payload="hi", headers=acme)
        await flow.emit(msg)
        assert await flow.fetch(msg.trace_id, tenant="acme", timeout_s=TIMEOUT_S) == "HI!"
    assert seen == [(msg.trace_id, acme), (msg.trace_id, acme)]


async def test_message_defaults_a_fresh_uuid4_trace_id(acme: Headers) -> None:
    import uuid

    ids = {Message(payload=None, headers=acme).trace_id for _ in range(200)}
    assert len(ids) == 200
    for tid in list(ids)[:20]:
        assert uuid.UUID(hex=tid).version == 4
        assert uuid.UUID(hex=tid).hex == tid


async def test_third_emit_waits_while_a_blocked_node_holds_a_full_queue_nothing_lost() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def blocked(x: int, ctx: Context) -> int:
        started.set()
        await release.wait()
        return x

    async with create(Node(blocked).to(), queue_maxsize=1) as flow:
        await flow.emit(1)
        await asyncio.wait_for(started.wait(), TIMEOUT_S)  # the node holds message 1
        await asyncio.wait_for(flow.emit(2), TIMEOUT_S)  # fills the inbox
        third = asyncio.create_task(flow.emit(3))
        await _yield_many()
        assert not third.done(), "emit must wait while the inbox is full"
        release.set()
        await asyncio.wait_for(third, TIMEOUT_S)
        assert [await flow.fetch(timeout_s=TIMEOUT_S) for _ in range(3)] == [1, 2, 3]


async def test_order_is_kept_on_an_edge_under_backpressure() -> None:
    rng = random.Random(7)

    async def jittery(x: int, ctx: Context) -> int:
        if rng.random() < 0.3:
            await asyncio.sleep(0)
        return x

    a, b, c = Node(jittery, name="a"), Node(jittery, name="b"), Node(jittery, name="c")
    async with create(a.to(b), b.to(c), c.to(), queue_maxsize=1) as flow:

        async def produce() -> None:
            for i in range(200):
                await flow.emit(i)

        producer = asyncio.create_task(produce())
        got = [await flow.fetch(timeout_s=TIMEOUT_S) for _ in range(200)]
        await producer
    assert got == list(range(200))


async def test_concurrency_lets_one_node_work_on_several_messages_at_once() -> None:
    inside = 0
    peak = 0
    all_in = asyncio.Event()

    async def slow(x: int, ctx: Context) -> int:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        if inside == 3:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), TIMEOUT_S)
        inside -= 1
        return x

    async with create(Node(slow, concurrency=3).to()) as flow:
        for i in range(3):
            await flow.emit(i)
        assert sorted([await flow.fetch(timeout_s=TIMEOUT_S) for _ in range(3)]) == [0, 1, 2]
    assert peak == 3


async def test_pydantic_models_validate_input_and_output(acme: Headers) -> None:
    async def answer(msg: Message[Query], ctx: Context) -> dict[str, Any]:
        assert isinstance(msg.payload, Query)  # a dict was validated into the model
        return {"text": msg.payload.text, "length": len(msg.payload.text)}

    node = Node(answer, in_model=Query, out_model=Answer)
    async with create(node.to()) as flow:
        msg = Message(payload={"text": "hello"}, headers=acme)
        await flow.emit(msg)
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == Answer(text="hello", length=5)

        bad = Message(payload={"txt": "secret-value"}, headers=acme)
        await flow.emit(bad)
        err = await flow.fetch(bad.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
    assert isinstance(err, FlowError)
    assert err.code is FlowErrorCode.VALIDATION_ERROR
    assert err.node == "answer" and err.trace_id == bad.trace_id
    assert "text: Field required" in err.message
    assert "secret-value" not in str(err)  # the input is never echoed


async def test_an_invalid_output_is_a_validation_error_and_is_not_retried(acme: Headers) -> None:
    calls = 0

    async def wrong(msg: Message[str], ctx: Context) -> dict[str, str]:
        nonlocal calls
        calls += 1
        return {"text": "x"}

    node = Node(wrong, out_model=Answer, policy=NodePolicy(max_retries=3, backoff_base=0))
    async with create(node.to()) as flow:
        msg = Message(payload="q", headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert info.value.code is FlowErrorCode.VALIDATION_ERROR
    assert "length: Field required" in info.value.message
    assert calls == 1


async def test_validate_none_skips_the_models(acme: Headers) -> None:
    async def passthrough(msg: Message[Any], ctx: Context) -> Any:
        return msg.payload

    node = Node(passthrough, in_model=Query, out_model=Answer, policy=NodePolicy(validate="none"))
    async with create(node.to()) as flow:
        msg = Message(payload=42, headers=acme)
        await flow.emit(msg)
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == 42


async def test_a_node_failure_in_payload_mode_reaches_fetch_as_a_flow_error() -> None:
    async def boom(x: int, ctx: Context) -> int:
        raise ValueError(f"bad {x}")

    async with create(Node(boom).to()) as flow:
        await flow.emit(1)
        with pytest.raises(FlowError) as info:
            await flow.fetch(timeout_s=TIMEOUT_S)
    assert info.value.code is FlowErrorCode.NODE_EXCEPTION
    assert info.value.node == "boom"
    assert "ValueError: bad 1" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


async def test_a_trace_that_produces_nothing_ends_with_no_result(acme: Headers) -> None:
    async def drop(msg: Message[int], ctx: Context) -> None:
        return None

    async with create(Node(drop).to()) as flow:
        msg = Message(payload=1, headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
        assert info.value.code is FlowErrorCode.NO_RESULT
        with pytest.raises(NotFoundError):  # the outcome was delivered once; the trace is gone
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)


async def test_ctx_emit_sends_extra_outputs_and_a_fanout_reaches_every_egress(
    acme: Headers,
) -> None:
    async def split(msg: Message[str], ctx: Context) -> None:
        for part in msg.payload.split():
            await ctx.emit(part)

    async def shout(msg: Message[str], ctx: Context) -> str:
        return msg.payload.upper()

    a, b = Node(split), Node(shout)
    async with create(a.to(b), b.to()) as flow:
        msg = Message(payload="a b c", headers=acme)
        await flow.emit(msg)
        got = [await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) for _ in range(3)]
    assert sorted(got) == ["A", "B", "C"]


async def test_emit_needs_a_running_flow_and_run_happens_once() -> None:
    async def echo(x: int, ctx: Context) -> int:
        return x

    flow = create(Node(echo).to())
    with pytest.raises(UserError, match=r"flow\.run"):
        await flow.emit(1)
    flow.run()
    with pytest.raises(UserError, match="already called"):
        flow.run()
    await flow.stop()
    with pytest.raises(UserError, match="stopped"):
        await flow.emit(1)


async def test_fetch_of_an_unknown_trace_is_not_found_and_fetch_can_time_out(acme: Headers) -> None:
    gate = asyncio.Event()

    async def wait(msg: Message[int], ctx: Context) -> int:
        await gate.wait()
        return msg.payload

    async with create(Node(wait).to()) as flow:
        with pytest.raises(NotFoundError, match="no trace with id 'nope'"):
            await flow.fetch("nope")
        msg = Message(payload=1, headers=acme)
        await flow.emit(msg)
        with pytest.raises(TimeoutError):
            await flow.fetch(msg.trace_id, timeout_s=0.05)
        gate.set()
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == 1


async def test_stop_fails_unfinished_traces_so_no_fetch_hangs(acme: Headers) -> None:
    async def forever(msg: Message[int], ctx: Context) -> int:
        await asyncio.Event().wait()
        return 0

    flow = create(Node(forever).to())
    flow.run()
    msg = Message(payload=1, headers=acme)
    await flow.emit(msg)
    waiting = asyncio.create_task(flow.fetch(msg.trace_id))
    await _yield_many()
    await asyncio.wait_for(flow.stop(), TIMEOUT_S)
    with pytest.raises(FlowError) as info:
        await asyncio.wait_for(waiting, TIMEOUT_S)
    assert info.value.code is FlowErrorCode.STOPPED
    with pytest.raises(FlowError) as payload_info:
        await asyncio.wait_for(flow.fetch(), TIMEOUT_S)
    assert payload_info.value.code is FlowErrorCode.STOPPED


async def test_emit_to_a_named_node_and_a_reused_trace_id_of_another_tenant_is_refused(
    acme: Headers, globex: Headers
) -> None:
    async def tag(msg: Message[str], ctx: Context) -> str:
        return f"{ctx.node}:{msg.payload}"

    a, b = Node(tag, name="a"), Node(tag, name="b")
    gate = asyncio.Event()

    async def hold(msg: Message[str], ctx: Context) -> str:
        await gate.wait()
        return msg.payload

    h = Node(hold, name="h")
    async with create(a.to(b), b.to(), h.to()) as flow:
        msg = Message(payload="x", headers=acme)
        await flow.emit(msg, to="b")
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == "b:x"
        with pytest.raises(UserError, match="no such node"):
            await flow.emit(msg, to="zzz")
        held = Message(payload="y", headers=acme)
        await flow.emit(held, to=h)
        with pytest.raises(UserError, match="already in use"):
            await flow.emit(Message(payload="z", headers=globex, trace_id=held.trace_id), to=h)
        gate.set()
        assert await flow.fetch(held.trace_id, timeout_s=TIMEOUT_S) == "y"
