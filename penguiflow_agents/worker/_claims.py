"""The worker's view of a run's claim in the store: read it, and hand it back at shutdown.

A worker starts runs with ``ReactPlanner.run(claim=True)``: the run is held
under a lease (``claimed_by = "host:pid:token:boot_id:pid_namespace"``) renewed with a checkpoint
every step. Another process can take it over with ``resume`` once the lease
ran out, or at once when the holder is a dead process of the same host, boot and PID
namespace.
"""

from __future__ import annotations

from penguiflow_agents.exceptions import ConflictError, NotFoundError
from penguiflow_agents.planner._context import new_owner
from penguiflow_agents.store import RunRecord, StateStore

__all__ = ["TERMINAL", "get_run", "held_by_this_process", "release_claim"]

TERMINAL = ("completed", "failed", "cancelled")
# Compare-and-set attempts when handing a claim back while the planner writes too.
_RELEASE_ATTEMPTS = 3


def held_by_this_process(owner: str | None) -> bool:
    """Whether a claim owner (``host:pid:token:boot_id:pid_namespace``) is this very process."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) != 5:
        return False
    mine = new_owner().split(":")
    return parts[:2] == mine[:2] and parts[3:] == mine[3:]


async def get_run(store: StateStore, tenant: str, run_id: str) -> RunRecord | None:
    """The run, or None when the tenant has no run with that id (foreign ids included)."""
    try:
        return await store.get_run(tenant, run_id)
    except NotFoundError:
        return None


async def release_claim(store: StateStore, tenant: str, run_id: str) -> bool:
    """End this process's lease on a running run now, so another worker can take it over.

    The run keeps its status and its last checkpoint; the version bump makes
    every later write of the local planner fail its compare-and-set, so it
    cannot record anything (not even "cancelled") after the hand-back.
    Returns True when the claim was handed back.
    """
    for _attempt in range(_RELEASE_ATTEMPTS):
        record = await get_run(store, tenant, run_id)
        if (
            record is None
            or record.status != "running"
            or not held_by_this_process(record.claimed_by)
        ):
            return False
        record.claim_expires_at = 0.0
        try:
            await store.update_run(record, expected_version=record.version)
        except ConflictError:
            continue  # the planner checkpointed in between: read again
        return True
    return False
