"""Writing a run to the store: claim it, checkpoint it, keep its lease alive, pause, finish.

A run is held by the process that executes it: ``claimed_by`` names the
owner (``host:pid:token:boot_id:pid_namespace``) and ``claim_expires_at`` ends its lease. The owner
checkpoints the run's state after every model turn and every step, and a
heartbeat renews the lease while the run is alive, so when the owner dies
another process can take the run over (``claim``) from its last checkpoint:
at once when the dead owner was on the same host, else once the lease ran out.

Every write is a compare-and-set on the run's version, so a process that lost
its claim (a takeover after its lease ran out, a worker handing it back)
notices instead of overwriting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pydantic_core

from penguiflow_agents._identity import Headers, session_key
from penguiflow_agents.exceptions import ConflictError, PenguiflowError, UserError
from penguiflow_agents.planner._context import Deps, Run, Stop, jsonable, new_owner, owner_is_dead
from penguiflow_agents.planner._state import STATE_VERSION, RunState
from penguiflow_agents.planner._types import Paused, RunResult
from penguiflow_agents.store._base import RunRecord
from penguiflow_agents.store._codec import EncodedRunRecord, encoded_run

__all__ = [
    "TERMINAL",
    "Heartbeat",
    "beat",
    "cancel_paused",
    "checkpoint",
    "claim",
    "encode_state",
    "finish",
    "finish_quietly",
    "pause",
    "stage",
    "stored_result",
    "write",
]

logger = logging.getLogger("penguiflow_agents.planner")

# Longest wait for the store to record that a run was cancelled or crashed.
FINISH_TIMEOUT_S = 5.0
# Longest wait for one heartbeat write; a slower store is retried at the next beat.
HEARTBEAT_WRITE_TIMEOUT_S = 5.0
# Session history kept per (tenant, session id): the most recent messages.
_MAX_SESSION_MESSAGES = 200
TERMINAL = ("completed", "failed", "cancelled")

_LOST = (
    "another process took this run over (this process's claim had expired or was handed "
    "back); it stopped here so that no call runs twice."
)


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0.0, UTC).isoformat(timespec="seconds")


async def claim(deps: Deps, tenant: str, run_id: str) -> RunRecord | RunResult:
    """Take the run (compare-and-set in the store), or say why there is nothing to do.

    A paused run is claimed when it is resumed; a running run only when its
    owner is gone: its lease ran out, or it is a dead process of this host.
    """
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
                f"run {run_id!r} is still running in the process that started it, which holds "
                "no claim on it (it was started with claim=False); it can be resumed only "
                "after it pauses."
            )
        if owner_is_dead(current.claimed_by):
            # Its owner died on this host (e.g. SIGKILL): take over without waiting for the lease.
            current.claimed_by = owner
            current.claim_expires_at = time.time() + lease
            try:
                return await store.update_run(current, expected_version=current.version)
            except ConflictError:
                continue
        raise ConflictError(
            f"run {run_id!r} is being executed by another live process right now "
            f"({current.claimed_by}, lease until {_iso(current.claim_expires_at)}); nothing was "
            "done here. If that process died, resume the run again once its lease has run out."
        )
    raise ConflictError(
        f"run {run_id!r} kept changing while this process tried to claim it; resume it again."
    )


def encode_state(state: dict[str, Any]) -> str:
    """The JSON text of a run's state, as a store keeps it.

    pydantic-core's encoder (4-5x the standard library's here: a checkpoint is
    mostly this); a value it cannot encode (a tool returned something that is
    not JSON) is stored in its text form, as ``jsonable`` gives it.
    """
    try:
        return pydantic_core.to_json(state).decode()
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError):
        return pydantic_core.to_json(jsonable(state)).decode()


def stage(record: RunRecord, state: dict[str, Any] | RunState) -> RunRecord:
    """``record`` with ``state`` encoded (a store writes the text as is; nothing decodes it back
    unless someone reads the record's state): ``record`` itself when it can carry the text.
    A ``RunState`` encodes only what it did not encode before (``RunState.json_text``)."""
    if isinstance(state, RunState):
        try:
            text = state.json_text()
        except (pydantic_core.PydanticSerializationError, ValueError, TypeError):
            text = encode_state(state.to_dict())
    else:
        text = encode_state(state)
    if isinstance(record, EncodedRunRecord):
        record.state_text = text
        return record
    return encoded_run(record, roles=list(record.roles), state_text=text)


def stored_result(record: RunRecord) -> RunResult:
    stored = record.state.get("result") if isinstance(record.state, dict) else None
    if isinstance(stored, dict):
        return RunResult.from_dict(stored)
    return RunResult(status=record.status, run_id=record.run_id, model=record.model)


async def write(deps: Deps, run: Run, record: RunRecord) -> None:
    """Compare-and-set ``record`` (which must be ``run.record``); the caller holds ``run.lock``.

    A conflict with a write of our own whose answer we never saw (a heartbeat cut
    by its time limit while the store still wrote) is recognised by the record
    still naming this process's claim, unexpired, and the write is retried on
    top of it. Any other conflict is raised: the run is no longer ours.
    """
    try:
        run.record = await deps.store.update_run(record, expected_version=record.version)
    except (UserError, ConflictError) as exc:
        await write_again(deps, run, record, exc)


async def write_again(
    deps: Deps, run: Run, record: RunRecord, failed: UserError | ConflictError
) -> None:
    """``write`` after its first ``update_run`` of ``record`` raised ``failed``."""
    store = deps.store
    if not isinstance(failed, ConflictError):  # a tool returned something that is not JSON
        record.state = jsonable(record.state)  # store its text form
        run.record = await store.update_run(record, expected_version=record.version)
        return
    current = await store.get_run(record.tenant, record.run_id)
    still_ours = (
        run.owner is not None
        and current.status == "running"
        and current.claimed_by == run.owner
        and (current.claim_expires_at or 0.0) > time.time()
    )
    if not still_ours:
        raise failed
    record.version = current.version
    run.record = await store.update_run(record, expected_version=record.version)


async def checkpoint(deps: Deps, run: Run) -> None:
    """Save the state and renew this process's lease, so a takeover starts from here."""
    if run.owner is None:
        return
    async with run.lock:
        record = run.record = stage(run.record, run.state)
        record.claim_expires_at = time.time() + deps.claim_lease_s
        try:
            try:  # write(), inline: one coroutine less per checkpoint
                run.record = await deps.store.update_run(record, expected_version=record.version)
            except (UserError, ConflictError) as exc:
                await write_again(deps, run, record, exc)
        except ConflictError:
            run.lost = True
            raise Stop("failed", _LOST) from None


class Heartbeat:
    """Every ``interval_s``: renew the lease (with the state as it is) while this process owns
    the run. Stops when the run is no longer ours; a store failure is retried at the next beat.

    A timer between beats, and a task only while a beat writes: a sleeping task per run
    (created, cancelled and awaited once per run) costs more than the beats themselves
    when runs are short, as most are next to a 10 s beat.
    """

    __slots__ = ("_deps", "_handle", "_interval", "_loop", "_run", "_stopped", "_task")

    def __init__(self, deps: Deps, run: Run, interval_s: float) -> None:
        self._deps = deps
        self._run = run
        self._interval = interval_s
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        # The timer's callback runs in a copy of this context (as a task created here would).
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(interval_s, self._fire)

    def _fire(self) -> None:
        self._handle = None
        if not self._stopped:
            self._task = self._loop.create_task(self._beat(), name=f"heartbeat:{self._run.run_id}")

    async def _beat(self) -> None:
        try:
            again = await beat(self._deps, self._run, self._interval)
        finally:
            self._task = None
        if again and not self._stopped:
            self._handle = self._loop.call_later(self._interval, self._fire)

    async def stop(self, timeout_s: float) -> None:
        """No more beats; a beat writing right now is cancelled (waited for up to ``timeout_s``)."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task = self._task
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=timeout_s)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved; a failing heartbeat already logged why


async def beat(deps: Deps, run: Run, interval_s: float) -> bool:
    """One heartbeat: renew the lease with the state as it is; False once the run is not ours."""
    async with run.lock:
        record = run.record
        if run.lost or run.owner is None or record.claimed_by != run.owner:
            return False
        if record.status != "running":
            return False
        record = run.record = stage(record, run.state)
        record.claim_expires_at = time.time() + deps.claim_lease_s
        try:
            async with asyncio.timeout(HEARTBEAT_WRITE_TIMEOUT_S):
                await write(deps, run, record)
        except ConflictError:
            run.lost = True  # the next checkpoint stops the run
            logger.warning("run %s: lost its claim to another process", run.run_id)
            return False
        except (TimeoutError, PenguiflowError) as exc:
            logger.warning(
                "run %s: could not renew its claim (%s); retrying in %.1f s",
                run.run_id,
                exc or type(exc).__name__,
                interval_s,
            )
        except Exception:  # never let the heartbeat die silently while the run goes on
            logger.exception("run %s: the heartbeat failed; retrying", run.run_id)
    return True


async def pause(deps: Deps, run: Run) -> RunResult:
    st = run.state
    assert st.paused is not None
    st.inflight = None
    async with run.lock:
        record = run.record = stage(run.record, st)
        record.status = "paused"
        record.claimed_by = None
        record.claim_expires_at = None
        try:
            await write(deps, run, record)
        except ConflictError:
            run.lost = True
            raise ConflictError(f"run {run.run_id!r} could not be paused: {_LOST}") from None
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
            "pending_approvals": [jsonable(p.to_dict()) for p in waiting],
        },
    )
    if run.listening:
        await run.publish(Paused(run_id=run.run_id, pending_approvals=tuple(waiting)))
    return st.result(run.run_id, "paused")


async def finish(
    deps: Deps,
    run: Run,
    status: str,
    *,
    answer: str | None = None,
    error: str | None = None,
    output: Any = None,
) -> RunResult:
    st = run.state
    st.paused = None
    st.inflight = None
    result = st.result(run.run_id, status, answer=answer, error=error, output=output)
    if run.lost:
        return result
    store = deps.store
    tenant = run.headers.tenant
    async with run.lock:
        record = run.record = stage(run.record, {"v": STATE_VERSION, "result": result.to_dict()})
        record.status = status
        record.claimed_by = None
        record.claim_expires_at = None
        try:
            await write(deps, run, record)
        except ConflictError:
            run.lost = True
            raise ConflictError(
                f"run {run.run_id!r} could not be recorded as {status}: {_LOST}"
            ) from None
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
        key = session_key(run.headers.principal, st.session_id)
        await store.save_session(tenant, key, history[-_MAX_SESSION_MESSAGES:])
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


async def cancel_paused(
    deps: Deps, headers: Headers, run_id: str, *, reason: str | None = None
) -> RunResult:
    """End a paused run as cancelled (see ``ReactPlanner.cancel``)."""
    store = deps.store
    owner = new_owner()
    claimed = await store.claim_run(
        headers.tenant, run_id, owner=owner, from_statuses=("paused",), lease_s=deps.claim_lease_s
    )
    if claimed is None:
        current = await store.get_run(headers.tenant, run_id)
        if current.status in TERMINAL:
            return stored_result(current)
        raise ConflictError(
            f"run {run_id!r} is executing right now, so it cannot be cancelled from here; "
            "cancel it where it runs, or once it has paused."
        )
    state = RunState.from_dict(claimed.state, run_id=run_id)
    run = Run(
        run_id=run_id,
        headers=Headers(tenant=claimed.tenant, principal=claimed.principal, roles=claimed.roles),
        trace_id=state.trace_id or run_id,
        deadline=None,
        deadline_s=None,
        record=claimed,
        state=state,
        owner=owner,
    )
    why = reason or f"the run was cancelled by {headers.principal!r}."
    return await finish(deps, run, "cancelled", error=why)
