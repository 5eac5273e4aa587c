"""Who may call a source now: the seam behind ``max_concurrency`` and ``rate_per_s``.

A ``SlotLimiter`` hands out *slots*: ``await limiter.acquire(source, limit=...,
rate_per_s=..., timeout_s=...)`` returns a ``Slot`` once fewer than ``limit``
calls to ``source`` hold one (and, with ``rate_per_s``, a token of the source's
bucket was free), or raises ``TimeoutError`` after ``timeout_s``; ``await
slot.release()`` gives it back. ``ProtectedSource`` asks its limiter before
every call and turns the timeout into an ``overloaded`` result.

- ``LocalSlotLimiter``: one ``asyncio.Semaphore`` and one token bucket per
  source, in this process (the default, and the fallback with no bus);
- ``RedisSlotLimiter`` (``penguiflow_agents.tools._slots_redis``): slots leased in
  Redis, so the limits hold across every process sharing the bus.

A limiter that cannot decide (its Redis is unreachable) raises
``BusError``: the call fails as ``unavailable`` rather than going
ahead unprotected (see DESIGN.md, "Fleet-wide limits").

A limiter whose class says ``reports_waits = True`` gives each slot a
``waited_s``: how long ``acquire`` took (0.0 for a slot free at once, without
reading a clock). ``ProtectedSource`` counts that as the call's queue wait; for
another limiter it reads the clock around ``acquire`` itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from penguiflow_agents.tools._slots_redis import RedisSlotLimiter

__all__ = ["LocalSlotLimiter", "Slot", "SlotLimiter", "TokenBucket", "fleet_limiter"]


@runtime_checkable
class Slot(Protocol):
    async def release(self) -> None: ...


@runtime_checkable
class SlotLimiter(Protocol):
    """Slots of tool sources: at most ``limit`` held at once, ``rate_per_s`` taken per second."""

    async def acquire(
        self, source: str, *, limit: int, rate_per_s: float | None, timeout_s: float
    ) -> Slot:
        """A slot of ``source``; ``TimeoutError`` after ``timeout_s``; ``BusError`` when the
        limiter cannot decide (its Redis is unreachable)."""
        ...


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, holding at most ``max(1, rate)``; starts full."""

    rate: float
    tokens: float
    at: float

    @classmethod
    def full(cls, rate: float, now: float) -> TokenBucket:
        return cls(rate=rate, tokens=max(1.0, rate), at=now)

    def take(self, now: float) -> float:
        """Take one token: 0.0 if taken, else the seconds until one is due (nothing taken)."""
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class _LocalSlot:
    __slots__ = ("_semaphore", "waited_s")

    def __init__(self, semaphore: asyncio.Semaphore, waited_s: float) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore
        self.waited_s = waited_s  # how long acquire() took (0.0: free at once)

    async def release(self) -> None:
        semaphore, self._semaphore = self._semaphore, None
        if semaphore is not None:
            semaphore.release()


class LocalSlotLimiter:
    """Slots in this process: a semaphore of ``limit`` and a token bucket per source.

    The limit of a source is fixed by its first ``acquire``.
    """

    reports_waits = True  # each slot's ``waited_s``

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(
        self, source: str, *, limit: int, rate_per_s: float | None, timeout_s: float
    ) -> Slot:
        semaphore = self._semaphores.get(source)
        if semaphore is None:
            semaphore = self._semaphores[source] = asyncio.Semaphore(limit)
        started = None
        if semaphore.locked():
            started = time.monotonic()
            async with asyncio.timeout(timeout_s):
                await semaphore.acquire()
        else:  # a free slot: taken at once, no timer (nor clock) needed
            await semaphore.acquire()
        if rate_per_s is not None:
            if started is None:
                started = time.monotonic()
            try:
                await self._take_token(source, rate_per_s, timeout_s)
            except BaseException:
                semaphore.release()
                raise
        return _LocalSlot(semaphore, 0.0 if started is None else time.monotonic() - started)

    async def _take_token(self, source: str, rate: float, timeout_s: float) -> None:
        start = self._clock()
        bucket = self._buckets.get(source)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[source] = TokenBucket.full(rate, start)
        while True:
            now = self._clock()
            wait = bucket.take(now)
            if wait == 0.0:
                return
            if now + wait - start > timeout_s:
                raise TimeoutError
            await asyncio.sleep(wait)


def fleet_limiter(bus_url: str | None) -> RedisSlotLimiter | None:
    """The limiter of the processes sharing the bus at ``bus_url``: slots leased in its Redis
    for a ``redis://``, ``rediss://`` or ``unix://`` URL; None (each process on its own) else."""
    scheme = bus_url.split("://", 1)[0].lower() if bus_url and "://" in bus_url else ""
    if scheme not in ("redis", "rediss", "unix"):
        return None
    from penguiflow_agents.tools._slots_redis import RedisSlotLimiter

    return RedisSlotLimiter.for_bus(str(bus_url))
