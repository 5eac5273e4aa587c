"""The planner's loop hosted by another engine (a Temporal workflow): start, advance, proceed.

``ReactPlanner.run``/``resume`` own a run's durability themselves (a claim,
checkpoints, a heartbeat, a takeover from the store). An engine with its own
durable execution keeps the run's state in its own memory instead and only
asks the planner to take the next stretch of the *same* loop:

    run = await start(planner, query, headers=headers, run_id=workflow_id)
    result = await advance(planner, run)         # until an answer, a failure or a pause
    while result.status == "paused":
        ...                                      # wait for decisions (or expiry)
        result = await proceed(planner, run)     # settle the paused step, go on

No claim is taken and no checkpoint written (the engine's history is the
checkpoint); the run record, its events, approvals and results go to the
planner's store exactly as in-process, so ``runs show`` and the event stream
read the same on both engines. The planner may be a new one for every stretch
(say, with reloaded policies); the run carries its state and clock.
"""

from __future__ import annotations

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner._context import Run
from penguiflow_agents.planner._planner import ReactPlanner
from penguiflow_agents.planner._records import finish, write
from penguiflow_agents.planner._types import RunResult

__all__ = ["advance", "cancel", "proceed", "start"]


async def start(
    planner: ReactPlanner,
    query: str,
    *,
    headers: Headers,
    run_id: str,
    session_id: str | None = None,
    trace_id: str | None = None,
) -> Run:
    """Record a new run (``run_started``) and return it, ready to ``advance``.

    With the planner's ``record_events``, every event of the run is written to
    its event log, as for ``ReactPlanner.run``.
    """
    emit = planner._recording(headers, None)
    return await planner._start(query, headers, session_id, run_id, trace_id, None, emit, False)


async def advance(planner: ReactPlanner, run: Run) -> RunResult:
    """Model turns until the run completes, fails or pauses (recorded in the store)."""
    return await planner._drive(run, planner._loop(run))


async def proceed(planner: ReactPlanner, run: Run, *, by: Headers | None = None) -> RunResult:
    """Go on with a paused run: it is running again (``resumed``, with a fresh deadline),
    its decided calls are settled, and the loop continues (or pauses again)."""
    # The run's events go through this stretch's planner (its store, and the EventBuffer
    # that its direct writes flush), not the one the run started with.
    run.emit = planner._recording(run.headers, None)
    record = run.record
    record.status = "running"
    await write(planner._deps, run, record)
    run.deadline, run.deadline_s = planner._deadline(None)
    who = by or run.headers
    await planner.store.append_event(
        run.headers.tenant,
        run.run_id,
        "resumed",
        {"by": who.principal, "roles": list(who.roles), "owner": None},
    )
    return await planner._drive(run, planner._continue(run))


async def cancel(planner: ReactPlanner, run: Run, reason: str) -> RunResult:
    """Record a paused run as cancelled (a run in a stretch is cancelled by cancelling it)."""
    return await finish(planner._deps, run, "cancelled", error=reason)
