"""``Telemetry``: spans and metrics as an observer of runs plus thin wrappers at the seams.

```python
telemetry = Telemetry.from_env(metrics=Metrics())    # traces as the OTEL_* variables say
planner = telemetry.instrument(ReactPlanner(llm=llm, registry=registry, store=store))
```

``instrument`` gives a planner with the same settings whose model client,
tool catalog and store are wrapped (``chat``, ``execute_tool`` and ``store``
spans; model and tool metrics) and which reports its runs to this object
(``invoke_agent`` and ``approval_wait`` spans; run, tool-outcome and approval
metrics). Nothing here is imported by the core; OpenTelemetry is imported
only when tracing is on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from penguiflow_agents.planner._observe import ApprovalResolved, RunInfo
from penguiflow_agents.planner._types import Paused, Step, ToolActivity
from penguiflow_agents.telemetry._metrics import UNKNOWN_LABEL, Metrics

if TYPE_CHECKING:
    from penguiflow_agents.planner import ReactPlanner, RunResult
    from penguiflow_agents.planner._observe import ObservedEvent
    from penguiflow_agents.telemetry._otel import Tracing

__all__ = ["Telemetry"]

# Outcomes of a tool call that never reached a registered tool: the name is the model's.
_NAME_UNTRUSTED = frozenset({"not_found"})
# The events a run's observation uses (the planner builds no other event for it): settled
# approvals (metrics and spans), retries and pauses (span events). Tool outcomes (metrics)
# come as records (``call_finished``), not as events.
_KINDS = {
    (False, False): frozenset(),
    (True, False): frozenset({"approval_resolved"}),
    (False, True): frozenset({"tool_activity", "approval_resolved", "paused"}),
    (True, True): frozenset({"tool_activity", "approval_resolved", "paused"}),
}


class Telemetry:
    """Tracing (``tracer_provider``, or the global one with ``tracing=True``) and/or ``metrics``.

    ``capture_content`` (default: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``)
    records prompts, answers, tool arguments and results in spans.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        tracing: bool | None = None,
        metrics: Metrics | None = None,
        capture_content: bool | None = None,
    ) -> None:
        self.metrics = metrics
        self._provider = tracer_provider
        self._owns_provider = False
        self.tracing: Tracing | None = None
        if tracing or (tracing is None and tracer_provider is not None):
            try:
                from penguiflow_agents.telemetry._otel import Tracing
            except ImportError:  # pragma: no cover - the [otel] extra is missing
                from penguiflow_agents.exceptions import ConfigError

                raise ConfigError(
                    "environment",
                    "OTEL_TRACES_EXPORTER",
                    "tracing needs OpenTelemetry; install the extra: "
                    "pip install 'penguiflow-agents[otel]'",
                ) from None
            self.tracing = Tracing(tracer_provider, capture_content=capture_content)

    @classmethod
    def from_env(cls, *, metrics: Metrics | None = None, set_global: bool = True) -> Telemetry:
        """Tracing as the standard ``OTEL_*`` variables say (off when they say nothing).

        The provider this creates becomes the global one (``set_global``) and is
        flushed by ``shutdown()``.
        """
        provider = None
        if _otel_asked():  # else OpenTelemetry is not even imported
            try:
                from penguiflow_agents.telemetry._otel import tracer_provider_from_env
            except ImportError:  # pragma: no cover - the [otel] extra is missing
                from penguiflow_agents.exceptions import ConfigError

                raise ConfigError(
                    "environment",
                    "OTEL_TRACES_EXPORTER",
                    "traces are asked for, but OpenTelemetry is not installed; install "
                    "the extra: pip install 'penguiflow-agents[otel]'",
                ) from None
            provider = tracer_provider_from_env()
        telemetry = cls(tracer_provider=provider, metrics=metrics)
        if provider is not None:
            telemetry._owns_provider = True
            if set_global:
                from opentelemetry import trace

                trace.set_tracer_provider(provider)
        return telemetry

    @property
    def enabled(self) -> bool:
        return self.tracing is not None or self.metrics is not None

    def shutdown(self) -> None:
        """Export what is buffered and stop the provider ``from_env`` created (idempotent)."""
        if self._owns_provider and self._provider is not None:
            self._owns_provider = False
            self._provider.shutdown()

    def carrier(self) -> dict[str, str]:
        """The current W3C trace context (``traceparent``), to hand to another process."""
        return self.tracing.carrier() if self.tracing is not None else {}

    def span(self, name: str, **attributes: Any) -> Any:
        """A span around some work of a command (e.g. ``submit``); a no-op without tracing."""
        import contextlib

        if self.tracing is None:
            return contextlib.nullcontext()
        return self.tracing.tracer.start_as_current_span(name, attributes=attributes)

    # -- the seams ----------------------------------------------------------------------------

    def llm(self, llm: Any) -> Any:
        from penguiflow_agents.telemetry._wrappers import wrap_llm

        return wrap_llm(llm, self) if self.enabled else llm

    def tools(self, catalog: Any) -> Any:
        from penguiflow_agents.telemetry._wrappers import TracedCatalog

        if self.metrics is not None:
            self.metrics.watch_registry(catalog)
        return TracedCatalog(catalog, self) if self.enabled else catalog

    def store(self, store: Any) -> Any:
        from penguiflow_agents.telemetry._wrappers import TracedStore

        if self.tracing is None or isinstance(store, TracedStore):
            return store
        return TracedStore(store, self.tracing)

    def instrument(self, planner: ReactPlanner, *, store: Any = None) -> ReactPlanner:
        """``planner`` with its seams wrapped and this object among its observers.

        ``store``: an already wrapped store to use (e.g. one shared with a worker).
        """
        if not self.enabled:
            return planner
        return planner.replace(
            llm=self.llm(planner.llm),
            registry=self.tools(planner.registry),
            store=store if store is not None else self.store(planner.store),
            observers=(*planner.observers, self),
        )

    # -- RunObserver ------------------------------------------------------------------------------

    def open_run(self, info: RunInfo) -> _RunObservation | None:
        if self.metrics is not None:
            return _MeteredRun(self, info)
        if self.tracing is not None:
            return _RunObservation(self, info)
        return None


