"""Streaming: chunk order, per-stream sequence numbers, the final result, and failures."""

from __future__ import annotations

from typing import Any

import pytest

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.runtime import (
    Context,
    FinalAnswer,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    StreamChunk,
    create,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once


async def _collect(flow: Any, trace_id: str) -> list[Any]:
    return [item async for item in flow.stream(trace_id)]


async def test_chunks_arrive_in_order_with_sequence_numbers_then_the_final_answer(
    acme: Headers,
) -> None:
    async def writer(msg: Message[str], ctx: Context) -> FinalAnswer:
        words = msg.payload.split()
        for i, word in enumerate(words):
            await ctx.emit_chunk(word, done=i == len(words) - 1, meta={"i": i})
        return FinalAnswer(text=msg.payload)

    async with create(Node(writer).to()) as flow:
        msg = Message(payload="one two three four", headers=acme)
        await flow.emit(msg)
        items = await _collect(flow, msg.trace_id)
    chunks, final = items[:-1], items[-1]
    assert [c.text for c in chunks] == ["one", "two", "three", "four"]
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    assert [c.done for c in chunks] == [False, False, False, True]
    assert all(
        c.trace_id == msg.trace_id and c.stream_id == "writer" and c.node == "writer"
        for c in chunks
    )
    assert chunks[2].meta == {"i": 2}
    assert final == FinalAnswer(text="one two three four")


async def test_sequence_numbers_count_per_stream_id_and_per_trace(acme: Headers) -> None:
    async def two_streams(msg: Message[int], ctx: Context) -> int:
        for _ in range(msg.payload):
            await ctx.emit_chunk("s", stream_id="status")
            await ctx.emit_chunk("a", stream_id="answer")
        return msg.payload

    async with create(Node(two_streams).to()) as flow:
        first = Message(payload=3, headers=acme)
        second = Message(payload=2, headers=acme)
        await flow.emit(first)
        await flow.emit(second)
        items_1 = await _collect(flow, first.trace_id)
        items_2 = await _collect(flow, second.trace_id)
    for items, count in ((items_1, 3), (items_2, 2)):
        chunks = [i for i in items if isinstance(i, StreamChunk)]
        assert [c.seq for c in chunks if c.stream_id == "status"] == list(range(count))
        assert [c.seq for c in chunks if c.stream_id == "answer"] == list(range(count))
        assert items[-1] == count


async def test_fetch_skips_chunks_and_returns_the_result(acme: Headers) -> None:
    async def chatty(msg: Message[str], ctx: Context) -> str:
        await ctx.emit_chunk("thinking")
        return "answer"

    async with create(Node(chatty).to()) as flow:
        msg = Message(payload="q", headers=acme)
        await flow.emit(msg)
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == "answer"


async def test_a_stream_of_a_failing_trace_yields_its_chunks_then_raises(acme: Headers) -> None:
    async def half(msg: Message[str], ctx: Context) -> str:
        await ctx.emit_chunk("partial")
        raise RuntimeError("lost the backend")

    async with create(Node(half).to()) as flow:
        msg = Message(payload="q", headers=acme)
        await flow.emit(msg)
        seen: list[Any] = []
        with pytest.raises(FlowError) as info:
            async for item in flow.stream(msg.trace_id):
                seen.append(item)
    assert [c.text for c in seen] == ["partial"]
    assert info.value.code is FlowErrorCode.NODE_EXCEPTION


async def test_a_full_stream_buffer_makes_emit_chunk_wait_for_the_reader(acme: Headers) -> None:
    async def many(msg: Message[int], ctx: Context) -> int:
        for i in range(msg.payload):
            await ctx.emit_chunk(str(i))
        return msg.payload

    async with create(Node(many).to(), stream_maxsize=2) as flow:
        msg = Message(payload=50, headers=acme)
        await flow.emit(msg)
        items = await _collect(flow, msg.trace_id)
    assert [c.text for c in items[:-1]] == [str(i) for i in range(50)]


async def test_emit_chunk_in_payload_mode_is_refused() -> None:
    async def streams(x: int, ctx: Context) -> int:
        await ctx.emit_chunk("no trace here")
        return x

    async with create(Node(streams).to()) as flow:
        await flow.emit(1)
        with pytest.raises(FlowError) as info:
            await flow.fetch(timeout_s=TIMEOUT_S)
    assert isinstance(info.value.__cause__, UserError)
    assert "envelope mode" in str(info.value)
