"""Where runs execute: in the server process (``LocalExecutor``) or on workers (``BusExecutor``).

One small interface (``RunExecutor``) with the four things the routes need:
start a run, resume one, cancel one, and count a key's runs in progress.
Both execute through the public API the CLI uses: ``ReactPlanner.run`` /
``resume`` / ``cancel`` here, ``submit_run`` / ``submit_resume`` for workers.
Runs are recorded in the store either way, so everything else (documents,
event streams) reads the store and does not care where a run executes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog

from penguiflow_agents._identity import Headers
from penguiflow_agents.bus import MessageBus
from penguiflow_agents.exceptions import ConflictError, NotFoundError, UserError
from penguiflow_agents.planner import ReactPlanner, RunResult
from penguiflow_agents.planner._context import owner_is_dead
from penguiflow_agents.planner._planner import model_name
from penguiflow_agents.server._hub import EventHub, wait_for
from penguiflow_agents.store import StateStore
from penguiflow_agents.store._base import ApprovalRecord
from penguiflow_agents.worker import new_run_id, request_cancel, submit_resume, submit_run
from penguiflow_agents.worker._submit import result_of

__all__ = [
    "BusExecutor",
    "DecidesApprovals",
    "LocalExecutor",
    "Planners",
    "RunExecutor",
    "RunRequest",
]

_log = structlog.get_logger("penguiflow_agents.server")

# Planners kept open, one per model (the default and the allowed ones).
MAX_PLANNERS = 16
# Longest wait for a run started here to be recorded in the store before answering 202.
START_TIMEOUT_S = 30.0
# Longest wait for cancelled runs to record themselves when the server stops.
STOP_TIMEOUT_S = 10.0
# Longest wait for a worker to stop a run it was asked to cancel (it reads the request within
# a second or so; a dead worker's run is cancelled by the worker that takes it over).
REMOTE_CANCEL_WAIT_S = 30.0
# How often the run is read while waiting for its worker to cancel it.
REMOTE_CANCEL_POLL_S = 0.1
_ENDED = ("completed", "failed", "cancelled")


class Planners:
    """Planners by model, opened on first use with ``factory`` and closed with the server."""

    def __init__(
        self,
        factory: Any,  # Callable[[str | None], AbstractAsyncContextManager[ReactPlanner]]
        stack: AsyncExitStack,
    ) -> None:
        self._factory = factory
        self._stack = stack
        self._by_model: dict[str | None, ReactPlanner] = {}
        self._lock = asyncio.Lock()

    async def get(self, model: str | None = None) -> ReactPlanner:
        """The planner for ``model`` (None: the server's default model)."""
        found = self._by_model.get(model)
        if found is not None:
            return found
        async with self._lock:
            found = self._by_model.get(model)
            if found is None:
                if len(self._by_model) >= MAX_PLANNERS:
                    raise UserError(
                        f"the server already has {MAX_PLANNERS} models open; "
                        f"{model!r} cannot be opened too."
                    )
                cm: AbstractAsyncContextManager[ReactPlanner] = self._factory(model)
                found = await self._stack.enter_async_context(cm)
                self._by_model[model] = found
                # A run records its model by name: resuming it finds this same planner.
                self._by_model.setdefault(model_name(found.llm), found)
            return found


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    query: str
    headers: Headers  # who the run executes as
    key_id: str  # whose limits it counts against
    model: str | None = None
    session_id: str | None = None
    trace: Mapping[str, str] | None = None  # the W3C trace context the run continues
    run_id: str | None = None  # the id already admitted by the tenant's quotas, else a new one


class RunExecutor(Protocol):
    async def start(self, request: RunRequest) -> str:
        """Start a run; returns its id once GET /v1/runs/{id} can find it."""
        ...

    async def resume(self, tenant: str, run_id: str, *, headers: Headers, key_id: str) -> None:
        """Continue a paused run (ConflictError while it executes; nothing if it ended)."""
        ...

    async def cancel(self, tenant: str, run_id: str, *, headers: Headers) -> None:
        """Cancel a run executing here or paused (ConflictError if it executes elsewhere)."""
        ...

    async def active(self, key_id: str) -> int:
        """Runs of ``key_id`` started through this server that are still executing."""
        ...

    def is_queued(self, tenant: str, run_id: str) -> bool:
        """Accepted here but not in the store yet (a job no worker has taken)."""
        ...

    async def settled(self, tenant: str, run_id: str) -> bool:
        """Wait until a run executing in this process ends or pauses; False (at once) when
        it does not execute here (then follow its events in the store)."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class DecidesApprovals(Protocol):
    """An executor whose runs take their approval decisions themselves (Temporal's
    ``TemporalExecutor``): the decision route hands the decision to ``decide`` instead
    of recording it in the store and resuming the run."""

    async def decide(
        self,
        *,
        tenant: str,
        approval_id: str,
        principal: str,
        roles: Sequence[str],
        decision: str,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> ApprovalRecord: ...


async def _check_resumable(store: StateStore, tenant: str, run_id: str) -> bool:
    """False when the run has ended (nothing to do); ConflictError while someone executes it."""
    record = await store.get_run(tenant, run_id)
    if result_of(record) is not None and record.status != "paused":
        return False
    if record.status == "running":
        lease_live = (record.claim_expires_at or 0.0) > time.time()
        if record.claimed_by is None or (lease_live and not owner_is_dead(record.claimed_by)):
            raise ConflictError(
                f"run {run_id!r} is executing right now; resume it once it has paused."
            )
    return True


class LocalExecutor:
    """Runs execute as tasks of this process (bounded by the per-key limits)."""

    def __init__(self, planners: Planners, store: StateStore, hub: EventHub) -> None:
        self._planners = planners
        self._store = store
        self._hub = hub
        self._tasks: dict[tuple[str, str], tuple[asyncio.Task[Any], str]] = {}

    async def active(self, key_id: str) -> int:
        return sum(1 for _, owner in self._tasks.values() if owner == key_id)

    def is_queued(self, tenant: str, run_id: str) -> bool:
        return False

    async def settled(self, tenant: str, run_id: str) -> bool:
        entry = self._tasks.get((tenant, run_id))
        if entry is None:
            return False
        await asyncio.wait({entry[0]})
        return True

    def _spawn(
        self, tenant: str, run_id: str, key_id: str, body: Coroutine[Any, Any, RunResult]
    ) -> asyncio.Task[Any]:
        key = (tenant, run_id)
        task = asyncio.create_task(body, name=f"run:{run_id}")
        self._tasks[key] = (task, key_id)

        def done(t: asyncio.Task[Any]) -> None:
            if self._tasks.get(key, (None, ""))[0] is t:
                del self._tasks[key]
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                _log.warning("run.task_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}")

        task.add_done_callback(done)
        return task

    async def start(self, request: RunRequest) -> str:
        planner = await self._planners.get(request.model)
        run_id = request.run_id or new_run_id()
        tenant = request.headers.tenant
        with self._hub.watch(tenant, run_id) as recorded:
            task = self._spawn(
                tenant,
                run_id,
                request.key_id,
                planner.run(
                    request.query,
                    headers=request.headers,
                    session_id=request.session_id,
                    run_id=run_id,
                    trace_carrier=request.trace,
                ),
            )
            waiter = asyncio.ensure_future(wait_for(recorded, START_TIMEOUT_S))
            try:
                await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        return run_id

    async def resume(self, tenant: str, run_id: str, *, headers: Headers, key_id: str) -> None:
        if (tenant, run_id) in self._tasks:
            raise ConflictError(
                f"run {run_id!r} is executing right now; resume it once it has paused."
            )
        if not await _check_resumable(self._store, tenant, run_id):
            return
        record = await self._store.get_run(tenant, run_id)
        planner = await self._planners.get(record.model or None)
        self._spawn(tenant, run_id, key_id, planner.resume(run_id, headers=headers))

    async def cancel(self, tenant: str, run_id: str, *, headers: Headers) -> None:
        entry = self._tasks.get((tenant, run_id))
        if entry is not None:
            task = entry[0]
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
            return
        planner = await self._planners.get(None)
        await planner.cancel(run_id, headers=headers)

    async def aclose(self) -> None:
        tasks = [t for t, _ in self._tasks.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)


class BusExecutor:
    """Runs are jobs on a message bus for ``penguiflow-agents worker`` processes."""

    def __init__(self, bus: MessageBus, planners: Planners, store: StateStore) -> None:
        self._bus = bus
        self._planners = planners
        self._store = store
        self._submitted: dict[tuple[str, str], str] = {}  # (tenant, run id) -> key id

    async def active(self, key_id: str) -> int:
        count = 0
        for (tenant, run_id), owner in list(self._submitted.items()):
            if owner != key_id:
                continue
            try:
                record = await self._store.get_run(tenant, run_id)
            except NotFoundError:
                count += 1  # still queued
                continue
            if record.status == "running":
                count += 1
            else:
                self._submitted.pop((tenant, run_id), None)
        return count

    def is_queued(self, tenant: str, run_id: str) -> bool:
        return (tenant, run_id) in self._submitted

    async def settled(self, tenant: str, run_id: str) -> bool:
        return False

    async def start(self, request: RunRequest) -> str:
        run_id = request.run_id or new_run_id()
        self._submitted[(request.headers.tenant, run_id)] = request.key_id
        try:
            await submit_run(
                self._bus,
                request.query,
                headers=request.headers,
                model=request.model,
                session_id=request.session_id,
                run_id=run_id,
                trace=request.trace,
            )
        except BaseException:
            self._submitted.pop((request.headers.tenant, run_id), None)
            raise
        return run_id

    async def resume(self, tenant: str, run_id: str, *, headers: Headers, key_id: str) -> None:
        if not await _check_resumable(self._store, tenant, run_id):
            return
        self._submitted[(tenant, run_id)] = key_id
        await submit_resume(self._bus, run_id, headers=headers)

    async def cancel(self, tenant: str, run_id: str, *, headers: Headers) -> None:
        """A paused run is cancelled here; a running one is asked of its worker (a
        ``cancel_requested`` event in its log), and this waits until the run has ended
        (or paused: then it is cancelled here). ``ConflictError`` when no worker stopped
        it within ``REMOTE_CANCEL_WAIT_S`` (the request stays: a worker that takes the run
        over cancels it)."""
        planner = await self._planners.get(None)
        try:
            await planner.cancel(run_id, headers=headers)
            return
        except ConflictError:
            pass  # it executes on a worker (a foreign or unknown id raised NotFoundError)
        await request_cancel(self._store, tenant, run_id, by=headers.principal)
        deadline = time.monotonic() + REMOTE_CANCEL_WAIT_S
        while time.monotonic() < deadline:
            record = await self._store.get_run(tenant, run_id)
            if record.status in _ENDED:
                return
            if record.status == "paused":  # it paused before its worker read the request
                with contextlib.suppress(ConflictError):  # resumed meanwhile: wait on
                    await planner.cancel(run_id, headers=headers)
                    return
            await asyncio.sleep(REMOTE_CANCEL_POLL_S)
        raise ConflictError(
            f"run {run_id!r} executes on a worker that has not stopped it within "
            f"{REMOTE_CANCEL_WAIT_S:g} s; the cancel request stays in its log, so the worker "
            "that executes it next cancels it."
        )

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            self._submitted.clear()
