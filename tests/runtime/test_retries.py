"""Retries with backoff, per-attempt timeouts, and which failures are not retried."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

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
FAST_BACKOFF = {"backoff_base": 0.001, "max_backoff": 0.01}


async def test_fails_twice_then_succeeds_emits_two_errors_two_retries_one_success(
    acme: Headers, recorder: Any
) -> None:
    attempts: list[int] = []

    async def flaky(msg: Message[str], ctx: Context) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) <= 2:
            raise ConnectionError("backend away")
        return "ok"

    node = Node(flaky, policy=NodePolicy(max_retries=3, **FAST_BACKOFF))
    async with create(node.to(), middlewares=[recorder]) as flow:
        msg = Message(payload="q", headers=acme)
        await flow.emit(msg)
        assert await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) == "ok"
    kinds = recorder.kinds(node="flaky")
    assert kinds.count("node_error") == 2
    assert kinds.count("node_retry") == 2
    assert kinds.count("node_success") == 1
    assert "node_failed" not in kinds
    assert attempts == [1, 2, 3]
    errors = [e for e in recorder.events if e.kind == "node_error"]
    assert [e.attempt for e in errors] == [1, 2]
    assert errors[0].error == "ConnectionError: backend away"
    retries = [e for e in recorder.events if e.kind == "node_retry"]
    assert all(e.latency_s is not None and 0 <= e.latency_s <= 0.011 for e in retries)


async def test_a_node_slower_than_its_timeout_gets_exactly_two_attempts_then_node_timeout(
    acme: Headers, recorder: Any
) -> None:
    attempts = 0

    async def slow(msg: Message[str], ctx: Context) -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.5)
        return "late"

    node = Node(slow, policy=NodePolicy(timeout_s=0.1, max_retries=1, **FAST_BACKOFF))
    async with create(node.to(), middlewares=[recorder]) as flow:
        msg = Message(payload="q", headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert attempts == 2
    assert info.value.code is FlowErrorCode.NODE_TIMEOUT
    assert info.value.node == "slow"
    assert "timeout_s=0.1" in info.value.message
    kinds = recorder.kinds(node="slow")
    assert kinds.count("node_timeout") == 2
    assert kinds.count("node_retry") == 1
    assert kinds[-1] == "node_failed"


async def test_a_timeout_error_raised_by_the_node_itself_is_an_exception_not_a_timeout(
    acme: Headers,
) -> None:
    async def raises_timeout(msg: Message[str], ctx: Context) -> str:
        raise TimeoutError("upstream said so")

    node = Node(raises_timeout, policy=NodePolicy(timeout_s=5.0))
    async with create(node.to()) as flow:
        msg = Message(payload="q", headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert info.value.code is FlowErrorCode.NODE_EXCEPTION


async def test_retries_exhausted_end_the_trace_once_with_node_exception(
    acme: Headers, recorder: Any
) -> None:
    async def broken(msg: Message[str], ctx: Context) -> str:
        raise ValueError("always")

    node = Node(broken, policy=NodePolicy(max_retries=2, **FAST_BACKOFF))
    async with create(node.to(), middlewares=[recorder]) as flow:
        msg = Message(payload="q", headers=acme)
        await flow.emit(msg)
        err = await flow.fetch(msg.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
    assert isinstance(err, FlowError)
    assert err.code is FlowErrorCode.NODE_EXCEPTION
    assert "after 3 attempt(s): ValueError: always" in err.message
    assert recorder.kinds(node="broken").count("node_failed") == 1


async def test_a_flow_error_raised_by_a_node_is_terminal_and_keeps_its_code(acme: Headers) -> None:
    calls = 0

    async def refuses(msg: Message[str], ctx: Context) -> str:
        nonlocal calls
        calls += 1
        raise FlowError(FlowErrorCode.UNROUTABLE, "no branch for this")

    node = Node(refuses, policy=NodePolicy(max_retries=5, **FAST_BACKOFF))
    async with create(node.to()) as flow:
        msg = Message(payload="q", headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError) as info:
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    assert calls == 1
    assert info.value.code is FlowErrorCode.UNROUTABLE
    assert info.value.node == "refuses" and info.value.trace_id == msg.trace_id
