"""Protection around a tool source: a wrapper, not a flag.

``ProtectedSource(inner, manifest)`` gives every call, in this order:

1. a **circuit breaker**: after ``circuit_breaker.failure_threshold``
   consecutive failures (timeout, unavailable, remote overload) calls fail
   fast as ``unavailable`` for ``cooldown_s``; then exactly one probe call is
   let through and its outcome closes or re-opens the breaker;
2. a **slot** of ``max_concurrency`` (and, with ``rate_per_s``, a token of the
   source's bucket) from its ``SlotLimiter`` (``_slots``): a semaphore shared by
   every caller in the process, or leases in Redis shared by the fleet; waiting
   longer than ``queue_timeout_s`` is an ``overloaded`` result, a limiter that
   cannot decide (Redis down) an ``unavailable`` one;
3. a **timeout** of ``timeout_s`` (or the tool's own) on the call itself; the
   call is cancelled when it expires (the MCP request or HTTP call with it);
4. **retries** with exponential backoff and jitter (``_retry.backoff_delay``), only for idempotent
   tools and only after a retryable failure (timeout, unavailable, remote
   overload such as HTTP 429); a ``retry_after_s`` hint (HTTP Retry-After) is
   honoured. The slot is released while waiting to retry.

Then a result larger than the source's ``max_result_bytes`` (its output as
UTF-8 text or compact JSON) is cut to that many bytes with a marker saying
so, and its structured content dropped (``bound_result``): whatever the
transport, the trajectory and the store never keep more.

Before that, the values of the ``${VAR}`` variables the manifest refers to (and
their common encodings) are masked with ``***`` in the result (output,
structured content, error): a tool that echoes a secret back never puts it in
the store, the console or the model's context.

A caller's ``ctx.deadline`` bounds every wait. Nothing raises: each outcome is
a ``ToolResult`` with ``latency_s`` (whole call, queueing and retries
included) and ``attempts``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import random
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from penguiflow_agents._log import get_logger
from penguiflow_agents._retry import backoff_delay as _backoff
from penguiflow_agents.exceptions import AuthorizationRequiredError, BusError
from penguiflow_agents.tools._manifest import CircuitBreakerConfig, SourceManifest
from penguiflow_agents.tools._redact import ResultRedactor, redact_value
from penguiflow_agents.tools._slots import LocalSlotLimiter, SlotLimiter
from penguiflow_agents.tools._types import (
    CallContext,
    EventSink,
    ToolErrorKind,
    ToolResult,
    ToolSource,
    ToolSpec,
)

__all__ = ["BreakerState", "CircuitBreaker", "ProtectedSource", "backoff_delay", "bound_result"]

log = get_logger("penguiflow_agents.tools")

# Longest Retry-After we wait for; a longer one ends the call with its failure.
MAX_RETRY_AFTER_S = 30.0
# Failure kinds that say the backend (not the arguments) is in trouble.
RETRYABLE = frozenset({ToolErrorKind.TIMEOUT, ToolErrorKind.UNAVAILABLE, ToolErrorKind.OVERLOADED})


def backoff_delay(
    attempt: int, *, initial_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """The pause before retry number ``attempt`` (1-based): ``_retry.backoff_delay``."""
    return _backoff(attempt, initial_s=initial_s, max_s=max_s, rand=(rng or random).random)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True, kw_only=True)
class _Ticket:
    probe: bool
    settled: bool = False


class CircuitBreaker:
    """Consecutive-failure breaker with a single half-open probe."""

    def __init__(self, config: CircuitBreakerConfig, *, source: str) -> None:
        self.config = config
        self.source = source
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or time.monotonic() - self._opened_at >= self.config.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_in(self) -> float:
        """Seconds until the breaker lets a probe through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.config.cooldown_s - (time.monotonic() - self._opened_at))

    def admit(self) -> _Ticket | None:
        """A ticket to make one call, or None to fail fast."""
        if self._opened_at is None:
            return _Ticket(probe=False)
        if self._probing or self.retry_in() > 0:
            return None
        self._probing = True
        return _Ticket(probe=True)

    def settle(self, ticket: _Ticket, *, failed: bool) -> None:
        if ticket.settled:
            return
        ticket.settled = True
        if ticket.probe:
            self._probing = False
        if not failed:
            if self._opened_at is not None:
                log.info("tool_source.breaker_closed", source=self.source)
            self.failures = 0
            self._opened_at = None
            return
        self.failures += 1
        if ticket.probe or (
            self._opened_at is None and self.failures >= self.config.failure_threshold
        ):
            self._opened_at = time.monotonic()
            log.warning(
                "tool_source.breaker_opened",
                source=self.source,
                failures=self.failures,
                cooldown_s=self.config.cooldown_s,
            )

    def abandon(self, ticket: _Ticket) -> None:
        """The call never reached the source (queue timeout, cancelled): no verdict."""
        if not ticket.settled:
            ticket.settled = True
            if ticket.probe:
                self._probing = False


