"""Who watches a run: observers get the run's events, whether or not it is streamed.

An observer (``ReactPlanner(observers=[...])``) is told when a run starts or
resumes (``open_run``), hears every planner event of that run, and is told
how it ended. Telemetry (spans, metrics) is such an observer; the planner
knows nothing about OpenTelemetry or Prometheus.

An observation may say which event kinds it wants (``kinds``, a frozenset of
``PlannerEvent.kind`` values; absent or None: all of them): the planner then
does not even build an event no one hears (a run that is not streamed). An
observation with a ``call_finished(record)`` method is told each finished call
that way (the record of a ``ToolCallFinished``, without the event, which its
``event`` never gets): the planner builds that event only for a stream or for
another observation that wants it.

``open_run`` and ``close`` are called in the task that drives the run, so an
observer may set context variables (the current span) for the whole run:
tool calls started by the run inherit them. Observers must be quick and must
not raise (an observer that raises is logged and ignored).

Whatever observers there are, every log line written while a run executes
carries ``run_id``, ``trace_id`` and ``tenant`` (structlog context variables,
bound here and unbound when the run stops).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeAlias, runtime_checkable

import structlog

if TYPE_CHECKING:
    from penguiflow_agents.planner._types import PlannerEvent, RunResult

__all__ = [
    "ApprovalResolved",
    "Observations",
    "ObservedEvent",
    "RunInfo",
    "RunObservation",
    "RunObserver",
    "open_observations",
]

logger = logging.getLogger("penguiflow_agents.planner")
_FINISHED = "tool_call_finished"  # ToolCallFinished.kind


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """A run as it starts (``resumed=False``) or continues in this process (``resumed=True``).

    ``carrier`` is the W3C trace context (``traceparent``, ``tracestate``) the
    caller passed for the run to continue (e.g. from a bus job); ``link`` is the
    trace context an observer saved when the run last stopped (a resume links to it).
    """

    run_id: str
    tenant: str
    principal: str
    model: str
    resumed: bool
    trace_id: str | None = None
    session_id: str | None = None
    carrier: Mapping[str, str] = field(default_factory=dict)
    link: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalResolved:
    """A paused call's approval was found decided (or expired) when the run resumed.

    Told to observers only (not part of a run's stream). Times are ``time.time()``.
    """

    kind: ClassVar[str] = "approval_resolved"
    run_id: str
    approval_id: str
    call_id: str
    tool: str
    status: str  # approved | rejected | expired
    requested_at: float
    decided_at: float


ObservedEvent: TypeAlias = "PlannerEvent | ApprovalResolved"


@runtime_checkable
class RunObservation(Protocol):
    """One observer's view of one run (or one resume of it)."""

    # The trace id the run's telemetry uses (hex), when the observer has one.
    trace_id: str | None
    # Trace context to save with the run, so that a later resume can link to it.
    carrier: Mapping[str, str]

    def event(self, event: ObservedEvent) -> None: ...

    def close(self, result: RunResult | None, error: BaseException | None) -> None: ...

    # Optional (not part of the runtime check): ``kinds: frozenset[str] | None``, the event
    # kinds this observation wants; absent or None: every event.


@runtime_checkable
class RunObserver(Protocol):
    def open_run(self, info: RunInfo) -> RunObservation | None: ...


class Observations:
    """The observations of one run plus its log context; closed exactly once."""

    __slots__ = (
        "_event_items",
        "_finished_events",
        "_items",
        "_kinds",
        "_takers",
        "_tokens",
        "carrier",
        "takes_calls",
        "trace_id",
    )

    def __init__(self, items: Sequence[RunObservation], tokens: Mapping[str, Any]) -> None:
        self._items = items = tuple(items)
        self._tokens = tokens
        # The event kinds some observation wants (None: every kind); who takes a finished
        # call's record directly (``call_finished``) and who gets ToolCallFinished events
        # instead, and whether one of those wants them; the trace id and context to keep.
        kinds: frozenset[str] | None = frozenset()
        takers: list[Any] = []
        event_items: list[RunObservation] = []
        finished_events = False
        trace_id: str | None = None
        carrier: dict[str, str] = {}
        for o in items:
            wanted = getattr(o, "kinds", None)
            if wanted is None:
                kinds = None
            elif kinds is not None:
                kinds = kinds | wanted if kinds else wanted
            take = getattr(o, "call_finished", None)
            if callable(take):
                takers.append(take)
            else:
                event_items.append(o)
                finished_events = finished_events or wanted is None or _FINISHED in wanted
            if trace_id is None and o.trace_id:
                trace_id = o.trace_id
            if o.carrier:
                carrier.update(o.carrier)
        self._kinds = kinds
        self._takers: tuple[Any, ...] = tuple(takers)
        self.takes_calls = bool(takers)
        self._event_items = tuple(event_items) if takers else items
        self._finished_events = finished_events
        self.trace_id = trace_id
        self.carrier = carrier

    @property
    def active(self) -> bool:
        """Whether anyone listens to events."""
        return bool(self._items)

    def hears(self, kind: str) -> bool:
        """Whether some observation wants events of ``kind``."""
        kinds = self._kinds
        return bool(self._items) and (kinds is None or kind in kinds)

    def call_finished(self, record: Any) -> bool:
        """Tell the observations that take finished calls directly (``takes_calls``); True
        when another one wants the ``ToolCallFinished`` event as well."""
        for take in self._takers:
            try:
                take(record)
            except Exception:  # an observer must never break a run
                logger.exception("run observer %r failed on a finished call", take)
        return self._finished_events

    def event(self, event: ObservedEvent) -> None:
        items = self._event_items if event.kind == _FINISHED else self._items
        for o in items:
            try:
                o.event(event)
            except Exception:  # an observer must never break a run
                logger.exception("run observer %r failed on %s", o, event.kind)

    def close(self, result: RunResult | None, error: BaseException | None) -> None:
        items, self._items = self._items, ()
        self._event_items = self._takers = ()
        self.takes_calls = self._finished_events = False
        for o in reversed(items):
            try:
                o.close(result, error)
            except Exception:
                logger.exception("run observer %r failed to close", o)
        tokens, self._tokens = self._tokens, {}
        if tokens:
            try:
                structlog.contextvars.reset_contextvars(**tokens)
            except ValueError:
                # The run was opened in another context (an engine such as Temporal
                # drives one run across several tasks): drop the keys it bound here.
                structlog.contextvars.unbind_contextvars(*tokens)


def open_observations(observers: Sequence[RunObserver], info: RunInfo) -> Observations:
    """Open every observer for ``info`` and bind the run's log context."""
    items: list[RunObservation] = []
    for observer in observers:
        try:
            observation = observer.open_run(info)
        except Exception:
            logger.exception("run observer %r failed to open run %s", observer, info.run_id)
            continue
        if observation is not None:
            items.append(observation)
    observed = Observations(items, {})
    trace_id = observed.trace_id or info.trace_id or info.run_id
    observed._tokens = structlog.contextvars.bind_contextvars(
        run_id=info.run_id, trace_id=trace_id, tenant=info.tenant
    )
    return observed
