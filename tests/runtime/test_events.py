"""FlowEvents: what they carry, middlewares (sync, async, raising), and the state store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from penguiflow_agents.runtime import (
    Context,
    FlowEvent,
    FlowEventKind,
    Headers,
    Message,
    Node,
    create,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once


async def _two_step_run(acme: Headers, **create_kw: Any) -> str:
    async def first(msg: Message[str], ctx: Context) -> str:
        return msg.payload + "1"

    async def second(msg: Message[str], ctx: Context) -> str:
        return msg.payload + "2"

    a, b = Node(first), Node(second)
    async with create(a.to(b), b.to(), **create_kw) as flow:
        msg = Message(payload="x", headers=acme)
        await flow.emit(msg)
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == "x12"
    return msg.trace_id


async def test_events_carry_tenant_trace_node_attempt_latency_and_queue_depths(
    acme: Headers, recorder: Any
) -> None:
    trace_id = await _two_step_run(acme, middlewares=[recorder])
    assert [(e.kind.value, e.node) for e in recorder.events] == [
        ("node_start", "first"),
        ("node_success", "first"),
        ("node_start", "second"),
        ("node_success", "second"),
    ]
    for event in recorder.events:
        assert event.tenant == "acme" and event.trace_id == trace_id and event.attempt == 1
        assert event.queue_depth_in >= 0 and event.queue_depth_out >= 0
        assert event.ts > 0
    successes = [e for e in recorder.events if e.kind is FlowEventKind.NODE_SUCCESS]
    assert all(e.latency_s is not None and e.latency_s >= 0 for e in successes)
    assert set(recorder.events[0].to_dict()) >= {"kind", "tenant", "trace_id", "node", "latency_s"}


async def test_a_queued_message_shows_in_the_queue_depths(acme: Headers, recorder: Any) -> None:
    gate = asyncio.Event()

    async def held(msg: Message[int], ctx: Context) -> int:
        await gate.wait()
        return msg.payload

    async with create(Node(held).to(), middlewares=[recorder]) as flow:
        msgs = [Message(payload=i, headers=acme) for i in range(3)]
        for m in msgs:
            await flow.emit(m)
        gate.set()
        for m in msgs:
            await flow.fetch(m.trace_id, timeout_s=TIMEOUT_S)
    first_start = recorder.events[0]
    assert first_start.kind is FlowEventKind.NODE_START
    assert first_start.queue_depth_in == 2


async def test_a_raising_middleware_is_logged_and_does_not_disturb_the_flow(
    acme: Headers, recorder: Any
) -> None:
    def broken(event: FlowEvent) -> None:
        raise RuntimeError("middleware bug")

    async def also_async(event: FlowEvent) -> None:
        await asyncio.sleep(0)
        recorder(event)

    with capture_logs() as logs:
        await _two_step_run(acme, middlewares=[broken, also_async])
    assert len(recorder.events) == 4  # the middleware after the broken one saw every event
    failures = [entry for entry in logs if entry["event"] == "flow_middleware_failed"]
    assert len(failures) == 4
    assert failures[0]["error"] == "RuntimeError: middleware bug"
    assert failures[0]["tenant"] == "acme"


async def test_every_event_of_a_trace_is_persisted_to_the_state_store(
    acme: Headers, recorder: Any, make_store: Any
) -> None:
    store = make_store()
    trace_id = await _two_step_run(acme, middlewares=[recorder], state_store=store)
    assert [(t, r, k) for t, r, k, _ in store.rows] == [
        ("acme", trace_id, e.kind.value) for e in recorder.events
    ]
    assert store.rows[0][3]["node"] == "first"
    assert "payload" not in store.rows[0][3]


async def test_a_slow_store_never_slows_the_flow_events_are_dropped_and_counted(
    acme: Headers, make_store: Any
) -> None:
    store = make_store(blocked=True)

    async def echo(msg: Message[int], ctx: Context) -> int:
        return msg.payload

    with capture_logs() as logs:
        async with create(Node(echo).to(), state_store=store, store_buffer=10) as flow:
            msgs = [Message(payload=i, headers=acme) for i in range(100)]
            for m in msgs:
                await flow.emit(m)
            results = [await flow.fetch(m.trace_id, timeout_s=TIMEOUT_S) for m in msgs]
            assert results == list(range(100))  # all done while the store was stuck
            assert store.rows == []
            assert flow.dropped_events >= 200 - 11
            store.gate.set()  # the store recovers: stop() flushes what was buffered
    assert 1 <= len(store.rows) <= 11
    assert any(entry["event"] == "flow_event_dropped" for entry in logs)


async def test_a_failing_store_is_logged_and_the_flow_goes_on(acme: Headers) -> None:
    class BrokenStore:
        async def append_event(self, *args: Any) -> int:
            raise OSError("disk full")

    with capture_logs() as logs:
        await _two_step_run(acme, state_store=BrokenStore())
    assert any(e["event"] == "flow_event_store_failed" and "disk full" in e["error"] for e in logs)


@pytest.mark.parametrize("bad", [None, 3])
def test_a_middleware_must_be_callable(bad: Any) -> None:
    from penguiflow_agents.exceptions import UserError

    async def echo(x: int, ctx: Context) -> int:
        return x

    with pytest.raises(UserError, match="callable"):
        create(Node(echo).to(), middlewares=[bad])


async def test_events_land_in_the_memory_store_as_the_trace_run_log(
    acme: Headers, recorder: Any
) -> None:
    from penguiflow_agents.store import MemoryStore

    store = MemoryStore()
    trace_id = await _two_step_run(acme, middlewares=[recorder], state_store=store)
    stored = await store.list_events("acme", trace_id)
    assert [e.kind for e in stored] == [e.kind.value for e in recorder.events]
    assert [e.seq for e in stored] == [1, 2, 3, 4]
    assert stored[1].data["node"] == "first" and stored[1].data["latency_s"] is not None
    assert await store.list_events("globex", trace_id) == []
