"""Prometheus metrics of runs, model calls, tool calls, sources, approvals and the bus.

``Metrics(registry)`` registers its collectors in a ``prometheus_client``
``CollectorRegistry`` (a fresh one by default, so that two instances never
clash; ``serve`` and ``worker --metrics-port`` expose theirs). Every label set
is bounded: a status, an outcome, a model the process was configured with, a
registered source or tool; never a run id, a trace id or an argument. The
tenant becomes a label only with ``tenant_label=True`` (``--metrics-tenant-label``).

Values that live elsewhere are read when scraped (sources: ``watch_registry``)
or refreshed by ``refresh`` (paused runs from the store, bus backlog and dead
letters), which ``serve`` and ``worker`` call periodically.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MODEL_BUCKETS", "TOOL_BUCKETS", "UNKNOWN_LABEL", "Metrics"]

# Label value for a tool name the model made up (it would make the label set unbounded).
UNKNOWN_LABEL = "_unknown"
# Histogram buckets in seconds: model calls take seconds, tool calls milliseconds to seconds.
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RUN_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
WAIT_BUCKETS = (1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
QUEUE_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


class Metrics:
    """The metrics of one process (see the module docstring for the names)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, tenant_label: bool = False
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.tenant_label = tenant_label
        t: tuple[str, ...] = ("tenant",) if tenant_label else ()
        r = self.registry
        self.runs = Counter(
            "penguiflow_runs", "Runs (and resumes) by how they ended.", ["status", *t], registry=r
        )
        self.run_seconds = Histogram(
            "penguiflow_run_seconds",
            "Wall time of a run, or of one resume of it, in this process.",
            list(t),
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.model_calls = Counter(
            "penguiflow_model_calls", "Model calls.", ["model", "outcome", *t], registry=r
        )
        self.model_seconds = Histogram(
            "penguiflow_model_call_seconds",
            "Duration of a model call.",
            ["model"],
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.model_tokens = Counter(
            "penguiflow_model_tokens",
            "Tokens by kind (input, output).",
            ["model", "kind", *t],
            registry=r,
        )
        self.model_cost = Counter(
            "penguiflow_model_cost_usd",
            "Model cost in USD (when the model reports prices).",
            ["model", *t],
            registry=r,
        )
        self.tool_calls = Counter(
            "penguiflow_tool_calls",
            "Tool calls of runs by outcome (ok or why not: denied, timeout, rejected, ...).",
            ["source", "tool", "outcome", *t],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "penguiflow_tool_call_seconds",
            "Duration of a tool call through the registry (queueing and retries included).",
            ["source"],
            buckets=TOOL_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "penguiflow_source_queue_wait_seconds",
            "Wait for a free slot of a source (max_concurrency).",
            ["source"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.approvals = Counter(
            "penguiflow_approvals",
            "Approvals settled by runs, by outcome.",
            ["outcome", *t],
            registry=r,
        )
        self.approval_wait = Histogram(
            "penguiflow_approval_wait_seconds",
            "From an approval request to its decision (or expiry).",
            list(t),
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.paused_runs = Gauge(
            "penguiflow_paused_runs", "Runs paused for an approval (whole store).", registry=r
        )
        self.bus_backlog = Gauge(
            "penguiflow_bus_backlog", "Jobs on the bus not yet done.", registry=r
        )
        self.bus_dead_letters = Gauge(
            "penguiflow_bus_dead_letters", "Jobs set aside after too many deliveries.", registry=r
        )
        self._sources = _SourceCollector()
        r.register(self._sources)
        self._children: dict[tuple[Any, ...], Any] = {}
        # (model, outcome[, tenant]) -> (calls child, seconds child, tenant labels)
        self._model_children: dict[tuple[str, ...], tuple[Any, Any, tuple[str, ...]]] = {}

    # -- recording (hot paths: cached label children) ------------------------------------------

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values) if values else metric
        return child

    def _t(self, tenant: str) -> tuple[str, ...]:
        return (tenant,) if self.tenant_label else ()

    def run_ended(self, status: str, seconds: float, tenant: str) -> None:
        t = self._t(tenant)
        self._child(self.runs, status, *t).inc()
        self._child(self.run_seconds, *t).observe(seconds)

    def model_call(
        self,
        model: str,
        outcome: str,
        seconds: float,
        tenant: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = None,
    ) -> None:
        key = (model, outcome, tenant) if self.tenant_label else (model, outcome)
        children = self._model_children.get(key)
        if children is None:
            t = self._t(tenant)
            children = self._model_children[key] = (
                self._child(self.model_calls, model, outcome, *t),
                self._child(self.model_seconds, model),
                t,
            )
        calls, duration, t = children
        calls.inc()
        duration.observe(seconds)
        if input_tokens:
            self._child(self.model_tokens, model, "input", *t).inc(input_tokens)
        if output_tokens:
            self._child(self.model_tokens, model, "output", *t).inc(output_tokens)
        if cost_usd:
            self._child(self.model_cost, model, *t).inc(cost_usd)

    def tool_call(self, source: str, tool: str, outcome: str, tenant: str) -> None:
        self._child(self.tool_calls, source, tool, outcome, *self._t(tenant)).inc()

    def tool_seconds_observe(self, source: str, seconds: float) -> None:
        self._child(self.tool_seconds, source).observe(seconds)

    def queue_waited(self, source: str, seconds: float) -> None:
        self._child(self.queue_wait, source).observe(seconds)

    def approval_settled(self, outcome: str, wait_s: float, tenant: str) -> None:
        t = self._t(tenant)
        self._child(self.approvals, outcome, *t).inc()
        self._child(self.approval_wait, *t).observe(max(wait_s, 0.0))

    # -- values read elsewhere ------------------------------------------------------------------

    def watch_registry(self, registry: Any) -> None:
        """Report ``registry``'s sources (up, breaker open, calls in flight) when scraped, and
        the queue wait of each call to them (``ToolRegistry.observe_queue_waits``)."""
        if any(r is registry for r in self._sources.registries):
            return
        self._sources.registries.append(registry)
        observe = getattr(registry, "observe_queue_waits", None)
        if callable(observe):
            observe(self.queue_waited)

    async def refresh(self, *, store: Any = None, bus: Any = None) -> None:
        """Read the paused runs (store) and the bus backlog and dead letters now."""
        if store is not None and hasattr(store, "count_runs"):
            self.paused_runs.set(await store.count_runs(status="paused"))
        if bus is not None:
            if hasattr(bus, "backlog"):
                self.bus_backlog.set(await bus.backlog())
            count = getattr(bus, "dead_letter_count", None)
            if count is not None:
                self.bus_dead_letters.set(await count())

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _SourceCollector:
    """Reads each watched registry's ``status()`` at scrape time."""

    def __init__(self) -> None:
        self.registries: list[Any] = []

    def describe(self) -> Sequence[Any]:
        return list(self._families(()))

    def collect(self) -> Iterator[Any]:
        statuses = []
        for registry in self.registries:
            try:
                statuses.extend(registry.status())
            except Exception:  # a scrape must not fail because one registry is closing
                continue
        yield from self._families(statuses)

    @staticmethod
    def _families(statuses: Sequence[Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(
            "penguiflow_source_up",
            "1 when the source answered its last listing, 0 when down (unknown: absent).",
            labels=["source"],
        )
        breaker = GaugeMetricFamily(
            "penguiflow_breaker_open",
            "1 while the source's circuit breaker is open.",
            labels=["source"],
        )
        inflight = GaugeMetricFamily(
            "penguiflow_source_inflight", "Calls to the source in flight.", labels=["source"]
        )
        for s in statuses:
            if s.up is not None:
                up.add_metric([s.name], 1.0 if s.up else 0.0)
            breaker.add_metric([s.name], 1.0 if s.breaker == "open" else 0.0)
            inflight.add_metric([s.name], float(s.in_flight))
        yield up
        yield breaker
        yield inflight
