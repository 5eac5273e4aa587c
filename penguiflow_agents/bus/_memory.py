"""``MemoryBus``: the message bus in a Python dict, for tests and single-process use.

It keeps the whole contract of ``MessageBus`` (visibility timeout, redelivery
with attempts, dead letters, bounded backlog), so code tested against it
behaves the same on Redis. Jobs are stored as JSON text and decoded on each
delivery, so a consumer never shares a mutable job with the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from penguiflow_agents._log import get_logger
from penguiflow_agents.bus._base import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    Delivery,
    check_consume,
    check_options,
    decode_job,
    encode_job,
)
from penguiflow_agents.bus._signing import JobSigner, resolve_bus_secret
from penguiflow_agents.exceptions import BusError

__all__ = ["MemoryBus"]

_log = get_logger("penguiflow_agents.bus")


@dataclass(slots=True, kw_only=True)
class _InFlight:
    consumer: str
    since: float  # time.monotonic() of the delivery or the last touch
    attempt: int


class MemoryBus:
    """An in-process ``MessageBus``; nothing survives the process."""

    def __init__(
        self,
        *,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        secret: str | bytes | None = None,
    ) -> None:
        """``secret``: sign published jobs and refuse unsigned ones (optional: one process)."""
        check_options(
            max_backlog=max_backlog,
            visibility_timeout_s=visibility_timeout_s,
            max_deliveries=max_deliveries,
            what="MemoryBus",
        )
        self.max_backlog = max_backlog
        self.max_deliveries = max_deliveries
        self._visibility_timeout_s = float(visibility_timeout_s)
        self._jobs: dict[str, str] = {}  # unacknowledged jobs, in publish order
        self._waiting: deque[str] = deque()  # never delivered yet
        self._in_flight: dict[str, _InFlight] = {}
        self._dead: list[Delivery] = []
        self._ids = itertools.count(1)
        self._changed: asyncio.Condition | None = None
        self._closed = False
        key = resolve_bus_secret("memory://", secret) if secret is not None else None
        self._signer = JobSigner(key) if key is not None else None

    def __repr__(self) -> str:
        return f"MemoryBus(backlog={len(self._jobs)}, max_backlog={self.max_backlog})"

    @property
    def visibility_timeout_s(self) -> float:
        return self._visibility_timeout_s

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("this MemoryBus was closed; open a new bus.")

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        changed = self._condition()
        async with changed:
            changed.notify_all()

    # -- MessageBus -------------------------------------------------------------------------

    async def publish(self, job: Mapping[str, Any]) -> str:
        text = encode_job(self._signer.sign(job) if self._signer is not None else job)
        self._check_open()
        if len(self._jobs) >= self.max_backlog:
            raise BusError(
                f"the bus backlog is full ({len(self._jobs)} jobs not yet done, max_backlog="
                f"{self.max_backlog}); retry later or start more workers."
            )
        job_id = f"{int(time.time() * 1000)}-{next(self._ids)}"
        self._jobs[job_id] = text
        self._waiting.append(job_id)
        await self._notify()
        return job_id

    async def consume(
        self, consumer: str, *, max_jobs: int = 1, block_s: float = 1.0
    ) -> list[Delivery]:
        wait = check_consume(consumer, max_jobs, block_s)
        deadline = time.monotonic() + wait
        changed = self._condition()
        while True:
            self._check_open()
            taken = self._take(consumer, max_jobs)
            now = time.monotonic()
            if taken or now >= deadline:
                return taken
            timeout = deadline - now
            if self._in_flight:  # wake up when the oldest in-flight job becomes due again
                due = min(f.since for f in self._in_flight.values()) + self._visibility_timeout_s
                timeout = max(min(timeout, due - now), 0.0)
            async with changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout)

    async def ack(self, delivery: Delivery) -> None:
        self._check_open()
        self._jobs.pop(delivery.id, None)
        self._in_flight.pop(delivery.id, None)

    async def touch(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        self._check_open()
        now = time.monotonic()
        kept = []
        for delivery in deliveries:
            held = self._in_flight.get(delivery.id)
            if held is not None and held.consumer == delivery.consumer:
                held.since = now
                kept.append(delivery)
        return kept

    async def release(self, delivery: Delivery) -> None:
        self._check_open()
        held = self._in_flight.get(delivery.id)
        if held is None or held.consumer != delivery.consumer:
            return
        held.since = float("-inf")  # due at once
        held.attempt = max(held.attempt - 1, 0)  # a hand-back is not a failed attempt
        await self._notify()

    async def aclose(self) -> None:
        self._closed = True

    # -- inspection ---------------------------------------------------------------------------

    async def backlog(self) -> int:
        """Jobs published and not yet acknowledged (waiting or in flight)."""
        return len(self._jobs)

    async def dead_letters(self) -> list[Delivery]:
        """Jobs set aside (after ``max_deliveries`` deliveries, or refused), oldest first."""
        return list(self._dead)

    async def dead_letter_count(self) -> int:
        """How many jobs were set aside (the ``penguiflow_bus_dead_letters`` gauge)."""
        return len(self._dead)

    # -- internals ----------------------------------------------------------------------------

    def _take(self, consumer: str, max_jobs: int) -> list[Delivery]:
        now = time.monotonic()
        out: list[Delivery] = []
        due = [
            (job_id, f)
            for job_id, f in self._in_flight.items()
            if now - f.since >= self._visibility_timeout_s
        ]
        for job_id, held in due:
            if len(out) >= max_jobs:
                break
            held.attempt += 1
            text = self._jobs[job_id]
            if held.attempt > self.max_deliveries:
                del self._in_flight[job_id]
                del self._jobs[job_id]
                self._dead.append(
                    Delivery(
                        id=job_id,
                        job=decode_job(text),
                        consumer=consumer,
                        attempt=held.attempt,
                        reason=f"delivered {held.attempt} times",
                    )
                )
                _log.error("bus_dead_letters", ids=[job_id], max_deliveries=self.max_deliveries)
                continue
            held.consumer = consumer
            held.since = now
            delivery = self._checked(job_id, text, consumer, held.attempt)
            if delivery is not None:
                out.append(delivery)
        while self._waiting and len(out) < max_jobs:
            job_id = self._waiting.popleft()
            text = self._jobs[job_id]
            self._in_flight[job_id] = _InFlight(consumer=consumer, since=now, attempt=1)
            delivery = self._checked(job_id, text, consumer, 1)
            if delivery is not None:
                out.append(delivery)
        return out

    def _checked(self, job_id: str, text: str, consumer: str, attempt: int) -> Delivery | None:
        """The delivery of a job, or None when its signature is refused (it is a dead letter)."""
        job = decode_job(text)
        if self._signer is not None:
            job, reason = self._signer.check(job)
            if reason is not None:
                self._in_flight.pop(job_id, None)
                self._jobs.pop(job_id, None)
                self._dead.append(
                    Delivery(id=job_id, job=job, consumer=consumer, attempt=attempt, reason=reason)
                )
                _log.error("bus_job_refused", id=job_id, reason=reason)
                return None
        return Delivery(id=job_id, job=job, consumer=consumer, attempt=attempt)
