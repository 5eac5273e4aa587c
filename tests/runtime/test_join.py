"""Fan-out and join_k: results of one trace joined, failures delivered once, buffers released."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from penguiflow_agents.exceptions import NotFoundError, UserError
from penguiflow_agents.runtime import (
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    FlowEventKind,
    Headers,
    Message,
    Node,
    create,
    join_k,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once


def _fanout_flow(
    workers: dict[str, Any], middlewares: tuple[Any, ...] = (), **join_kw: Any
) -> tuple[Any, Any]:
    async def start(msg: Message[int], ctx: Context) -> int:
        return msg.payload

    src = Node(start)
    nodes = [Node(fn, name=name) for name, fn in workers.items()]
    join = join_k("join", len(nodes), **join_kw)

    async def finish(msg: Message[Any], ctx: Context) -> Any:
        return msg.payload

    end = Node(finish)
    edges = [src.to(*nodes), *(n.to(join) for n in nodes), join.to(end), end.to()]
    return create(*edges, middlewares=middlewares), join


def _worker(label: str, *, gate: asyncio.Event | None = None, fail: bool = False) -> Any:
    async def work(msg: Message[int], ctx: Context) -> str:
        if gate is not None:
            await gate.wait()
        if fail:
            raise RuntimeError(f"{label} broke")
        return f"{label}{msg.payload}"

    return work


async def test_a_join_of_three_passes_the_three_results_of_the_trace_together(
    acme: Headers,
) -> None:
    flow, join = _fanout_flow(
        {"a": _worker("a"), "b": _worker("b"), "c": _worker("c")}, merge=sorted
    )
    async with flow:
        msgs = [Message(payload=i, headers=acme) for i in range(5)]
        for m in msgs:
            await flow.emit(m)
        results = [await flow.fetch(m.trace_id, timeout_s=TIMEOUT_S) for m in msgs]
    assert results == [[f"a{i}", f"b{i}", f"c{i}"] for i in range(5)]
    assert join.pending == 0


async def test_a_join_with_one_failing_branch_delivers_the_failure_once(
    acme: Headers, recorder: Any
) -> None:
    slow_gate = asyncio.Event()
    flow, join = _fanout_flow(
        {
            "ok": _worker("ok"),
            "bad": _worker("bad", fail=True),
            "slow": _worker("slow", gate=slow_gate),
        },
        middlewares=(recorder,),
    )
    async with flow:
        msg = Message(payload=1, headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
        assert info.value.code is FlowErrorCode.NODE_EXCEPTION
        assert info.value.node == "bad"
        slow_gate.set()
        with pytest.raises(NotFoundError):  # delivered once: the trace is then gone
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert join.pending == 0
    assert recorder.kinds(trace_id=msg.trace_id).count("node_failed") == 1


async def test_a_cancelled_traces_join_buffer_is_released(acme: Headers) -> None:
    never = asyncio.Event()
    buffered = asyncio.Event()
    arrivals = 0

    def watch(event: FlowEvent) -> None:
        nonlocal arrivals
        if event.node == "join" and event.kind is FlowEventKind.NODE_SUCCESS:
            arrivals += 1
            if arrivals == 40:  # x and y arrived for all 20 traces; z never will
                buffered.set()

    flow, join = _fanout_flow(
        {"x": _worker("x"), "y": _worker("y"), "z": _worker("z", gate=never)}, middlewares=(watch,)
    )
    async with flow:
        msgs = [Message(payload=i, headers=acme) for i in range(20)]
        for m in msgs:
            await flow.emit(m)
        await asyncio.wait_for(buffered.wait(), TIMEOUT_S)
        assert join.pending == 20
        for m in msgs:
            assert await flow.cancel(m.trace_id)
        assert join.pending == 0
        for m in msgs:
            err = await flow.fetch(m.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
            assert err.code is FlowErrorCode.CANCELLED


async def test_a_join_past_its_deadline_releases_its_buffer(acme: Headers) -> None:
    never = asyncio.Event()
    flow, join = _fanout_flow({"x": _worker("x"), "y": _worker("y", gate=never)})
    async with flow:
        msg = Message(payload=1, headers=acme, deadline_s=time.time() + 0.2)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
        assert info.value.code is FlowErrorCode.DEADLINE_EXCEEDED
        assert join.pending == 0


async def test_a_trace_that_finishes_short_of_k_releases_its_buffer(acme: Headers) -> None:
    async def nothing(msg: Message[int], ctx: Context) -> None:
        return None

    flow, join = _fanout_flow({"x": _worker("x"), "quiet": nothing})
    async with flow:
        msg = Message(payload=1, headers=acme)
        await flow.emit(msg)
        err = await flow.fetch(msg.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
    assert err.code is FlowErrorCode.NO_RESULT
    assert join.pending == 0


async def test_join_refuses_payload_mode_and_bad_k() -> None:
    with pytest.raises(UserError, match="k must be an int >= 1, got 0"):
        join_k("j", 0)
    join = join_k("j", 2)
    async with create(join.to()) as flow:
        await flow.emit("bare")
        with pytest.raises(FlowError) as info:
            await flow.fetch(timeout_s=TIMEOUT_S)
    assert "needs envelope mode" in str(info.value)


async def test_joins_that_never_complete_leave_no_memory_behind(
    acme: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    """Rounds of traces whose join never completes (cancelled, or past a deadline and never
    fetched) do not make the process grow: buffers and finished traces are let go."""
    import gc
    import logging
    import tracemalloc

    # The evictions log a warning per trace; pytest's log capture keeps every record, which
    # tracemalloc would count as the flow's growth (the test failed alone, not in the suite).
    caplog.set_level(logging.ERROR, logger="penguiflow_agents.runtime")  # restored afterwards

    never = asyncio.Event()
    rounds, per_round, payload_size = 6, 100, 4_000  # a leak would keep ~400 kB per round

    async def start(msg: Message[str], ctx: Context) -> str:
        return msg.payload

    async def fast(msg: Message[str], ctx: Context) -> str:
        return msg.payload + "!"  # a new string of payload_size bytes in the join's buffer

    async def stuck(msg: Message[str], ctx: Context) -> str:
        await never.wait()
        return msg.payload

    async def finish(msg: Message[Any], ctx: Context) -> Any:
        return msg.payload

    src, ok, hang, end = Node(start), Node(fast), Node(stuck, concurrency=per_round), Node(finish)
    join = join_k("join", 2)
    flow = create(
        src.to(ok, hang), ok.to(join), hang.to(join), join.to(end), end.to(), max_unfetched=60
    )
    sizes: list[int] = []
    tracemalloc.start()
    try:
        async with flow:
            for r in range(rounds):
                deadline = time.time() + 0.05
                msgs = [
                    Message(
                        payload=f"{r}-{i}-".ljust(payload_size, "x"),
                        headers=acme,
                        deadline_s=deadline if i % 2 else None,
                    )
                    for i in range(per_round)
                ]
                # ends 20 ms after the others: by then their deadline failures have landed
                late = Message(payload="late", headers=acme, deadline_s=deadline + 0.02)
                for m in [*msgs, late]:
                    await flow.emit(m)
                cancelled = msgs[0::2]
                for m in cancelled:  # every other trace is cancelled and its error fetched
                    await asyncio.wait_for(flow.cancel(m.trace_id), TIMEOUT_S)
                    err = await flow.fetch(m.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
                    assert err.code is FlowErrorCode.CANCELLED
                # the rest run past their deadline and nobody fetches them
                err = await flow.fetch(late.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
                assert err.code is FlowErrorCode.DEADLINE_EXCEEDED
                assert join.pending == 0
                del msgs, cancelled, late, err
                gc.collect()
                sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    growth = sizes[-1] - sizes[1]  # round 0 warms caches up
    assert growth < payload_size * per_round // 2, sizes
