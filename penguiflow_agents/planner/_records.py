"""Writing a run to the store: claim it for a resume, checkpoint, pause, finish.

Every write is a compare-and-set on the run's version, so a process that lost
its claim (a takeover after its lease ran out) notices instead of overwriting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from penguiflow_agents.exceptions import ConflictError, UserError
from penguiflow_agents.planner._context import Deps, Run, Stop, jsonable, new_owner, owner_is_dead
from penguiflow_agents.planner._state import STATE_VERSION
from penguiflow_agents.planner._types import Paused, RunResult
from penguiflow_agents.store._base import RunRecord

__all__ = [
    "TERMINAL",
    "checkpoint",
    "claim",
    "finish",
    "finish_quietly",
    "pause",
    "stored_result",
    "write",
]

# Longest wait for the store to record that a run was cancelled or crashed.
FINISH_TIMEOUT_S = 5.0
# Session history kept per (tenant, session id): the most recent messages.
_MAX_SESSION_MESSAGES = 200
TERMINAL = ("completed", "failed", "cancelled")


async def claim(deps: Deps, tenant: str, run_id: str) -> RunRecord | RunResult:
    """Take the run (compare-and-set in the store), or say why there is nothing to do."""
    store = deps.store
    lease = deps.claim_lease_s
    owner = new_owner()
    for _attempt in range(3):
        claimed = await store.claim_run(
            tenant, run_id, owner=owner, from_statuses=("paused",), lease_s=lease
        )
        if claimed is not None:
            return claimed
        current = await store.get_run(tenant, run_id)
        if current.status in TERMINAL:
            return stored_result(current)
        if current.status == "paused":
            continue  # another resume claimed and paused it again in between: retry
        if current.claimed_by is None:
            raise ConflictError(
                f"run {run_id!r} is still running in the process that started it; "
                "it can be resumed only after it pauses."
            )
        if owner_is_dead(current.claimed_by):
            # Its claimer died on this host (e.g. SIGKILL): take over without waiting for the lease.
            current.claimed_by = owner
            current.claim_expires_at = time.time() + lease
            try:
                return await store.update_run(current, expected_version=current.version)
            except ConflictError:
                continue
        raise ConflictError(
            f"run {run_id!r} is being resumed by another process right now "
            f"({current.claimed_by}); nothing was done here. Resume it again once that "
            "process has finished or paused."
        )
    raise ConflictError(
        f"run {run_id!r} kept changing while this process tried to claim it; resume it again."
    )


def stored_result(record: RunRecord) -> RunResult:
    stored = record.state.get("result") if isinstance(record.state, dict) else None
    if isinstance(stored, dict):
        return RunResult.from_dict(stored)
    return RunResult(status=record.status, run_id=record.run_id, model=record.model)


async def write(deps: Deps, run: Run, record: RunRecord) -> None:
    store = deps.store
    try:
        run.record = await store.update_run(record, expected_version=record.version)
    except UserError:  # a tool returned something that is not JSON: store its text form
        record.state = jsonable(record.state)
        run.record = await store.update_run(record, expected_version=record.version)


async def checkpoint(deps: Deps, run: Run) -> None:
    """Renew this process's claim and save the state, so a takeover starts from here."""
    record = run.record
    record.state = run.state.to_dict()
    record.claim_expires_at = time.time() + deps.claim_lease_s
    try:
        await write(deps, run, record)
    except ConflictError:
        run.lost = True
        raise Stop(
            "failed",
            "another process took this run over (this process's claim had expired); "
            "it stopped here so that no call runs twice.",
        ) from None


async def pause(deps: Deps, run: Run) -> RunResult:
    st = run.state
    assert st.paused is not None
    record = run.record
    record.status = "paused"
    record.state = st.to_dict()
    record.claimed_by = None
    record.claim_expires_at = None
    await write(deps, run, record)
    run.owner = None
    waiting = st.paused.waiting
    await deps.store.append_event(
        run.headers.tenant,
        run.run_id,
        "paused",
        {
            "step": st.paused.step,
            "approval_ids": [p.id for p in waiting],
            "call_ids": [p.call_id for p in waiting],
        },
    )
    if run.emit is not None:
        await run.emit(Paused(run_id=run.run_id, pending_approvals=tuple(waiting)))
    return st.result(run.run_id, "paused")


async def finish(
    deps: Deps, run: Run, status: str, *, answer: str | None = None, error: str | None = None
) -> RunResult:
    st = run.state
    st.paused = None
    result = st.result(run.run_id, status, answer=answer, error=error)
    if run.lost:
        return result
    store = deps.store
    tenant = run.headers.tenant
    record = run.record
    record.status = status
    record.state = {"v": STATE_VERSION, "result": result.to_dict()}
    record.claimed_by = None
    record.claim_expires_at = None
    await write(deps, run, record)
    run.owner = None
    await store.append_event(
        tenant,
        run.run_id,
        "run_finished",
        {
            "status": status,
            "error": error,
            "steps": len(st.steps),
            "prompt_tokens": st.usage.prompt_tokens,
            "completion_tokens": st.usage.completion_tokens,
            "cost": st.cost,
        },
    )
    if status == "completed" and st.session_id is not None and answer is not None:
        history = st.messages[1 : st.history_len]
        history.append({"role": "user", "content": st.query})
        history.append({"role": "assistant", "content": answer})
        await store.save_session(tenant, st.session_id, history[-_MAX_SESSION_MESSAGES:])
    return result


async def finish_quietly(deps: Deps, run: Run, status: str, error: str) -> None:
    """Record a cancelled or crashed run, within a time limit, shielded from a second cancel."""
    task = asyncio.ensure_future(finish(deps, run, status, error=error))
    with contextlib.suppress(BaseException):
        await asyncio.wait({task}, timeout=FINISH_TIMEOUT_S)
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()  # retrieved: a store failure here must not mask the original error
