"""What one run carries while it executes, and what the planner shares between runs.

``Deps`` is the planner's configuration (shared by every run, never mutated);
``Run`` is one run's identity, clock and state (a local of the coroutine
that drives it). Nothing per-run is ever stored on the planner.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from penguiflow_agents._identity import Headers
from penguiflow_agents._owner import new_owner, owner_is_dead
from penguiflow_agents.llm._types import LLMClient
from penguiflow_agents.planner._clock import SYSTEM_CLOCK, Clock
from penguiflow_agents.planner._state import RunState
from penguiflow_agents.store._base import RunRecord, StateStore
from penguiflow_agents.tools._catalog import ToolCatalog

if TYPE_CHECKING:
    from penguiflow_agents.approvals import ApprovalService
    from penguiflow_agents.planner._observe import Observations, RunObserver
    from penguiflow_agents.planner._output import OutputSpec
    from penguiflow_agents.planner._types import PlannerEvent, Step
    from penguiflow_agents.policy import PolicySet

Emit: TypeAlias = "Callable[[PlannerEvent], Awaitable[None]]"

__all__ = ["Deps", "Emit", "Run", "Stop", "jsonable", "new_owner", "new_run_id", "owner_is_dead"]


class Stop(Exception):
    """Ends a run with ``status`` and a reason sentence."""

    def __init__(self, status: str, error: str) -> None:
        self.status = status
        self.error = error
        super().__init__(error)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deps:
    llm: LLMClient
    registry: ToolCatalog
    store: StateStore
    policies: PolicySet | None
    approvals: ApprovalService | None
    system_prompt: str
    max_steps: int
    max_parallel: int
    deadline_s: float | None
    max_tokens_budget: int | None
    max_consecutive_errors: int
    max_result_chars: int
    claim_lease_s: float
    max_calls_per_turn: int = 32  # calls past this in one turn are refused
    max_pending_approvals_per_run: int = 16  # approval requests one turn may open
    max_pending_approvals_per_tenant: int = 1000  # undecided requests a tenant may have
    heartbeat_s: float | None  # None: the lease is renewed by checkpoints only
    clock: Clock = SYSTEM_CLOCK  # time and random ids (a workflow engine brings its own)
    record_events: bool = False  # every emitted event is also appended to the run's log
    observers: tuple[RunObserver, ...] = ()  # told about every run (telemetry)
    app_deps: Any = None  # ReactPlanner(deps=...): handed to tools in CallContext.deps
    output: OutputSpec | None = None  # ReactPlanner(output_type=...): the typed final answer
    max_image_bytes: int = 8_000_000  # images (from tools) one run may show the model, in all
    max_argument_chars: int = 262_144  # one call's arguments text (longer: invalid_arguments)
    # ReactPlanner(elicitor=...): asks the person behind a call a tool server's question.
    elicitor: Any = None


class _Scope:
    """One ``async with`` of a ``DeadlineGuard``: ``asyncio.timeout`` at the run's deadline."""

    __slots__ = ("expiring", "guard", "handle", "task")

    def __init__(self, guard: DeadlineGuard) -> None:
        self.guard = guard
        self.task: asyncio.Task[Any] | None = None
        self.expiring = False
        self.handle: asyncio.Handle | None = None

    async def __aenter__(self) -> _Scope:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline scope must be used inside a task")
        self.task = task
        self.guard.enter(self)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.guard.leave(self)
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.expiring:
            self.expiring = False
            assert self.task is not None
            if self.task.uncancel() == 0 and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc  # the deadline passed (as asyncio.timeout says it)

    def expire(self) -> None:
        self.handle = None
        if self.task is not None and not self.expiring:
            self.expiring = True
            self.task.cancel()


