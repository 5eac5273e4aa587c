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

from bisect import bisect_left
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
        from prometheus_client import CollectorRegistry, Gauge

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.tenant_label = tenant_label
        t: tuple[str, ...] = ("tenant",) if tenant_label else ()
        r = self.registry
        # The counters and histograms of runs, model and tool calls are updated several times
        # per step: plain numbers read by one collector when scraped (``_Family``), not
        # ``prometheus_client`` metrics (a lock and several calls per update).
        self.runs = _Family(
            "penguiflow_runs", "Runs (and resumes) by how they ended.", ("status", *t)
        )
        self.run_seconds = _Family(
            "penguiflow_run_seconds",
            "Wall time of a run, or of one resume of it, in this process.",
            t,
            RUN_BUCKETS,
        )
        self.model_calls = _Family(
            "penguiflow_model_calls", "Model calls.", ("model", "outcome", *t)
        )
        self.model_seconds = _Family(
            "penguiflow_model_call_seconds", "Duration of a model call.", ("model",), MODEL_BUCKETS
        )
        self.model_tokens = _Family(
            "penguiflow_model_tokens", "Tokens by kind (input, output).", ("model", "kind", *t)
        )
        self.model_cost = _Family(
            "penguiflow_model_cost_usd",
            "Model cost in USD (when the model reports prices).",
            ("model", *t),
        )
        self.tool_calls = _Family(
            "penguiflow_tool_calls",
            "Tool calls of runs by outcome (ok or why not: denied, timeout, rejected, ...).",
            ("source", "tool", "outcome", *t),
        )
        self.tool_seconds = _Family(
            "penguiflow_tool_call_seconds",
            "Duration of a tool call through the registry (queueing and retries included).",
            ("source",),
            TOOL_BUCKETS,
        )
        self.queue_wait = _Family(
            "penguiflow_source_queue_wait_seconds",
            "Wait for a free slot of a source (max_concurrency).",
            ("source",),
            QUEUE_BUCKETS,
        )
        self.approvals = _Family(
            "penguiflow_approvals", "Approvals settled by runs, by outcome.", ("outcome", *t)
        )
        self.approval_wait = _Family(
            "penguiflow_approval_wait_seconds",
            "From an approval request to its decision (or expiry).",
            t,
            WAIT_BUCKETS,
        )
        r.register(
            _FamiliesCollector(
                [
                    self.runs,
                    self.run_seconds,
                    self.model_calls,
                    self.model_seconds,
                    self.model_tokens,
                    self.model_cost,
                    self.tool_calls,
                    self.tool_seconds,
                    self.queue_wait,
                    self.approvals,
                    self.approval_wait,
                ]
            )
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
        # (model, outcome[, tenant]) -> (calls, seconds, input tokens, output tokens, cost); the
        # "ok" series of a model also under its name alone (without tenant labels)
        self._model_series: dict[tuple[str, ...] | str, _ModelSeries] = {}
        # (source, tool, outcome[, tenant]) -> the calls series
        self._tool_series: dict[tuple[str, ...], _Series] = {}
        # source -> its tool-duration / queue-wait series
        self._tool_seconds: dict[str, _Series] = {}
        self._queue_waits: dict[str, _Series] = {}

    # -- recording (hot paths: the series looked up once per label set) -----------------------

    def _t(self, tenant: str) -> tuple[str, ...]:
        return (tenant,) if self.tenant_label else ()

    def run_ended(self, status: str, seconds: float, tenant: str) -> None:
        t = self._t(tenant)
        self.runs.series((status, *t)).inc(1)
        self.run_seconds.series(t).observe(seconds)

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
        self._model(model, outcome, tenant).record(seconds, input_tokens, output_tokens, cost_usd)

    def model_ok(
        self,
        model: str,
        seconds: float,
        tenant: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
    ) -> None:
        """``model_call(model, "ok", ...)`` with positional arguments."""
        self.model_series(model, tenant).record(seconds, input_tokens, output_tokens, cost_usd)

    def model_series(self, model: str, tenant: str) -> _ModelSeries:
        """The series of ``model``'s successful calls (for ``tenant``, with tenant labels): what
        ``model_ok`` records into, for a caller to keep (once per model without tenant labels)."""
        series = self._model_series.get((model, "ok", tenant) if self.tenant_label else model)
        if series is None:
            series = self._model(model, "ok", tenant)
            if not self.tenant_label:  # the same series, also under the model's name alone
                self._model_series[model] = series
        return series

    def _model(self, model: str, outcome: str, tenant: str) -> _ModelSeries:
        key = (model, outcome, tenant) if self.tenant_label else (model, outcome)
        series = self._model_series.get(key)
        if series is None:
            t = self._t(tenant)
            series = self._model_series[key] = _ModelSeries(
                self,
                self.model_calls.series((model, outcome, *t)),
                self.model_seconds.series((model,)),
                (model, "input", *t),
                (model, "output", *t),
                (model, *t),
            )
        return series

    def tool_call(self, source: str, tool: str, outcome: str, tenant: str) -> None:
        key = (source, tool, outcome, tenant) if self.tenant_label else (source, tool, outcome)
        series = self._tool_series.get(key)
        if series is None:
            series = self._tool_series[key] = self.tool_calls.series(key)
            if not self.tenant_label and tool != UNKNOWN_LABEL:
                # The same series under (tool, outcome) as well: a finished call's record
                # names both (the source is the tool's prefix).
                self._tool_series[(tool, outcome)] = series
        series.value += 1

    def tool_seconds_observe(self, source: str, seconds: float) -> None:
        self.tool_seconds_series(source).observe(seconds)

    def tool_seconds_series(self, source: str) -> _Series:
        """The histogram of ``source``'s call durations (observed in place by the catalog)."""
        series = self._tool_seconds.get(source)
        if series is None:
            series = self._tool_seconds[source] = self.tool_seconds.series((source,))
        return series

    def queue_waited(self, source: str) -> _Series:
        """The histogram ``source``'s calls count their queue waits in, in place."""
        series = self._queue_waits.get(source)
        if series is None:
            series = self._queue_waits[source] = self.queue_wait.series((source,))
        return series

    def approval_settled(self, outcome: str, wait_s: float, tenant: str) -> None:
        t = self._t(tenant)
        self.approvals.series((outcome, *t)).inc(1)
        self.approval_wait.series(t).observe(max(wait_s, 0.0))

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


class _Series:
    """One labelled series: a counter's value, or a histogram's bucket counts and sum.

    Updated by the event loop's thread only; a scrape from another thread reads plain
    numbers (each read is atomic under the GIL; a scrape in the middle of an update may see
    a histogram's count one ahead of its sum, as with ``prometheus_client``'s own locks)."""

    __slots__ = ("bounds", "counts", "created", "sum", "value")

    def __init__(self, bounds: tuple[float, ...] | None) -> None:
        import time

        self.created = time.time()
        self.value: float = 0
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1) if bounds is not None else []
        self.sum = 0.0

    def inc(self, amount: float) -> None:
        self.value += amount

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # type: ignore[arg-type]
        self.sum += value


