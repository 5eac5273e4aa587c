"""``Worker``: take run/resume jobs from a ``MessageBus`` and execute them on a shared store.

Per job (at most ``concurrency`` at once):

- ``run``: when the tenant has no run with that id, start it with
  ``ReactPlanner.run(run_id=..., claim=True)``; when it exists and has ended
  or paused, there is nothing to do; when it is running, take it over with
  ``resume`` (its worker died) — see below;
- ``resume``: ``ReactPlanner.resume`` (a run of another tenant is unknown:
  the job is dropped, like a missing id).

The job is acknowledged only once its outcome is in the store (ended,
paused, or already done by someone else). While a job runs, the worker
renews it on the bus every third of the visibility timeout; a worker that
dies stops renewing, and the bus delivers its job to another worker, which
takes the run over from its last checkpoint (at once when the dead holder
was on this host, else once its lease ran out).

A run that pauses on an approval already decided (the decision landed while
the run was still finishing its step, or before a takeover re-paused it on its
dead owner's request) is resumed by the worker that paused it: the decider's
resume job found the run running and was dropped, so nobody else would.

A job whose run is held by another live claim is not run twice: a first
delivery (a duplicate job) is acknowledged at once; a redelivery (its worker
went silent, perhaps on another host) watches the run until it ends or its
claim lapses, then takes it over.

A run this worker executes is cancelled when another process asks for it
(``request_cancel``: a ``cancel_requested`` event in the run's log, read every
``CANCEL_POLL_S``): its planner records it as ``cancelled`` and the job is
acknowledged.

``stop()`` (or SIGTERM/SIGINT with ``handle_signals=True``) stops taking
jobs, lets running ones finish for ``drain_timeout_s``, then hands the rest
back: the run's claim ends at its last checkpoint and the job goes back on
the bus for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeAlias

from penguiflow_agents._log import get_logger
from penguiflow_agents._owner import new_owner
from penguiflow_agents.bus import Delivery, MessageBus
from penguiflow_agents.exceptions import (
    BusError,
    ConflictError,
    NotFoundError,
    PenguiflowError,
    StoreUnavailableError,
    UserError,
)
from penguiflow_agents.planner import ReactPlanner, RunResult
from penguiflow_agents.planner._handback import HAND_BACK_ON_STORE_OUTAGE
from penguiflow_agents.store import RunRecord, StateStore
from penguiflow_agents.worker._cancel import cancel_requested_by
from penguiflow_agents.worker._claims import TERMINAL, get_run, release_claim
from penguiflow_agents.worker._job import Job
from penguiflow_agents.worker._submit import result_of

__all__ = ["PlannerFactory", "Worker"]

PlannerFactory: TypeAlias = Callable[[str | None], AbstractAsyncContextManager[ReactPlanner]]

_log = get_logger("penguiflow_agents.worker")

# Longest one consume call waits for a job, by default (a stop is noticed within this).
CONSUME_BLOCK_S = 1.0
# Waits after a bus failure before trying again: doubling from the first to the second.
BUS_RETRY_S = (0.5, 10.0)
# How often a worker re-checks a run that another process holds.
WATCH_POLL_S = 1.0
# Extra time, past the holder's lease, a redelivered job watches a held run before giving up.
WATCH_GRACE_S = 5.0
# Longest a redelivered job watches a held run (a run with no lease would never lapse).
MAX_WATCH_S = 900.0
# Pause after a store failure before taking jobs again: doubling from the first to the second.
STORE_RETRY_S = (1.0, 30.0)
# Longest wait for cancelled jobs to unwind after their claims were handed back.
CANCEL_TIMEOUT_S = 10.0
# Longest wait for one hand-back to the store or the bus at shutdown.
HANDBACK_TIMEOUT_S = 10.0
# How often the logs of the runs in progress are read for a cancel request.
CANCEL_POLL_S = 1.0
# Takeovers in a row, by the same worker, of a run it handed back when the store's connection
# failed (beyond these the job waits for its redelivery after the visibility timeout).
MAX_STORE_RETAKES = 2
# Pause before such a takeover (the store just answered the hand-back).
STORE_RETAKE_S = 0.2
# Resumes in a row of a run that paused on approvals decided before its pause was written.
MAX_DECIDED_RESUMES = 3
# Planners kept open, one per model; jobs of further models open one for the job only.
MAX_PLANNERS = 16
# Statistics a worker keeps (see Worker.stats).
STAT_KEYS = (
    "completed",
    "paused",
    "failed",
    "cancelled",
    "taken_over",
    "skipped",
    "invalid",
    "released",
)


class _OpenFailed(Exception):
    """The planner factory could not give a planner for a job's model."""


