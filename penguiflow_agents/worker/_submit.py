"""The submitter's side: put a run or resume job on the bus, then wait for the run in the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from penguiflow_agents._identity import Headers
from penguiflow_agents.bus import MessageBus
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.planner import RunResult
from penguiflow_agents.planner._state import RunState
from penguiflow_agents.store import RunRecord, StateStore
from penguiflow_agents.worker._claims import TERMINAL, get_run
from penguiflow_agents.worker._job import Job

__all__ = ["result_of", "submit", "submit_resume", "submit_run", "wait_for_run"]

# Polling of the store while waiting: the first interval, doubling up to the second.
WAIT_POLL_S = (0.02, 0.5)


async def submit(bus: MessageBus, job: Job) -> Job:
    """Publish ``job``; returns it (``job.run_id`` is the run to wait for)."""
    await bus.publish(job.to_dict())
    return job


async def submit_run(
    bus: MessageBus,
    query: str,
    *,
    headers: Headers,
    model: str | None = None,
    session_id: str | None = None,
    run_id: str | None = None,
    trace: Mapping[str, str] | None = None,
) -> Job:
    """Enqueue a new run of ``query`` as ``headers`` (a fresh run id unless one is given).

    ``trace``: the submitter's W3C trace context (``Telemetry.carrier()``): the worker's
    spans of the run join that trace.
    """
    job = Job.run(
        query, headers=headers, run_id=run_id, model=model, session_id=session_id, trace=trace
    )
    return await submit(bus, job)


async def submit_resume(
    bus: MessageBus, run_id: str, *, headers: Headers, trace: Mapping[str, str] | None = None
) -> Job:
    """Enqueue the resume of a paused run (after its approvals were decided)."""
    return await submit(bus, Job.resume(run_id, headers=headers, trace=trace))


def result_of(record: RunRecord) -> RunResult | None:
    """The result a stored run stands at: ended or paused; None while it runs."""
    if record.status in TERMINAL:
        stored = record.state.get("result") if isinstance(record.state, dict) else None
        if isinstance(stored, dict):
            return RunResult.from_dict(stored)
        return RunResult(status=record.status, run_id=record.run_id, model=record.model)
    if record.status == "paused":
        return RunState.from_dict(record.state, run_id=record.run_id).result(
            record.run_id, "paused"
        )
    return None


async def wait_for_run(
    store: StateStore,
    tenant: str,
    run_id: str,
    *,
    timeout_s: float = 600.0,
    after_version: int | None = None,
) -> RunResult:
    """Poll the store until the run has ended or paused; returns its result.

    A run not yet in the store is still queued. ``after_version`` ignores the
    record until its version is higher (wait for a resume of a paused run:
    pass the version read before submitting). ``TimeoutError`` after
    ``timeout_s``, saying where the run stands.
    """
    if not timeout_s > 0:
        raise UserError(f"wait_for_run timeout_s must be positive, got {timeout_s!r}.")
    deadline = time.monotonic() + timeout_s
    poll = WAIT_POLL_S[0]
    where = "queued (no worker has started it)"
    while True:
        record = await get_run(store, tenant, run_id)
        if record is not None:
            where = record.status
            if after_version is None or record.version > after_version:
                result = result_of(record)
                if result is not None:
                    return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"run {run_id!r} of tenant {tenant!r} is still {where} after {timeout_s} s; "
                "check that workers are running on the same bus and store, or wait longer."
            )
        await asyncio.sleep(min(poll, left))
        poll = min(poll * 2, WAIT_POLL_S[1])