class _RunObservation:
    __slots__ = (
        "_info",
        "_metrics",
        "_span",
        "_started",
        "_token",
        "_tracing",
        "carrier",
        "kinds",
        "trace_id",
    )

    def __init__(self, telemetry: Telemetry, info: RunInfo) -> None:
        self._info = info
        self._metrics = telemetry.metrics
        self._tracing = tracing = telemetry.tracing
        self.kinds = _KINDS[self._metrics is not None, tracing is not None]
        self._started = time.monotonic()
        self._span: Any = None
        self._token: object = None
        self.trace_id: str | None = None
        self.carrier: Mapping[str, str] = {}
        if tracing is not None:
            span = tracing.invoke_agent(
                run_id=info.run_id,
                tenant=info.tenant,
                model=info.model,
                resumed=info.resumed,
                session_id=info.session_id,
                carrier=info.carrier,
                link=info.link,
            )
            self._span = span
            self._token = tracing.attach(span)
            self.trace_id, self.carrier = tracing.ids(span)

    def event(self, event: ObservedEvent) -> None:
        metrics = self._metrics
        tenant = self._info.tenant
        if isinstance(event, ToolActivity):
            if self._tracing is not None and event.event == "tool.retry":
                data = event.data
                self._tracing.current_event(
                    "gen_ai.tool.retry",
                    {
                        "attempt": int(data.get("attempt", 0)),
                        "delay_s": float(data.get("delay_s", 0)),
                    },
                )
        elif isinstance(event, ApprovalResolved):
            if metrics is not None:
                metrics.approval_settled(
                    event.status, event.decided_at - event.requested_at, tenant
                )
            if self._tracing is not None and self._span is not None:
                self._tracing.approval_wait(
                    self._span,
                    tool=event.tool,
                    approval_id=event.approval_id,
                    status=event.status,
                    requested_at=event.requested_at,
                    decided_at=event.decided_at,
                )
        elif isinstance(event, Paused):
            if self._span is not None:
                self._span.add_event(
                    "paused", {"penguiflow.approval.ids": [p.id for p in event.pending_approvals]}
                )

    def close(self, result: RunResult | None, error: BaseException | None) -> None:
        if result is not None:
            status, why = result.status, result.error
            usage = (result.usage.prompt_tokens, result.usage.completion_tokens)
        else:
            status = "cancelled" if error is None or _is_cancel(error) else "failed"
            why = type(error).__name__ if error is not None else None
            usage = (0, 0)
        if self._metrics is not None:
            self._metrics.run_ended(status, time.monotonic() - self._started, self._info.tenant)
        tracing, span = self._tracing, self._span
        if tracing is not None and span is not None:
            self._span = None
            tracing.end_run(span, status, why, usage)
            tracing.detach(self._token)


class _MeteredRun(_RunObservation):
    """A run's observation when metrics are on: finished calls are counted from their
    records (the planner builds no event for them)."""

    __slots__ = ()

    def call_finished(self, record: Step) -> None:
        outcome = record.outcome
        tool = record.tool
        metrics: Metrics = self._metrics  # type: ignore[assignment]
        if not metrics.tenant_label:  # Metrics.tool_call, inlined (once per call)
            series = metrics._tool_series.get((tool, outcome))  # type: ignore[arg-type]
            if series is not None:  # (a registered tool's series, under its name and outcome)
                series.value += 1
                return
        if outcome in _NAME_UNTRUSTED:
            source = name = UNKNOWN_LABEL
        else:
            name = tool
            source = tool.partition(".")[0] if "." in tool else UNKNOWN_LABEL
        metrics.tool_call(source, name, outcome, self._info.tenant)


def _is_cancel(error: BaseException) -> bool:
    import asyncio

    return isinstance(error, asyncio.CancelledError)


def _otel_asked() -> bool:
    import os

    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return bool(
        (exporter and exporter != "none")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