@dataclass(slots=True, kw_only=True)
class _InFlight:
    delivery: Delivery
    job: Job | None = None
    executing: bool = False  # inside planner.run/resume: this process may hold the run's claim
    settled: bool = False  # acknowledged (or deliberately left for redelivery)
    runner: asyncio.Task[RunResult] | None = None  # the planner's run/resume while executing
    log_seq: int = 0  # the run's events read so far for a cancel request
    cancel_by: str | None = None  # who asked (another process) to cancel the run
    retake: bool = False  # after an error: the store answered, and the run is not held elsewhere


class Worker:
    """Executes jobs from ``bus`` with planners from ``planner_factory`` on ``store``.

    ``planner_factory(model)`` is an async context manager giving a
    ``ReactPlanner`` for a job's model (a ``--model`` value, or None for the
    default) on this very ``store``; the worker keeps up to ``MAX_PLANNERS``
    open and closes them when it stops. For one planner whatever the model:
    ``Worker(bus, lambda model: contextlib.nullcontext(planner), store)``.
    A run whose worker died is taken over once the planner's claim lease ran
    out (at once when the dead worker was on this host): keep it short.
    ``block_s`` bounds each wait for a job on the bus, and so how long a
    ``stop()`` may take to be noticed.
    """

    def __init__(
        self,
        bus: MessageBus,
        planner_factory: PlannerFactory,
        store: StateStore,
        *,
        concurrency: int = 4,
        drain_timeout_s: float = 30.0,
        name: str | None = None,
        block_s: float = CONSUME_BLOCK_S,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise UserError(f"Worker concurrency must be a positive integer, got {concurrency!r}.")
        if not drain_timeout_s >= 0:
            raise UserError(
                f"Worker drain_timeout_s must be zero or positive, got {drain_timeout_s!r}."
            )
        self.bus = bus
        self.store = store
        self.concurrency = concurrency
        self.drain_timeout_s = float(drain_timeout_s)
        self.block_s = float(block_s)
        # host:pid:token:boot_id:pid_namespace: when this process dies (SIGKILL), another
        # worker of the host takes its jobs over at once instead of after the visibility timeout.
        self.name = name or new_owner()
        self._factory = planner_factory
        self._planners: dict[str | None, ReactPlanner] = {}
        self._planner_lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._tasks: dict[asyncio.Task[None], _InFlight] = {}
        self._stop = asyncio.Event()
        self._running = False
        self._store_backoff_s = 0.0  # > 0 after a store failure: pause before taking jobs
        self._stats = dict.fromkeys(STAT_KEYS, 0)

    def __repr__(self) -> str:
        return f"Worker(name={self.name!r}, concurrency={self.concurrency}, in_flight={len(self._tasks)})"

    @property
    def stats(self) -> dict[str, int]:
        """Counts of job outcomes so far: completed, paused, failed, cancelled (runs this worker
        ended), taken_over (of those, runs another worker had started), skipped (nothing to do:
        done, held elsewhere, or unknown to the tenant), invalid, released (handed back)."""
        return dict(self._stats)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def stop(self) -> None:
        """Ask ``run()`` to stop gracefully (see the module docstring); also before it starts."""
        self._stop.set()

    async def run(self, *, stop: asyncio.Event | None = None, handle_signals: bool = False) -> None:
        """Take and execute jobs until ``stop`` is set (or ``stop()``, or a signal), then drain."""
        if self._running:
            raise UserError(f"worker {self.name!r} is already running; start another Worker.")
        if stop is not None:
            if self._stop.is_set():
                stop.set()
            self._stop = stop
        stop = self._stop
        loop = asyncio.get_running_loop()
        signals = [signal.SIGTERM, signal.SIGINT] if handle_signals else []
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        self._running = True
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"{self.name}-heartbeat")
        cancels = asyncio.create_task(self._watch_cancels(), name=f"{self.name}-cancels")
        try:
            async with AsyncExitStack() as stack:
                self._stack = stack
                try:
                    await self._consume(stop)
                finally:
                    await self._drain()
        finally:
            for task in (heartbeat, cancels):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._planners.clear()
            self._stack = None
            self._running = False
            _log.info("worker_stopped", worker=self.name, **self._stats)

    # -- taking jobs ----------------------------------------------------------------------------

    async def _consume(self, stop: asyncio.Event) -> None:
        backoff = BUS_RETRY_S[0]
        _log.info("worker_started", worker=self.name, concurrency=self.concurrency)
        while not stop.is_set():
            free = self.concurrency - len(self._tasks)
            if free <= 0:
                await _first_of(stop, set(self._tasks))
                continue
            if self._store_backoff_s:  # the store failed lately: take no job for a while
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._store_backoff_s)
                if stop.is_set():
                    break
            try:
                deliveries = await self.bus.consume(self.name, max_jobs=free, block_s=self.block_s)
            except BusError as exc:
                _log.error("worker_bus_failed", worker=self.name, error=str(exc), retry_s=backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, BUS_RETRY_S[1])
                continue
            backoff = BUS_RETRY_S[0]
            for delivery in deliveries:
                if stop.is_set():  # taken while stopping: hand it straight back
                    await self._hand_back(delivery)
                    continue
                entry = _InFlight(delivery=delivery)
                task = asyncio.create_task(self._handle(entry), name=f"job-{delivery.id}")
                self._tasks[task] = entry
                task.add_done_callback(self._forget)

    async def _heartbeat(self) -> None:
        """Renew the jobs in flight, so that no other worker takes them over while we live."""
        interval = max(self.bus.visibility_timeout_s / 3, 0.01)
        while True:
            await asyncio.sleep(interval)
            held = [e.delivery for e in self._tasks.values() if not e.settled]
            if not held:
                continue
            try:
                kept = {d.id for d in await self.bus.touch(held)}
            except BusError as exc:
                _log.warning("worker_renew_failed", worker=self.name, error=str(exc))
                continue
            for delivery in held:
                if delivery.id not in kept:
                    _log.warning(
                        "worker_job_taken_over", worker=self.name, job=delivery.id
                    )  # the store's claim still keeps the run from running twice

    async def _watch_cancels(self) -> None:
        """Cancel the runs in progress whose log holds a cancel request (``request_cancel``)."""
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            for entry in list(self._tasks.values()):
                job, runner = entry.job, entry.runner
                if job is None or runner is None or runner.done() or entry.cancel_by:
                    continue
                try:
                    by, entry.log_seq = await cancel_requested_by(
                        self.store, job.tenant, job.run_id, after_seq=entry.log_seq
                    )
                except PenguiflowError as exc:
                    _log.warning("worker_cancel_check_failed", worker=self.name, error=str(exc))
                    break  # the store is failing: try again next round
                if by is not None and entry.runner is runner and not runner.done():
                    entry.cancel_by = by
                    _log.info(
                        "worker_run_cancel_requested",
                        worker=self.name,
                        tenant=job.tenant,
                        run_id=job.run_id,
                        by=by,
                    )
                    runner.cancel()

    async def _execute(self, entry: _InFlight, body: Coroutine[Any, Any, RunResult]) -> RunResult:
        """``body`` (the planner's run or resume) as a task a cancel request can cancel.

        When it was cancelled on request (and this job was not), the planner has
        recorded the run as cancelled: that is the result.
        """
        token = HAND_BACK_ON_STORE_OUTAGE.set(True)  # the run's task copies this context
        try:
            runner: asyncio.Task[RunResult] = asyncio.ensure_future(body)
        finally:
            HAND_BACK_ON_STORE_OUTAGE.reset(token)
        entry.runner = runner
        entry.executing = True
        try:
            return await runner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if entry.cancel_by is None or (current is not None and current.cancelling()):
                raise  # the worker is stopping (or the job was cancelled): not a request
            job = entry.job
            assert job is not None
            record = await get_run(self.store, job.tenant, job.run_id)
            result = None if record is None else result_of(record)
            if result is None:
                raise
            return result
        finally:
            entry.executing = False
            entry.runner = None

    # -- one job ----------------------------------------------------------------------------------

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _handle(self, entry: _InFlight) -> None:
        delivery = entry.delivery
        retakes = 0
        while True:
            try:
                done = await self._process(entry)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except StoreUnavailableError as exc:
                # The store's connection failed past its own retries: the planner left the run
                # at its last checkpoint (not failed). Hand the claim back and take it over
                # again here once the store answers; else the job's redelivery does.
                _log.warning(
                    "worker_store_unavailable", worker=self.name, job=delivery.id, error=str(exc)
                )
                done = await self._after_error(entry)
                if (
                    not done
                    and entry.retake
                    and retakes < MAX_STORE_RETAKES
                    and not self._stop.is_set()
                ):
                    retakes += 1
                    _log.info("worker_store_retake", worker=self.name, job=delivery.id)
                    await asyncio.sleep(STORE_RETAKE_S)
                    continue
            except Exception as exc:
                _log.exception(  # unexpected: the traceback goes with it
                    "worker_job_error",
                    worker=self.name,
                    job=delivery.id,
                    error=f"{type(exc).__name__}: {exc}",
                )
                done = await self._after_error(entry)
            else:
                self._store_backoff_s = 0.0
            break
        if done:
            try:
                await self.bus.ack(delivery)
            except BusError as exc:  # redelivered later, and then found done
                _log.warning("worker_ack_failed", worker=self.name, job=delivery.id, error=str(exc))
        entry.settled = True

    async def _process(self, entry: _InFlight) -> bool:
        """Do the job; True when it should be acknowledged."""
        delivery = entry.delivery
        try:
            job = Job.from_dict(delivery.job)
        except UserError as exc:
            self._count("invalid")
            _log.error("worker_job_invalid", worker=self.name, job=delivery.id, error=str(exc))
            return True  # no retry can fix it
        entry.job = job
        record = await get_run(self.store, job.tenant, job.run_id)
        if job.kind == "run":
            if record is None:
                started = await self._start(entry, job)
                if started:
                    return True
                record = await get_run(self.store, job.tenant, job.run_id)
                if record is None:
                    return False
            if record.status == "paused" and await self._decided_while_paused(job, record):
                return await self._take_over(entry, job, record)
            if record.status != "running":  # ended, or paused for a decision: done
                return self._skip(job, record.status)
            return await self._take_over(entry, job, record)
        if record is None:  # missing, or another tenant's: the same to this job
            _log.warning(
                "worker_run_unknown", worker=self.name, tenant=job.tenant, run_id=job.run_id
            )
            return self._skip(job, "unknown")
        if record.status in TERMINAL:
            return self._skip(job, record.status)
        return await self._take_over(entry, job, record)

    async def _start(self, entry: _InFlight, job: Job) -> bool:
        """Start a new run; False when another process created it first."""
        assert job.query is not None
        try:
            async with self._planner(job.model) as planner:
                result = await self._execute(
                    entry,
                    planner.run(
                        job.query,
                        headers=job.headers,
                        session_id=job.session_id,
                        run_id=job.run_id,
                        claim=True,
                        trace_carrier=job.trace,
                    ),
                )
                result = await self._resume_decided(entry, job, planner, result)
        except ConflictError:
            return False
        except _OpenFailed as exc:
            await self._record_unstartable(job, str(exc))
            return True
        self._finished(job, result, taken_over=False)
        return True

    async def _take_over(self, entry: _InFlight, job: Job, record: RunRecord) -> bool:
        """Continue a run that exists (resume it, or take over a dead worker's run)."""
        watch_until: float | None = None
        seen = record  # the run as this worker first found it held
        taken_over = record.status == "running"
        while True:
            try:
                async with self._planner(record.model or job.model) as planner:
                    result = await self._execute(
                        entry,
                        planner.resume(job.run_id, headers=job.headers, trace_carrier=job.trace),
                    )
                    result = await self._resume_decided(entry, job, planner, result)
            except _OpenFailed as exc:
                _log.error("worker_no_planner", worker=self.name, run_id=job.run_id, error=str(exc))
                return True  # the run stays as it is; a new resume job can retry
            except NotFoundError:
                return self._skip(job, "unknown")
            except ConflictError:
                # Held by another live claim (or still running where it started).
                if entry.delivery.attempt <= 1:
                    return self._skip(job, "held")  # a duplicate: its holder finishes it
                # A redelivery: its worker went silent. Watch the run: a holder that writes
                # (checkpoint, lease renewal) is alive and finishes it; a dead one's lease
                # runs out, and then the next resume takes the run over.
                if watch_until is None:
                    lease_left = max((seen.claim_expires_at or 0.0) - time.time(), 0.0)
                    watch_until = time.monotonic() + min(lease_left + WATCH_GRACE_S, MAX_WATCH_S)
                if time.monotonic() >= watch_until or self._stop.is_set():
                    return False  # not ours to finish now: the bus delivers it again later
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), WATCH_POLL_S)
                current = await get_run(self.store, job.tenant, job.run_id)
                if current is None:
                    return self._skip(job, "unknown")
                if current.status in TERMINAL or (
                    job.kind == "run" and current.status != "running"
                ):
                    return self._skip(job, current.status)
                if current.version != seen.version:
                    return self._skip(job, "held")  # its holder is alive: it finishes the run
                record = current
                continue
            self._finished(job, result, taken_over=taken_over)
            return True

    async def _resume_decided(
        self, entry: _InFlight, job: Job, planner: ReactPlanner, result: RunResult
    ) -> RunResult:
        """A run that paused on an approval already decided goes on at once.

        The decision can land before the pause is written: a fast approver decides a
        request as soon as it exists, while the run is still finishing its step, and its
        resume job finds the run running (held) and is dropped; or the request was made by
        a worker that died, and the worker taking the run over pauses on it again. Either
        way nobody would resume the run: so after a pause, a decided request resumes it
        here (a decision made later comes with a resume job that finds the run paused).
        """
        for _ in range(MAX_DECIDED_RESUMES):
            if result.status != "paused" or not await self._any_decided(job, result):
                return result
            _log.info(
                "worker_resume_decided",
                worker=self.name,
                tenant=job.tenant,
                run_id=job.run_id,
            )
            try:
                result = await self._execute(
                    entry,
                    planner.resume(job.run_id, headers=job.headers, trace_carrier=job.trace),
                )
            except ConflictError:  # someone else resumed it meanwhile: theirs to finish
                return result
        return result

    async def _decided_while_paused(self, job: Job, record: RunRecord) -> bool:
        """Whether a paused run waits on an approval that was decided already (its resume
        job may have been dropped: see ``_resume_decided``)."""
        result = result_of(record)
        return result is not None and await self._any_decided(job, result)

    async def _any_decided(self, job: Job, result: RunResult) -> bool:
        """Whether an approval the paused run waits on is no longer pending."""
        for pending in result.pending_approvals:
            if pending.kind != "approval":
                continue
            try:
                record = await self.store.get_approval(job.tenant, pending.id)
            except NotFoundError:
                continue
            if record.status != "pending":
                return True
        return False

    async def _after_error(self, entry: _InFlight) -> bool:
        """After an unexpected error: is the job's outcome in the store anyway?

        A run this process still holds is handed back first (its planner is gone), so
        that the job's next delivery takes it over instead of finding it "held". When the
        store itself fails, the worker pauses taking jobs for a while (doubling up to
        ``STORE_RETRY_S[1]``), so that an outage burns few delivery attempts.
        """
        job = entry.job
        entry.retake = False
        if job is None:
            return True
        try:
            handed_back = await release_claim(self.store, job.tenant, job.run_id)
            record = await get_run(self.store, job.tenant, job.run_id)
        except PenguiflowError as exc:
            self._store_backoff_s = min(
                max(self._store_backoff_s * 2, STORE_RETRY_S[0]), STORE_RETRY_S[1]
            )
            _log.error(
                "worker_store_failed",
                worker=self.name,
                error=str(exc),
                pause_s=self._store_backoff_s,
            )
            return False  # the bus delivers the job again after the visibility timeout
        entry.retake = handed_back or record is None or record.status != "running"
        if record is None:
            return job.kind == "resume"
        # A paused run: a resume job may not have resumed it yet, and a run job may not have
        # seen its decided approvals. Not done: the job comes back after the visibility
        # timeout (its attempts counted) and is handled again.
        return record.status not in ("running", "paused")

    # -- planners ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _planner(self, model: str | None) -> AsyncIterator[ReactPlanner]:
        planner = self._planners.get(model)
        if planner is None and self._stack is not None:
            async with self._planner_lock:
                planner = self._planners.get(model)
                if planner is None and len(self._planners) < MAX_PLANNERS:
                    planner = await self._open(self._stack, model)
                    self._planners[model] = planner
        if planner is not None:
            yield planner
            return
        async with AsyncExitStack() as stack:  # one more model than we keep: for this job only
            yield await self._open(stack, model)

    async def _open(self, stack: AsyncExitStack, model: str | None) -> ReactPlanner:
        try:
            planner = await stack.enter_async_context(self._factory(model))
        except Exception as exc:  # a model or tool configuration that cannot work
            raise _OpenFailed(f"no planner for model {model!r}: {exc}") from None
        if not isinstance(planner, ReactPlanner) or planner.store is not self.store:
            raise _OpenFailed(
                f"the planner factory gave {planner!r} for model {model!r}; it must give a "
                "ReactPlanner on the worker's own store."
            )
        return planner

    # -- bookkeeping ------------------------------------------------------------------------------

    async def _record_unstartable(self, job: Job, message: str) -> None:
        """A run that could not even start is recorded as failed, so its submitter sees why."""
        _log.error("worker_no_planner", worker=self.name, run_id=job.run_id, error=message)
        result = RunResult(status="failed", run_id=job.run_id, error=message, model=job.model or "")
        with contextlib.suppress(ConflictError):
            await self.store.create_run(
                RunRecord(
                    run_id=job.run_id,
                    tenant=job.tenant,
                    principal=job.principal,
                    roles=list(job.roles),
                    session_id=job.session_id,
                    status="failed",
                    model=job.model or "",
                    query=job.query or "",
                    state={"result": result.to_dict()},
                )
            )
            await self.store.append_event(
                job.tenant, job.run_id, "run_finished", {"status": "failed", "error": message}
            )
        self._count("failed")

    def _finished(self, job: Job, result: RunResult, *, taken_over: bool) -> None:
        if result.status in self._stats:
            self._count(result.status)
        if taken_over:
            self._count("taken_over")
        _log.info(
            "worker_job_done",
            worker=self.name,
            kind=job.kind,
            tenant=job.tenant,
            run_id=job.run_id,
            status=result.status,
            taken_over=taken_over,
        )

    def _skip(self, job: Job, why: str) -> bool:
        self._count("skipped")
        _log.info(
            "worker_job_skipped",
            worker=self.name,
            kind=job.kind,
            tenant=job.tenant,
            run_id=job.run_id,
            why=why,
        )
        return True

    def _count(self, key: str) -> None:
        self._stats[key] += 1

    # -- stopping ----------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Let running jobs finish for ``drain_timeout_s``; hand the others back."""
        tasks = set(self._tasks)
        if not tasks:
            return
        _log.info("worker_draining", worker=self.name, jobs=len(tasks))
        _done, pending = await asyncio.wait(tasks, timeout=self.drain_timeout_s)
        entries = {task: self._tasks[task] for task in pending if task in self._tasks}
        for task, entry in entries.items():
            if entry.executing and entry.job is not None:
                # First end our claim, so that the planner cannot record the cancel below.
                try:
                    await asyncio.wait_for(
                        release_claim(self.store, entry.job.tenant, entry.job.run_id),
                        HANDBACK_TIMEOUT_S,
                    )
                except (PenguiflowError, TimeoutError) as exc:
                    _log.error(
                        "worker_release_failed",
                        worker=self.name,
                        run_id=entry.job.run_id,
                        error=str(exc),
                    )
            task.cancel()
        if entries:
            await asyncio.wait(entries, timeout=CANCEL_TIMEOUT_S)
        for entry in entries.values():
            if not entry.settled:
                await self._hand_back(entry.delivery)

    async def _hand_back(self, delivery: Delivery) -> None:
        try:
            await asyncio.wait_for(self.bus.release(delivery), HANDBACK_TIMEOUT_S)
        except (BusError, TimeoutError) as exc:  # it comes back after the visibility timeout
            _log.warning(
                "worker_hand_back_failed", worker=self.name, job=delivery.id, error=str(exc)
            )
        self._count("released")
        _log.info("worker_job_released", worker=self.name, job=delivery.id)


async def _first_of(stop: asyncio.Event, tasks: set[asyncio.Task[None]]) -> None:
    """Wait until ``stop`` is set or one of ``tasks`` ends."""
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
