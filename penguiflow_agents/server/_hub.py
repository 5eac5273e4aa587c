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
    OutboxEntry,
    StateStore,
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

    Every other method is the wrapped store's own (looked up on it), so the
    wrapper follows whatever the stores grow. Approval requests and decisions
    wake the tenant's approvals feed through the events the approvals service
    appends for them (``approval_requested``, ``approval_decided``).
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

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        seqs = await self.inner.append_events(tenant, run_id, events)
        self.hub.notify(tenant, run_id)
        if any(kind in APPROVAL_KINDS for kind, _ in events):
            self.hub.notify_approvals(tenant)
        return seqs

    async def create_approval(
        self,
        approval: ApprovalRecord,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        # The approvals service writes a request's audit event in the request's transaction.
        stored = await self.inner.create_approval(approval, outbox=outbox, events=events)
        self._notify_all(stored.tenant, stored.run_id, events)
        return stored

    async def decide_approval(
        self,
        tenant: str,
        approval_id: str,
        decision: ApprovalDecision,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        decided = await self.inner.decide_approval(
            tenant, approval_id, decision, outbox=outbox, events=events
        )
        self._notify_all(tenant, decided.run_id, events)
        return decided

    def _notify_all(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> None:
        if events:
            self.hub.notify(tenant, run_id)
        if any(kind in APPROVAL_KINDS for kind, _ in events):
            self.hub.notify_approvals(tenant)

    async def aclose(self) -> None:
        await self.inner.aclose()