# Limiter class -> whether its slots report their wait (``reports_waits``, declared by the
# class itself: a subclass that acquires its own way does not inherit it).
_REPORTS_WAITS: dict[type, bool] = {}


def _reports_waits(limiter: object) -> bool:
    reported = _REPORTS_WAITS[type(limiter)] = (
        type(limiter).__dict__.get("reports_waits", False) is True
    )
    return reported


class QueueWaitHistogram(Protocol):
    """A histogram updated in place (see ``ProtectedSource.queue_waits``)."""

    bounds: Sequence[float]
    counts: list[int]
    sum: float


class ProtectedSource:
    """``inner`` behind a breaker, a semaphore, timeouts and retries (see module doc)."""

    def __init__(
        self,
        inner: ToolSource,
        manifest: SourceManifest,
        *,
        rng: random.Random | None = None,
        limiter: SlotLimiter | None = None,
    ) -> None:
        self.inner = inner
        self.manifest = manifest
        self.name = manifest.name
        self.breaker = CircuitBreaker(manifest.circuit_breaker, source=manifest.name)
        # Where the slots come from (the registry's ``use_limiter`` may replace it).
        self.limiter: SlotLimiter = limiter or LocalSlotLimiter()
        self._in_flight = 0
        self._rng = rng or random.Random()
        self._tools: dict[str, ToolSpec] = {}
        self._redact_result = ResultRedactor(manifest)
        # Where each call's wait for a slot is counted (metrics), in place: a histogram with
        # ``bounds`` (ascending upper bounds, seconds), ``counts`` (one more than the bounds:
        # the last counts what is above them) and ``sum``. None: not measured.
        self.queue_waits: QueueWaitHistogram | None = None

    @property
    def in_flight(self) -> int:
        """Calls to the source running right now (slots taken)."""
        return self._in_flight

    async def list_tools(self) -> list[ToolSpec]:
        specs = await self.inner.list_tools()
        self._tools = {spec.bare_name: spec for spec in specs}
        return specs

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        qualified = f"{self.name}.{tool}"
        redactor = self._redact_result.current()
        if redactor is not None and ctx.on_event is not None:
            # What a call reports while it runs (MCP progress messages, ...) is masked too.
            ctx = dataclasses.replace(ctx, on_event=_masked_sink(ctx.on_event, redactor))
        spec = self._tools.get(tool)
        timeout_s = (spec.timeout_s if spec else None) or self.manifest.timeout_s
        idempotent = spec.idempotent if spec else self.manifest.idempotent
        max_attempts = self.manifest.retries.max_attempts if idempotent else 1
        start = time.monotonic()
        attempts = 0
        while True:
            result = await self._attempt(qualified, tool, arguments, ctx, timeout_s, attempts)
            if result.attempts > attempts:
                attempts = result.attempts
            else:  # refused before reaching the source: final
                break
            if result.ok or result.error_kind not in RETRYABLE or attempts >= max_attempts:
                break
            delay = backoff_delay(
                attempts,
                initial_s=self.manifest.retries.initial_backoff_s,
                max_s=self.manifest.retries.max_backoff_s,
                rng=self._rng,
            )
            if result.retry_after_s is not None:
                if result.retry_after_s > MAX_RETRY_AFTER_S:
                    break
                delay = max(delay, result.retry_after_s)
            if ctx.deadline is not None and time.monotonic() + delay >= ctx.deadline:
                break
            log.debug(
                "tool.retry",
                tool=qualified,
                attempt=attempts,
                error_kind=str(result.error_kind),
                delay_s=round(delay, 3),
            )
            await _emit(
                ctx, "tool.retry", {"tool": qualified, "attempt": attempts, "delay_s": delay}
            )
            await asyncio.sleep(delay)
        result.tool = qualified
        result.attempts = attempts
        result.latency_s = time.monotonic() - start
        return bound_result(
            self._redact_result(result), self.manifest.max_result_bytes, source=self.name
        )

    async def _attempt(
        self,
        qualified: str,
        tool: str,
        arguments: Mapping[str, Any],
        ctx: CallContext,
        timeout_s: float,
        attempts: int,
    ) -> ToolResult:
        """One try; ``result.attempts`` is ``attempts + 1`` iff the source was called."""
        ticket = self.breaker.admit()
        if ticket is None:
            return ToolResult.failure(
                qualified,
                ToolErrorKind.UNAVAILABLE,
                f"source {self.name!r} is failing ({self.breaker.failures} consecutive failures), "
                f"so its circuit breaker is open; calls fail fast for another "
                f"{self.breaker.retry_in():.1f} s. Try again later.",
                attempts=attempts,
            )
        try:
            remaining = _remaining(ctx)
            if remaining is not None and remaining <= 0:
                self.breaker.abandon(ticket)
                return ToolResult.failure(
                    qualified,
                    ToolErrorKind.TIMEOUT,
                    f"the caller's deadline passed before {qualified!r} could be called",
                    attempts=attempts,
                )
            queue_s = self.manifest.queue_timeout_s
            waits = self.queue_waits
            # The limiter's own figure (a slot free at once: no clock read), else the clock's.
            limiter = self.limiter
            reported = False
            if waits is not None:  # measured: by the limiter, or by the clock around acquire()
                reported = _REPORTS_WAITS.get(type(limiter)) or _reports_waits(limiter)
            waited_from = time.monotonic() if waits is not None and not reported else 0.0
            rate = self.manifest.rate_per_s
            try:
                slot = await limiter.acquire(
                    self.name,
                    limit=self.manifest.max_concurrency,
                    rate_per_s=rate,
                    timeout_s=_bounded(queue_s, remaining),
                )
            except TimeoutError:
                self.breaker.abandon(ticket)
                rated = f", or its rate_per_s={rate:g} was used up," if rate is not None else ""
                return ToolResult.failure(
                    qualified,
                    ToolErrorKind.OVERLOADED,
                    f"source {self.name!r} is busy: all {self.manifest.max_concurrency} slots "
                    f"(max_concurrency) stayed taken{rated} for {queue_s:g} s (queue_timeout_s); "
                    "try again later.",
                    attempts=attempts,
                )
            except BusError as exc:  # the limiter's Redis is down: never call unprotected
                self.breaker.abandon(ticket)
                return ToolResult.failure(
                    qualified, ToolErrorKind.UNAVAILABLE, str(exc), attempts=attempts
                )
            if waits is not None:  # counted here: no call per call
                waited = slot.waited_s if reported else time.monotonic() - waited_from  # type: ignore[attr-defined]
                waits.counts[bisect_left(waits.bounds, waited)] += 1
                waits.sum += waited
            self._in_flight += 1
            try:
                result = await self._call_once(qualified, tool, arguments, ctx, timeout_s)
            finally:
                self._in_flight -= 1
                await slot.release()
        except BaseException:
            self.breaker.abandon(ticket)
            raise
        failed = not result.ok and result.error_kind in RETRYABLE
        self.breaker.settle(ticket, failed=failed)
        result.attempts = attempts + 1
        return result

    async def _call_once(
        self,
        qualified: str,
        tool: str,
        arguments: Mapping[str, Any],
        ctx: CallContext,
        timeout_s: float,
    ) -> ToolResult:
        remaining = _remaining(ctx)
        budget = _bounded(timeout_s, remaining)
        by_deadline = budget < timeout_s
        try:
            async with asyncio.timeout(budget) as scope:
                result = await self.inner.call(tool, arguments, ctx)
        except TimeoutError:
            if not scope.expired():
                return ToolResult.failure(
                    qualified, ToolErrorKind.TIMEOUT, f"{qualified!r} timed out"
                )
            why = "the caller's deadline" if by_deadline else f"{timeout_s:g} s (timeout_s)"
            return ToolResult.failure(
                qualified,
                ToolErrorKind.TIMEOUT,
                f"{qualified!r} did not finish within {why}; the call was cancelled.",
            )
        except AuthorizationRequiredError as exc:  # a person must authorize: a run pauses on it
            return authorization_required(qualified, exc)
        except Exception as exc:  # a source must not raise; contain it if one does
            log.exception("tool_source.raised", source=self.name, tool=qualified)
            return ToolResult.failure(
                qualified,
                ToolErrorKind.UNAVAILABLE,
                f"source {self.name!r} failed unexpectedly ({type(exc).__name__}); "
                "see the log for details.",
            )
        return result


