"""Following the store: a run's events in order, and a tenant's approvals as they change.

Both read the store only (see ``_hub``): a run's events are
``list_events(after_seq=last sent)``, so a reader that reconnects with the
last id it got misses nothing and gets nothing twice, wherever the run
executes. The hub wakes readers at once for runs of this process; every
``poll_s`` they read again anyway (runs on other workers).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from penguiflow_agents.server._auth import Caller
from penguiflow_agents.server._documents import approval_document
from penguiflow_agents.server._hub import wait_for
from penguiflow_agents.server._state import ServerState
from penguiflow_agents.store import StoredEvent

__all__ = ["END_KINDS", "SSE_KEEPALIVE_S", "approval_changes", "follow_run", "sse"]

# A run's event stream ends after one of these.
END_KINDS = frozenset({"paused", "run_finished"})
# A comment line is sent after this many quiet seconds, so proxies keep the stream open.
SSE_KEEPALIVE_S = 15.0
_TERMINAL = ("completed", "failed", "cancelled")


def sse(event_id: int | str | None, kind: str, data: Any) -> bytes:
    """One Server-Sent Event: ``id:``, ``event:``, one ``data:`` line of JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"{head}event: {kind}\ndata: {body}\n\n".encode()


async def follow_run(
    state: ServerState, tenant: str, run_id: str, *, after_seq: int = 0, stop_at_end: bool = True
) -> AsyncIterator[StoredEvent | None]:
    """The run's events after ``after_seq``, in order, as they are written.

    Ends after ``paused`` or ``run_finished`` (``stop_at_end``), or when
    nothing follows ``after_seq`` in a run that has ended. Yields ``None``
    after ``SSE_KEEPALIVE_S`` quiet seconds (time for a keep-alive).
    """
    last = after_seq
    checked_end = False
    quiet_since = time.monotonic()
    with state.hub.watch(tenant, run_id) as woken:
        while True:
            events = await state.store.list_events(tenant, run_id, after_seq=last)
            for event in events:
                last = event.seq
                yield event
                if stop_at_end and event.kind in END_KINDS:
                    return
            if events:
                quiet_since = time.monotonic()
            elif not checked_end:
                checked_end = True
                if await _has_ended(state, tenant, run_id):
                    return
            if time.monotonic() - quiet_since >= SSE_KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield None
            await wait_for(woken, state.settings.poll_s)


async def _has_ended(state: ServerState, tenant: str, run_id: str) -> bool:
    from penguiflow_agents.exceptions import NotFoundError

    try:
        record = await state.store.get_run(tenant, run_id)
    except NotFoundError:
        return False
    return record.status in _TERMINAL


@dataclass(slots=True)
class _Seen:
    status: str


async def approval_changes(state: ServerState, who: Caller) -> AsyncIterator[tuple[str, Any]]:
    """``(kind, approval document)`` for the caller's tenant: first every pending request
    (``approval_requested``), then each new request, decision (``approval_decided``) and
    expiry (``approval_expired``) as it happens; ``("keepalive", None)`` when quiet."""
    tenant = who.tenant
    service = state.approvals
    seen: dict[str, _Seen] = {}
    quiet_since = time.monotonic()
    with state.hub.watch_approvals(tenant) as woken:
        while True:
            sent = False
            pending = await service.list(tenant, status="pending")
            current = {r.id for r in pending}
            for record in pending:
                if record.id not in seen:
                    seen[record.id] = _Seen(status="pending")
                    sent = True
                    yield "approval_requested", approval_document(record, service, who)
            for approval_id in [i for i in seen if i not in current]:
                del seen[approval_id]
                try:
                    record = await service.get(tenant, approval_id)
                except Exception:  # gone from the store: nothing to tell
                    continue
                kind = "approval_expired" if record.status == "expired" else "approval_decided"
                sent = True
                yield kind, approval_document(record, service, who)
            now = time.monotonic()
            if sent:
                quiet_since = now
            elif now - quiet_since >= SSE_KEEPALIVE_S:
                quiet_since = now
                yield "keepalive", None
            await wait_for(woken, state.settings.poll_s)
