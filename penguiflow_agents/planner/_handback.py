"""Whether a run whose store became unreachable is handed back rather than recorded as failed.

A worker (``penguiflow_agents.worker``) sets ``HAND_BACK_ON_STORE_OUTAGE`` around the
planner calls it makes for a bus job. When such a run (one this process claimed: it has an
owner and a lease) meets a ``StoreUnavailableError`` that the store's own retries did not
recover, the planner stops driving it without recording an outcome: the run stays
``running`` at its last checkpoint, the worker hands its claim back and leaves the job
unacknowledged, and the run is taken over (calls that were in flight and are not
idempotent come back as ``unknown``, never run twice). Anywhere else (the in-process
library path) the run ends ``failed`` with the store's reason, as before.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["HAND_BACK_ON_STORE_OUTAGE"]

HAND_BACK_ON_STORE_OUTAGE: ContextVar[bool] = ContextVar(
    "penguiflow_agents_hand_back_on_store_outage", default=False
)