class _ModelSeries:
    """The series of one (model, outcome[, tenant]): calls and durations, and the token and
    cost series once used."""

    __slots__ = (
        "calls",
        "cost",
        "cost_key",
        "duration",
        "input",
        "input_key",
        "metrics",
        "output",
        "output_key",
    )

    def __init__(
        self,
        metrics: Metrics,
        calls: _Series,
        duration: _Series,
        input_key: tuple[str, ...],
        output_key: tuple[str, ...],
        cost_key: tuple[str, ...],
    ) -> None:
        self.calls = calls
        self.duration = duration
        self.input_key = input_key
        self.output_key = output_key
        self.cost_key = cost_key
        self.input: _Series | None = None
        self.output: _Series | None = None
        self.cost: _Series | None = None
        self.metrics = metrics

    def record(
        self, seconds: float, input_tokens: int, output_tokens: int, cost_usd: float | None
    ) -> None:
        """One call: its duration, tokens and cost."""
        self.calls.value += 1
        duration = self.duration
        duration.counts[bisect_left(duration.bounds, seconds)] += 1  # type: ignore[arg-type]
        duration.sum += seconds
        # Token and cost series are made when first used (a model without prices has none).
        if input_tokens:
            tokens = self.input
            if tokens is None:
                tokens = self.input = self.metrics.model_tokens.series(self.input_key)
            tokens.value += input_tokens
        if output_tokens:
            tokens = self.output
            if tokens is None:
                tokens = self.output = self.metrics.model_tokens.series(self.output_key)
            tokens.value += output_tokens
        if cost_usd:
            cost = self.cost
            if cost is None:
                cost = self.cost = self.metrics.model_cost.series(self.cost_key)
            cost.value += cost_usd


class _Family:
    """A counter (``buckets`` None) or a histogram with a fixed set of label names; its series
    are created on first use (a family without labels has its one series from the start, as
    ``prometheus_client`` shows it)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float] | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.buckets = tuple(float(b) for b in buckets) if buckets is not None else None
        self._series: dict[tuple[str, ...], _Series] = {}
        if not self.labels:
            self.series(())

    def series(self, values: tuple[str, ...]) -> _Series:
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labels):  # a programming error, caught by the tests
                raise ValueError(f"{self.name}: labels {self.labels}, got {values}")
            series = self._series[values] = _Series(self.buckets)
        return series

    def family(self, with_samples: bool = True) -> Any:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
        from prometheus_client.samples import Sample

        if self.buckets is None:
            counter = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
            if with_samples:
                for values, s in list(self._series.items()):
                    counter.add_metric(values, s.value, created=s.created)
            return counter
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        if not with_samples:
            return histogram
        bounds = [*(_float_text(b) for b in self.buckets), "+Inf"]
        for values, s in list(self._series.items()):
            running = 0
            cumulative = []
            for bound, count in zip(bounds, list(s.counts), strict=True):
                running += count
                cumulative.append((bound, running))
            histogram.add_metric(values, cumulative, s.sum)
            histogram.samples.append(
                Sample(
                    f"{self.name}_created", dict(zip(self.labels, values, strict=True)), s.created
                )
            )
        return histogram


def _float_text(value: float) -> str:
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


class _FamiliesCollector:
    """Exposes ``_Family`` objects to a ``CollectorRegistry``."""

    def __init__(self, families: Sequence[_Family]) -> None:
        self.families = list(families)

    def describe(self) -> list[Any]:
        return [f.family(with_samples=False) for f in self.families]

    def collect(self) -> Iterator[Any]:
        for f in self.families:
            yield f.family()


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
