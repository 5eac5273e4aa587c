"""Per-trace isolation: concurrent traces, cancel, deadlines, tenants, and ending exactly once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow_agents.exceptions import NotFoundError
from penguiflow_agents.runtime import (
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    Headers,
    Message,
    Node,
    create,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once


async def test_two_concurrent_traces_each_fetch_gets_only_its_own_result(acme: Headers) -> None:
    slow_gate = asyncio.Event()

    async def work(msg: Message[str], ctx: Context) -> str:
        if msg.payload == "slow":
            await slow_gate.wait()
        return f"{msg.payload}-done"

    async with create(Node(work, concurrency=2).to()) as flow:
        slow = Message(payload="slow", headers=acme)
        fast = Message(payload="fast", headers=acme)
        await flow.emit(slow)
        await flow.emit(fast)
        slow_fetch = asyncio.create_task(flow.fetch(slow.trace_id))
        assert await flow.fetch(fast.trace_id, timeout_s=TIMEOUT_S) == "fast-done"
        assert not slow_fetch.done()
        slow_gate.set()
        assert await asyncio.wait_for(slow_fetch, TIMEOUT_S) == "slow-done"


async def test_cancel_stops_in_flight_work_drops_queued_messages_and_spares_other_traces(
    acme: Headers, recorder: Any
) -> None:
    started = asyncio.Event()
    tool_cancelled = asyncio.Event()
    processed: list[str] = []

    async def tool_call() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            tool_cancelled.set()
            raise
        return "never"

    async def node(msg: Message[str], ctx: Context) -> str:
        processed.append(msg.payload)
        if msg.payload == "victim-1":
            started.set()
            return await tool_call()
        return msg.payload.upper()

    async with create(Node(node).to(), middlewares=[recorder]) as flow:
        victim = Message(payload="victim-1", headers=acme)
        queued = Message(payload="victim-2", headers=acme, trace_id=victim.trace_id)
        other = Message(payload="other", headers=acme)
        await flow.emit(victim)
        await asyncio.wait_for(started.wait(), TIMEOUT_S)
        await flow.emit(queued)  # waits behind the victim, same trace
        await flow.emit(other)
        assert await asyncio.wait_for(flow.cancel(victim.trace_id, tenant="acme"), TIMEOUT_S)
        assert tool_cancelled.is_set(), "the awaited tool call inside the node was cancelled"
        with pytest.raises(FlowError) as info:
            await flow.fetch(victim.trace_id, timeout_s=TIMEOUT_S)
        assert info.value.code is FlowErrorCode.CANCELLED
        assert await flow.fetch(other.trace_id, timeout_s=TIMEOUT_S) == "OTHER"
    assert processed == ["victim-1", "other"]  # the queued message of the victim never ran
    kinds = recorder.kinds(trace_id=victim.trace_id)
    assert (
        kinds.index("trace_cancel_start")
        < kinds.index("node_cancelled")
        < kinds.index("trace_cancel_finish")
    )


async def test_cancel_of_a_finished_trace_returns_false(acme: Headers) -> None:
    async def echo(msg: Message[int], ctx: Context) -> int:
        return msg.payload

    async with create(Node(echo).to()) as flow:
        msg = Message(payload=1, headers=acme)
        await flow.emit(msg)
        for _ in range(20):
            await asyncio.sleep(0)
        assert await flow.cancel(msg.trace_id) is False
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == 1


async def test_an_expired_deadline_is_not_processed_and_the_fetcher_gets_deadline_exceeded(
    acme: Headers, recorder: Any
) -> None:
    ran = False

    async def node(msg: Message[int], ctx: Context) -> int:
        nonlocal ran
        ran = True
        return msg.payload

    async with create(Node(node).to(), middlewares=[recorder]) as flow:
        msg = Message(payload=1, headers=acme, deadline_s=time.time() - 1.0)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert info.value.code is FlowErrorCode.DEADLINE_EXCEEDED
    assert not ran
    assert "deadline_skip" in recorder.kinds(trace_id=msg.trace_id)


async def test_a_deadline_passing_while_a_node_runs_ends_the_trace_at_the_deadline(
    acme: Headers,
) -> None:
    cancelled = asyncio.Event()

    async def hang(msg: Message[int], ctx: Context) -> int:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    async with create(Node(hang).to()) as flow:
        msg = Message(payload=1, headers=acme, deadline_s=time.time() + 0.1)
        started = time.monotonic()
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
        assert time.monotonic() - started < TIMEOUT_S / 2
        await asyncio.wait_for(cancelled.wait(), TIMEOUT_S)
    assert info.value.code is FlowErrorCode.DEADLINE_EXCEEDED


async def test_another_tenant_cannot_fetch_cancel_or_stream_and_gets_the_unknown_trace_error(
    acme: Headers,
) -> None:
    gate = asyncio.Event()

    async def node(msg: Message[str], ctx: Context) -> str:
        await gate.wait()
        return msg.payload

    async with create(Node(node).to()) as flow:
        msg = Message(payload="acme data", headers=acme)
        await flow.emit(msg)
        with pytest.raises(NotFoundError) as foreign_fetch:
            await flow.fetch(msg.trace_id, tenant="globex")
        with pytest.raises(NotFoundError) as foreign_cancel:
            await flow.cancel(msg.trace_id, tenant="globex")
        with pytest.raises(NotFoundError) as foreign_stream:
            async for _ in flow.stream(msg.trace_id, tenant="globex"):
                pass
        with pytest.raises(NotFoundError) as unknown:
            await flow.fetch("0" * 32, tenant="globex")
        same = str(unknown.value).replace("0" * 32, msg.trace_id)
        assert str(foreign_fetch.value) == same
        assert str(foreign_cancel.value) == same
        assert str(foreign_stream.value) == same
        gate.set()
        assert await flow.fetch(msg.trace_id, tenant="acme", timeout_s=TIMEOUT_S) == "acme data"


# -- property: every trace ends exactly once with the right outcome ------------
#
# Each trace either succeeds, fails at the second node, or hangs there; some are
# cancelled after a random delay, racing their own completion. The outcome must
# be the natural one when cancel() says the trace had already ended, and
# `cancelled` when it says it stopped it; a hanging trace is always cancelled.

_BEHAVIOUR = st.sampled_from(["ok", "fail", "hang"])
_DELAY_MS = st.integers(min_value=0, max_value=3)
_TRACE = st.tuples(_BEHAVIOUR, _DELAY_MS, st.none() | _DELAY_MS).map(
    lambda t: (t[0], t[1], 0 if t[0] == "hang" and t[2] is None else t[2])
)  # (behaviour, node delay in ms, cancel after this many ms or never)


async def _run_traces(plan: list[tuple[str, int, int | None]]) -> None:
    acme = Headers(tenant="acme")
    hold = asyncio.Event()  # never set: hanging traces wait on it until cancelled
    events: list[FlowEvent] = []

    async def prepare(msg: Message[tuple[int, str, int]], ctx: Context) -> tuple[int, str, int]:
        await asyncio.sleep(msg.payload[2] / 1000)
        return msg.payload

    async def act(msg: Message[tuple[int, str, int]], ctx: Context) -> str:
        index, behaviour, delay = msg.payload
        await asyncio.sleep(delay / 1000)
        if behaviour == "fail":
            raise RuntimeError(f"trace {index} fails")
        if behaviour == "hang":
            await hold.wait()
        return f"ok-{index}"

    a, b = Node(prepare, concurrency=3), Node(act, concurrency=4)
    flow = create(a.to(b), b.to(), queue_maxsize=2, middlewares=[events.append])
    async with flow:
        msgs = [Message(payload=(i, o, d), headers=acme) for i, (o, d, _) in enumerate(plan)]
        emitted = [asyncio.Event() for _ in msgs]

        async def produce() -> None:
            for m, done in zip(msgs, emitted, strict=True):
                await flow.emit(m)
                done.set()

        producer = asyncio.create_task(produce())
        outcomes: dict[int, Any] = {}
        stopped: dict[int, bool] = {}

        async def outcome_of(i: int, m: Message[Any]) -> None:
            await emitted[i].wait()
            cancel_after = plan[i][2]
            if cancel_after is not None:
                await asyncio.sleep(cancel_after / 1000)
                try:
                    stopped[i] = await flow.cancel(m.trace_id)
                except NotFoundError:  # ended and already forgotten: nothing to cancel
                    stopped[i] = False
            outcomes[i] = await flow.fetch(m.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
            try:  # delivered once: then the trace is gone (or has nothing further)
                again = await flow.fetch(m.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
            except NotFoundError:
                return
            assert isinstance(again, FlowError) and again.code is FlowErrorCode.NO_RESULT, again

        await asyncio.wait_for(
            asyncio.gather(*(outcome_of(i, m) for i, m in enumerate(msgs)), producer), TIMEOUT_S * 2
        )
    for i, (behaviour, _, _) in enumerate(plan):
        got = outcomes[i]
        tid = msgs[i].trace_id
        kinds = [e.kind.value for e in events if e.trace_id == tid]
        if stopped.get(i):
            assert isinstance(got, FlowError) and got.code is FlowErrorCode.CANCELLED, (i, got)
            finish = kinds.index("trace_cancel_finish")
            assert kinds[finish:] == ["trace_cancel_finish"], kinds  # nothing ran afterwards
        elif behaviour == "ok":
            assert got == f"ok-{i}", (i, got)
        else:
            assert behaviour == "fail", (i, behaviour, "a hanging trace must be cancelled")
            assert isinstance(got, FlowError) and got.code is FlowErrorCode.NODE_EXCEPTION, got
            assert kinds.count("node_failed") == 1, kinds
        assert kinds.count("trace_cancel_start") == (1 if stopped.get(i) else 0), kinds


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TRACE, min_size=1, max_size=12))
def test_concurrent_traces_with_delays_failures_and_cancels_each_end_exactly_once(
    plan: list[tuple[str, int, int | None]],
) -> None:
    asyncio.run(_run_traces(plan))