def _masked_sink(sink: EventSink, redact: Callable[[str], str]) -> EventSink:
    def masked(name: str, payload: Mapping[str, Any]) -> Any:
        return sink(name, redact_value(dict(payload), redact))

    return masked


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _over(value: Any, limit: int) -> tuple[str, int] | None:
    """``value``'s text and size in bytes when it is larger than ``limit``, else None."""
    if value is None or (isinstance(value, str) and len(value) * 4 <= limit):
        return None
    text = _text_of(value)
    if len(text) * 4 <= limit:
        return None
    size = len(text.encode("utf-8"))
    return (text, size) if size > limit else None


def bound_result(result: ToolResult, limit: int, *, source: str) -> ToolResult:
    """Cut a result to ``limit`` bytes (``max_result_bytes``) with a marker; in place.

    The output (text, or compact JSON of a value) keeps its first ``limit``
    bytes followed by ``[truncated: ...]``; structured content over the limit,
    or of a cut output, is dropped; an error text is cut the same way.
    """
    big = _over(result.output, limit)
    if big is not None:
        text, size = big
        kept = text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
        result.output = kept + (
            f"\n[truncated: the result was {size} bytes; only its first {limit} are kept "
            f"(max_result_bytes of source {source!r})]"
        )
        result.structured = None
        log.warning("tool_result_truncated", tool=result.tool, bytes=size, kept_bytes=limit)
    elif _over(result.structured, limit) is not None:
        result.structured = None
    if result.error is not None:
        err = _over(result.error, limit)
        if err is not None:
            kept = err[0].encode("utf-8")[:limit].decode("utf-8", errors="ignore")
            result.error = kept + f"\n[truncated: the error was {err[1]} bytes]"
    return result


def authorization_required(qualified: str, exc: AuthorizationRequiredError) -> ToolResult:
    """The result of a call that could not be made until a person authorizes its source."""
    result = ToolResult.failure(qualified, ToolErrorKind.AUTHORIZATION_REQUIRED, str(exc))
    result.structured = {
        "authorization": {
            "source": exc.source,
            "tenant": exc.tenant,
            "principal": exc.principal,
            "url": exc.url,
            "reason": exc.reason,
        }
    }
    return result


def _remaining(ctx: CallContext) -> float | None:
    return None if ctx.deadline is None else ctx.deadline - time.monotonic()


def _bounded(limit: float, remaining: float | None) -> float:
    return limit if remaining is None else max(0.0, min(limit, remaining))


async def _emit(ctx: CallContext, name: str, payload: Mapping[str, Any]) -> None:
    if ctx.on_event is None:
        return
    try:
        outcome = ctx.on_event(name, payload)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:  # an observer must not break a call
        log.exception("tool.event_sink_failed", tool_event=name)
