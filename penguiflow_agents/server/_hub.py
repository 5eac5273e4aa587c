"""Wake-ups for readers of the store: event streams, ``?wait=true``, the approvals feed.

The store is the only source of truth: a reader always reads what it sends
from the store (``list_events`` after the last sequence number it sent), so
nothing is lost or sent twice whoever wrote it. The hub only says *when* to
read again: ``NotifyingStore`` wraps the server's store and wakes the waiters
of a run after every ``append_event`` of this process (and the waiters of a
tenant's approvals after approval requests and decisions). A run executing
on another worker is not seen by the hub: readers also re-read every
``poll_s`` seconds.

A waiter registers *before* it reads (``watch``), so an append that lands
between its read and its wait still wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from penguiflow_agents.store._base import (
    ApprovalDecision,
    ApprovalRecord,
    CallRecord,
    RunRecord,
    StateStore,
    StoredEvent,
)

__all__ = ["APPROVAL_KINDS", "EventHub", "NotifyingStore"]

# Event kinds that change a tenant's approvals list.
APPROVAL_KINDS = frozenset({"approval_requested", "approval_decided"})
_APPROVALS = "\x00approvals"  # the key of a tenant's approvals feed (never a run id)


class EventHub:
    """Waiters per (tenant, run id) and per tenant's approvals; ``notify`` wakes them all."""

    def __init__(self) -> None:
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def watch(self, tenant: str, run_id: str) -> Iterator[asyncio.Event]:
        """An event set at the next append to the run's log (re-armed by ``clear()``)."""
        key = (tenant, run_id)
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]

    def watch_approvals(self, tenant: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        return self.watch(tenant, _APPROVALS)

    def notify(self, tenant: str, run_id: str) -> None:
        for event in self._waiters.get((tenant, run_id), ()):
            event.set()

    def notify_approvals(self, tenant: str) -> None:
        self.notify(tenant, _APPROVALS)

    @property
    def waiting(self) -> int:
        """How many waiters are registered (for metrics and tests)."""
        return sum(len(w) for w in self._waiters.values())


async def wait_for(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passed; True if it was set. Clears it."""
    if not event.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
    was_set = event.is_set()
    event.clear()
    return was_set


class NotifyingStore:
    """A ``StateStore`` that tells an ``EventHub`` about every event appended through it.

    Every other attribute (methods other modules add to the stores) is the
    wrapped store's own.
    """

    def __init__(self, inner: StateStore, hub: EventHub) -> None:
        self.inner = inner
        self.hub = hub

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"NotifyingStore({self.inner!r})"

    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        seq = await self.inner.append_event(tenant, run_id, kind, data)
        self.hub.notify(tenant, run_id)
        if kind in APPROVAL_KINDS:
            self.hub.notify_approvals(tenant)
        return seq

    async def list_events(
        self, tenant: str, run_id: str, *, after_seq: int = 0
    ) -> list[StoredEvent]:
        return await self.inner.list_events(tenant, run_id, after_seq=after_seq)

    async def create_run(self, run: RunRecord) -> RunRecord:
        return await self.inner.create_run(run)

    async def get_run(self, tenant: str, run_id: str) -> RunRecord:
        return await self.inner.get_run(tenant, run_id)

    async def list_runs(self, tenant: str, *, status: str | None = None) -> list[RunRecord]:
        return await self.inner.list_runs(tenant, status=status)

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        return await self.inner.update_run(run, expected_version=expected_version)

    async def claim_run(
        self, tenant: str, run_id: str, *, owner: str, from_statuses: Sequence[str], lease_s: float
    ) -> RunRecord | None:
        return await self.inner.claim_run(
            tenant, run_id, owner=owner, from_statuses=from_statuses, lease_s=lease_s
        )

    async def load_session(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        return await self.inner.load_session(tenant, session_id)

    async def save_session(
        self, tenant: str, session_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> None:
        await self.inner.save_session(tenant, session_id, messages)

    async def create_approval(self, approval: ApprovalRecord) -> ApprovalRecord:
        stored = await self.inner.create_approval(approval)
        self.hub.notify_approvals(approval.tenant)
        return stored

    async def get_approval(self, tenant: str, approval_id: str) -> ApprovalRecord:
        return await self.inner.get_approval(tenant, approval_id)

    async def list_approvals(
        self, tenant: str, *, status: str | None = None, run_id: str | None = None
    ) -> list[ApprovalRecord]:
        return await self.inner.list_approvals(tenant, status=status, run_id=run_id)

    async def decide_approval(
        self, tenant: str, approval_id: str, decision: ApprovalDecision
    ) -> ApprovalRecord:
        decided = await self.inner.decide_approval(tenant, approval_id, decision)
        self.hub.notify_approvals(tenant)
        return decided

    async def begin_call(self, tenant: str, run_id: str, call_id: str) -> bool:
        return await self.inner.begin_call(tenant, run_id, call_id)

    async def finish_call(
        self, tenant: str, run_id: str, call_id: str, result: Mapping[str, Any]
    ) -> None:
        await self.inner.finish_call(tenant, run_id, call_id, result)

    async def get_call(self, tenant: str, run_id: str, call_id: str) -> CallRecord | None:
        return await self.inner.get_call(tenant, run_id, call_id)

    async def aclose(self) -> None:
        await self.inner.aclose()
