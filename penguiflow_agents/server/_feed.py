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
from penguiflow_agents.store._base import ApprovalRecord

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


# (time in µs, approval id, request 0 / decision or expiry 1, event kind, the record)
_Change = tuple[int, str, int, str, ApprovalRecord]


def _us(ts: float) -> int:
    return round(ts * 1_000_000)


def _changes_after(records: list[ApprovalRecord], after: int, now: float) -> list[_Change]:
    """Every change of ``records`` stamped after ``after`` (µs) and already true at ``now``,
    in the order of their times (then approval id, then request before decision)."""
    out: list[_Change] = []
    for record in records:
        if _us(record.created_at) > after:
            out.append((_us(record.created_at), record.id, 0, "approval_requested", record))
        if record.decision is not None and _us(record.decision.decided_at) > after:
            out.append((_us(record.decision.decided_at), record.id, 1, "approval_decided", record))
        elif record.status == "expired" and _us(record.expires_at) > after:
            out.append((_us(record.expires_at), record.id, 1, "approval_expired", record))
    return sorted(out, key=lambda c: c[:3])


async def approval_changes(
    state: ServerState, who: Caller, *, after: int | None = None
) -> AsyncIterator[tuple[str, Any, int]]:
    """``(kind, approval document, event id)`` for the caller's tenant; ``("keepalive", None,
    0)`` when quiet.

    Without ``after``: first every pending request (``approval_requested``), then each new
    request, decision (``approval_decided``) and expiry (``approval_expired``) as it happens.
    With ``after`` (a ``Last-Event-ID``): first every change stamped after it, in order (a
    request and its decision both, if it was decided meanwhile), then live as above.

    An event's id is the time of its change in microseconds (a request's ``created_at``, a
    decision's ``decided_at``, an expiry's ``expires_at``), never lower than the previous id
    of the connection: resuming after an id sends no change the client already had.
    """
    tenant = who.tenant
    service = state.approvals
    seen: dict[str, _Seen] = {}
    last = 0
    quiet_since = time.monotonic()

    def next_id(ts: float) -> int:
        nonlocal last
        last = max(last + 1, _us(ts))
        return last

    with state.hub.watch_approvals(tenant) as woken:
        if after is not None:
            last = after
            every = await service.list(tenant)
            for _t, _id, _o, kind, record in _changes_after(every, after, time.time()):
                ts = _t / 1_000_000
                yield kind, approval_document(record, service, who), next_id(ts)
            # live from here: the pending ones are known to the client now
            seen = {r.id: _Seen(status="pending") for r in every if r.status == "pending"}
        while True:
            sent = False
            pending = await service.list(tenant, status="pending")
            current = {r.id for r in pending}
            for record in pending:
                if record.id not in seen:
                    seen[record.id] = _Seen(status="pending")
                    sent = True
                    yield (
                        "approval_requested",
                        approval_document(record, service, who),
                        next_id(record.created_at),
                    )
            for approval_id in [i for i in seen if i not in current]:
                del seen[approval_id]
                try:
                    record = await service.get(tenant, approval_id)
                except Exception:  # gone from the store: nothing to tell
                    continue
                if record.status == "expired":
                    kind, at = "approval_expired", record.expires_at
                else:
                    kind = "approval_decided"
                    at = record.decision.decided_at if record.decision else time.time()
                sent = True
                yield kind, approval_document(record, service, who), next_id(at)
            now = time.monotonic()
            if sent:
                quiet_since = now
            elif now - quiet_since >= SSE_KEEPALIVE_S:
                quiet_since = now
                yield "keepalive", None, 0
            await wait_for(woken, state.settings.poll_s)
