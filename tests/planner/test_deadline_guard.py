"""The run's deadline as one timer per run (``Run.deadline_scope``, issue #14).

A scope behaves like ``asyncio.timeout(run.remaining())``: ``TimeoutError`` when
the deadline passes inside it, a cancellation from elsewhere stays a
cancellation, a scope entered past the deadline expires at its first wait; and
the one timer is shared and gone once the run is closed.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner._context import Run
from penguiflow_agents.planner._state import RunState
from penguiflow_agents.store._base import RunRecord


def make_run(budget_s: float | None) -> Run:
    return Run(
        run_id="r",
        headers=Headers(tenant="acme"),
        trace_id="r",
        deadline=None if budget_s is None else time.monotonic() + budget_s,
        deadline_s=budget_s,
        record=RunRecord(run_id="r", tenant="acme", principal="alice"),
        state=RunState(query="q", model="m"),
    )


async def test_the_deadline_passing_inside_a_scope_is_a_timeout_and_scopes_share_one_timer() -> (
    None
):
    run = make_run(0.2)
    async with run.deadline_scope():
        await asyncio.sleep(0)  # well before the deadline: nothing happens
    guard = run.guard
    assert guard is not None
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with run.deadline_scope():
            await asyncio.sleep(10)
    assert 0.1 < time.monotonic() - started < 2.0
    assert run.guard is guard  # the same timer served both scopes
    with pytest.raises(TimeoutError):  # past the deadline: expires at the first wait
        async with run.deadline_scope():
            await asyncio.sleep(10)
    run.close_deadline()
    assert run.guard is None


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    run = make_run(30.0)
    entered = asyncio.Event()

    async def body() -> None:
        async with run.deadline_scope():
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run.close_deadline()


async def test_nested_scopes_raise_one_timeout_at_the_outer_one() -> None:
    """As with nested asyncio.timeout at one instant: the inner lets the cancellation through."""
    run = make_run(0.1)
    seen: list[str] = []
    with pytest.raises(TimeoutError):
        async with run.deadline_scope():
            try:
                async with run.deadline_scope():
                    await asyncio.sleep(10)
            except asyncio.CancelledError:
                seen.append("inner saw a cancellation")
                raise
    assert seen == ["inner saw a cancellation"]
    run.close_deadline()


async def test_no_deadline_no_timer() -> None:
    run = make_run(None)
    async with run.deadline_scope():
        await asyncio.sleep(0)
    assert run.guard is None
