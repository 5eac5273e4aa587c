"""Per-source protection: semaphore + queue timeout, call timeout, retries, circuit breaker."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from penguiflow_agents.tools import CallContext, ToolErrorKind, ToolRegistry, tool
from penguiflow_agents.tools._protect import backoff_delay

# Generous margin for timing assertions on a shared, loaded machine.
SLACK_S = 0.5


class Gate:
    """A slow in-process tool: counts calls in flight, holds them until released."""

    def __init__(self, expect_in_flight: int) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.release = asyncio.Event()
        self.reached = asyncio.Event()
        self.expect = expect_in_flight

        @tool
        async def slow() -> str:
            """Wait for the gate."""
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.in_flight >= self.expect:
                self.reached.set()
            try:
                await self.release.wait()
            finally:
                self.in_flight -= 1
            return "done"

        self.tool = slow


async def test_never_more_than_max_concurrency_in_flight_and_all_finish() -> None:
    gate = Gate(expect_in_flight=3)
    registry = ToolRegistry()
    registry.add_functions(gate.tool, source="s", max_concurrency=3, queue_timeout_s=30)
    calls = [asyncio.create_task(registry.call("s.slow", {})) for _ in range(50)]
    await asyncio.wait_for(gate.reached.wait(), 10)
    await asyncio.sleep(0.05)  # let any over-admission show up before releasing
    assert gate.in_flight == 3
    gate.release.set()
    results = await asyncio.wait_for(asyncio.gather(*calls), 30)
    assert all(r.ok for r in results)
    assert gate.max_in_flight == 3
    assert gate.calls == 50


async def test_waiting_past_queue_timeout_is_overloaded() -> None:
    gate = Gate(expect_in_flight=2)
    registry = ToolRegistry()
    registry.add_functions(gate.tool, source="s", max_concurrency=2, queue_timeout_s=0.05)
    holders = [asyncio.create_task(registry.call("s.slow", {})) for _ in range(2)]
    await asyncio.wait_for(gate.reached.wait(), 10)
    overflow = await asyncio.gather(*(registry.call("s.slow", {}) for _ in range(3)))
    assert [r.error_kind for r in overflow] == [ToolErrorKind.OVERLOADED] * 3
    assert all("max_concurrency" in (r.error or "") for r in overflow)
    assert all(r.attempts == 0 for r in overflow), "never reached the tool"
    gate.release.set()
    assert all(r.ok for r in await asyncio.gather(*holders))
    assert gate.calls == 2


async def test_call_timeout_returns_timeout_promptly_and_cancels_the_call() -> None:
    cancelled = asyncio.Event()

    @tool
    async def sleepy() -> str:
        """Sleep for a long time."""
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    registry = ToolRegistry()
    registry.add_functions(sleepy, source="s", timeout_s=0.2)
    start = time.monotonic()
    result = await registry.call("s.sleepy", {})
    elapsed = time.monotonic() - start
    assert result.error_kind is ToolErrorKind.TIMEOUT
    assert 0.2 <= elapsed < 0.2 + SLACK_S
    assert result.latency_s >= 0.2
    assert "timeout_s" in (result.error or "")
    assert cancelled.is_set()


async def test_per_tool_timeout_override_wins_over_the_source_timeout() -> None:
    @tool(timeout_s=0.1)
    async def quick_limit() -> str:
        """Sleep."""
        await asyncio.sleep(5)
        return "late"

    registry = ToolRegistry()
    registry.add_functions(quick_limit, source="s", timeout_s=10)
    start = time.monotonic()
    result = await registry.call("s.quick_limit", {})
    assert result.error_kind is ToolErrorKind.TIMEOUT
    assert time.monotonic() - start < 0.1 + SLACK_S


async def test_caller_deadline_bounds_the_call() -> None:
    @tool
    async def sleepy() -> str:
        """Sleep."""
        await asyncio.sleep(5)
        return "late"

    registry = ToolRegistry()
    registry.add_functions(sleepy, source="s", timeout_s=10)
    ctx = CallContext(deadline=time.monotonic() + 0.1)
    start = time.monotonic()
    result = await registry.call("s.sleepy", {}, ctx)
    assert result.error_kind is ToolErrorKind.TIMEOUT
    assert "deadline" in (result.error or "")
    assert time.monotonic() - start < 0.1 + SLACK_S


def flaky_tool(fail_first: int, *, idempotent: bool, exc: type[Exception] = ConnectionError):
    state = {"calls": 0}

    @tool(idempotent=idempotent)
    def flaky() -> str:
        """Fail the first few calls."""
        state["calls"] += 1
        if state["calls"] <= fail_first:
            raise exc("backend went away")
        return "ok"

    return flaky, state


FAST_RETRIES = {"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.02}


async def test_idempotent_tool_succeeds_after_retries() -> None:
    flaky, state = flaky_tool(2, idempotent=True)
    registry = ToolRegistry()
    registry.add_functions(flaky, source="s", retries=FAST_RETRIES)
    result = await registry.call("s.flaky", {})
    assert result.ok, result.error
    assert result.attempts == 3
    assert state["calls"] == 3


async def test_non_idempotent_tool_is_called_exactly_once() -> None:
    flaky, state = flaky_tool(2, idempotent=False)
    registry = ToolRegistry()
    registry.add_functions(flaky, source="s", retries=FAST_RETRIES)
    result = await registry.call("s.flaky", {})
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert result.attempts == 1
    assert state["calls"] == 1


async def test_manifest_idempotent_override_enables_retries() -> None:
    flaky, state = flaky_tool(1, idempotent=False)
    registry = ToolRegistry()
    registry.add_functions(
        flaky, source="s", retries=FAST_RETRIES, tools={"flaky": {"idempotent": True}}
    )
    result = await registry.call("s.flaky", {})
    assert result.ok and state["calls"] == 2


async def test_retries_stop_at_max_attempts() -> None:
    flaky, state = flaky_tool(10, idempotent=True, exc=TimeoutError)
    registry = ToolRegistry()
    registry.add_functions(flaky, source="s", retries=FAST_RETRIES)
    result = await registry.call("s.flaky", {})
    assert result.error_kind is ToolErrorKind.TIMEOUT
    assert result.attempts == 3 and state["calls"] == 3


async def test_a_tool_error_is_not_retried_even_when_idempotent() -> None:
    flaky, state = flaky_tool(1, idempotent=True, exc=ValueError)
    registry = ToolRegistry()
    registry.add_functions(flaky, source="s", retries=FAST_RETRIES)
    result = await registry.call("s.flaky", {})
    assert result.error_kind is ToolErrorKind.TOOL_ERROR
    assert "backend went away" in (result.error or "")
    assert state["calls"] == 1


async def test_retry_events_reach_the_callers_event_sink() -> None:
    flaky, _ = flaky_tool(2, idempotent=True)
    registry = ToolRegistry()
    registry.add_functions(flaky, source="s", retries=FAST_RETRIES)
    events: list[tuple[str, dict[str, object]]] = []
    await registry.call(
        "s.flaky", {}, CallContext(on_event=lambda n, p: events.append((n, dict(p))))
    )
    assert [(n, p["attempt"]) for n, p in events] == [("tool.retry", 1), ("tool.retry", 2)]


@pytest.mark.parametrize("attempt", [1, 2, 3, 6])
def test_backoff_is_equal_jitter_below_the_exponential_cap(attempt: int) -> None:
    """The one scheme of ``_retry.backoff_delay``: between half and all of the capped base."""
    rng = random.Random(7)
    cap = min(2.0, 0.2 * 2 ** (attempt - 1))
    delays = [backoff_delay(attempt, initial_s=0.2, max_s=2.0, rng=rng) for _ in range(500)]
    assert all(cap / 2 <= d <= cap for d in delays)
    assert max(delays) > 0.9 * cap and min(delays) < 0.6 * cap, "spread over [cap/2, cap]"


def breaker_registry(threshold: int = 3, cooldown_s: float = 0.3):
    state = {"calls": 0, "fail": True}

    @tool
    def backend() -> str:
        """A backend that is down until told otherwise."""
        state["calls"] += 1
        if state["fail"]:
            raise ConnectionError("connection refused")
        return "ok"

    registry = ToolRegistry()
    registry.add_functions(
        backend,
        source="s",
        circuit_breaker={"failure_threshold": threshold, "cooldown_s": cooldown_s},
    )
    return registry, state


async def test_breaker_opens_after_n_failures_and_fails_fast_as_unavailable() -> None:
    registry, state = breaker_registry(threshold=3, cooldown_s=30)
    for _ in range(3):
        assert (await registry.call("s.backend", {})).error_kind is ToolErrorKind.UNAVAILABLE
    assert state["calls"] == 3
    assert registry.status()[0].breaker == "open"
    fast = await registry.call("s.backend", {})
    assert fast.error_kind is ToolErrorKind.UNAVAILABLE
    assert "circuit breaker is open" in (fast.error or "")
    assert fast.attempts == 0
    assert state["calls"] == 3, "the backend was not called while open"


async def test_after_cooldown_one_probe_decides_success_closes() -> None:
    registry, state = breaker_registry(threshold=2, cooldown_s=0.2)
    for _ in range(2):
        await registry.call("s.backend", {})
    await asyncio.sleep(0.3)
    state["fail"] = False
    assert registry.status()[0].breaker == "half_open"
    probe = await registry.call("s.backend", {})
    assert probe.ok
    assert registry.status()[0].breaker == "closed"
    assert (await registry.call("s.backend", {})).ok


async def test_after_cooldown_a_failed_probe_reopens() -> None:
    registry, state = breaker_registry(threshold=2, cooldown_s=0.2)
    for _ in range(2):
        await registry.call("s.backend", {})
    await asyncio.sleep(0.3)
    probe = await registry.call("s.backend", {})
    assert probe.error_kind is ToolErrorKind.UNAVAILABLE and probe.attempts == 1
    assert state["calls"] == 3
    assert registry.status()[0].breaker == "open"
    again = await registry.call("s.backend", {})
    assert again.attempts == 0 and state["calls"] == 3


async def test_only_one_probe_goes_through_while_half_open() -> None:
    release = asyncio.Event()
    probing = asyncio.Event()
    state = {"calls": 0, "fail": True}

    @tool
    async def backend() -> str:
        """Down, then slow."""
        state["calls"] += 1
        if state["fail"]:
            raise ConnectionError("down")
        probing.set()
        await release.wait()
        return "ok"

    registry = ToolRegistry()
    registry.add_functions(
        backend, source="s", circuit_breaker={"failure_threshold": 1, "cooldown_s": 0.1}
    )
    await registry.call("s.backend", {})
    await asyncio.sleep(0.2)
    state["fail"] = False
    probe = asyncio.create_task(registry.call("s.backend", {}))
    await asyncio.wait_for(probing.wait(), 10)
    others = await asyncio.gather(*(registry.call("s.backend", {}) for _ in range(5)))
    assert all(r.error_kind is ToolErrorKind.UNAVAILABLE and r.attempts == 0 for r in others)
    release.set()
    assert (await probe).ok
    assert state["calls"] == 2


async def test_tool_errors_do_not_trip_the_breaker() -> None:
    @tool
    def bad_input_every_time() -> str:
        """Always a tool error."""
        raise ValueError("no")

    registry = ToolRegistry()
    registry.add_functions(
        bad_input_every_time, source="s", circuit_breaker={"failure_threshold": 2, "cooldown_s": 30}
    )
    for _ in range(5):
        result = await registry.call("s.bad_input_every_time", {})
        assert result.error_kind is ToolErrorKind.TOOL_ERROR and result.attempts == 1
    assert registry.status()[0].breaker == "closed"
