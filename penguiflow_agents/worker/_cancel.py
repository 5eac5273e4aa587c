"""Cancelling a run that executes in another process: a request in the run's event log.

``request_cancel`` appends a ``cancel_requested`` event ({"by": principal}) to
the run's log in the shared store; every ``Worker`` reads the logs of the runs
it executes every ``CANCEL_POLL_S`` and cancels the one asked for (its planner
records it as ``cancelled``, as for a cancel in the same process). A request
that reaches a run no worker executes right now (its worker died) is found by
the worker that takes it over. The request is an ordinary event, so the run's
event stream shows who asked.
"""

from __future__ import annotations

from penguiflow_agents.store import StateStore

__all__ = ["CANCEL_REQUESTED", "cancel_requested_by", "request_cancel"]

CANCEL_REQUESTED = "cancel_requested"


async def request_cancel(store: StateStore, tenant: str, run_id: str, *, by: str) -> int:
    """Ask the worker executing ``run_id`` to cancel it; the request's event sequence number.

    The caller checks first that the run is the tenant's and still running (the
    store would accept an event for any id)."""
    return await store.append_event(tenant, run_id, CANCEL_REQUESTED, {"by": by})


async def cancel_requested_by(
    store: StateStore, tenant: str, run_id: str, *, after_seq: int = 0
) -> tuple[str | None, int]:
    """(who asked to cancel the run after ``after_seq``, or None; the last seq read)."""
    last = after_seq
    by: str | None = None
    for event in await store.list_events(tenant, run_id, after_seq=after_seq):
        last = max(last, event.seq)
        if event.kind == CANCEL_REQUESTED and by is None:
            by = str(event.data.get("by") or "someone")
    return by, last