class DeadlineGuard:
    """The run's deadline as one timer for the whole run, shared by every wait bounded by it.

    ``asyncio.timeout(run.remaining())`` around each model call and tool call
    schedules (and cancels) a timer each time, in a heap that holds every
    concurrent run's timers: a cost per step that grows with the runs at once.
    A scope of this guard behaves the same (``TimeoutError`` when the deadline
    passes inside it, the task's other cancellations untouched), with one timer
    per run, set at the first scope and cancelled when the run's driver ends
    (``close``).
    """

    __slots__ = ("_active", "_handle", "_loop", "_when")

    def __init__(self, remaining_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._when = self._loop.time() + remaining_s
        self._active: list[_Scope] = []
        self._handle: asyncio.TimerHandle | None = None

    def scope(self) -> _Scope:
        return _Scope(self)

    def enter(self, scope: _Scope) -> None:
        if self._loop.time() >= self._when:  # already past: expires at the first wait
            scope.handle = self._loop.call_soon(scope.expire)
            return
        self._active.append(scope)
        if self._handle is None:
            self._handle = self._loop.call_at(self._when, self._fire)

    def leave(self, scope: _Scope) -> None:
        if scope in self._active:
            self._active.remove(scope)

    def _fire(self) -> None:
        self._handle = None
        active, self._active = self._active, []
        for scope in active:
            scope.expire()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


@dataclass(slots=True, kw_only=True)
class Run:
    run_id: str
    headers: Headers  # the identity the run executes as (its requester's)
    trace_id: str
    deadline: float | None  # clock.monotonic(); None = no deadline
    deadline_s: float | None  # the budget the deadline was computed from (for messages)
    record: RunRecord  # the stored record, at the version this process last wrote
    state: RunState
    owner: str | None = None  # set while this process holds a claim on the run
    lost: bool = False  # another process took the run over: write nothing more
    emit: Emit | None = None  # where events go when the run is streamed (None: nowhere)
    observed: Observations | None = None  # the run's observers (and its log context)
    # Serialises this process's writes of the record (checkpoints and heartbeats).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    clock: Clock = SYSTEM_CLOCK  # the planner's (Deps.clock)
    guard: DeadlineGuard | None = None  # the deadline's timer (see deadline_scope)

    @property
    def listening(self) -> bool:
        """Whether anyone hears this run's events (a stream consumer or an observer)."""
        return self.emit is not None or (self.observed is not None and self.observed.active)

    def hears(self, kind: str) -> bool:
        """Whether anyone hears this run's events of ``kind`` (the stream hears them all)."""
        return self.emit is not None or (self.observed is not None and self.observed.hears(kind))

    def call_finished(self, record: Step) -> bool:
        """A call finished: the observations that take its record directly are told now; True
        when a ``ToolCallFinished`` event must be built as well (a stream consumer or another
        observation hears it)."""
        observed = self.observed
        if observed is not None and observed.takes_calls:
            return observed.call_finished(record) or self.emit is not None
        return self.hears("tool_call_finished")

    def tell(self, event: PlannerEvent) -> bool:
        """Tell the run's observers now when no stream consumer hears the run (True); False:
        ``await publish(event)`` (a consumer may make us wait). Saves a coroutine per event
        on the common path of a run that only observers hear."""
        if self.emit is not None:
            return False
        observed = self.observed
        if observed is not None:
            observed.event(event)
        return True

    async def publish(self, event: PlannerEvent) -> None:
        """Tell the run's observers, then its stream consumer (which may make us wait)."""
        observed = self.observed
        if observed is not None:
            observed.event(event)
        if self.emit is not None:
            await self.emit(event)

    def deadline_scope(self) -> AbstractAsyncContextManager[Any]:
        """``asyncio.timeout(self.remaining())``: ``TimeoutError`` if the run's deadline passes
        inside. With the system clock, one timer serves the whole run (``DeadlineGuard``); an
        engine with a clock of its own (a workflow replaying the loop) gets a timer per wait,
        as its history recorded them. ``close_deadline`` when the run stops here."""
        remaining = self.remaining()
        if remaining is None or self.clock is not SYSTEM_CLOCK:
            return asyncio.timeout(remaining)
        guard = self.guard
        if guard is None:
            guard = self.guard = DeadlineGuard(remaining)
        return guard.scope()

    def close_deadline(self) -> None:
        guard, self.guard = self.guard, None
        if guard is not None:
            guard.close()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None = unbounded)."""
        return None if self.deadline is None else self.deadline - self.clock.monotonic()

    def past_deadline(self) -> bool:
        return self.deadline is not None and self.clock.monotonic() >= self.deadline

    def lease_half_gone(self, lease_s: float) -> bool:
        """Whether this process's claim has less than half its lease left (time to renew)."""
        expires = self.record.claim_expires_at
        return (
            self.owner is not None
            and expires is not None
            and expires - self.clock.time() < lease_s / 2
        )


def new_run_id() -> str:
    return "run_" + uuid.uuid4().hex


def jsonable(value: Any) -> Any:
    """``value`` as JSON values only (anything else becomes its ``str``)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))
