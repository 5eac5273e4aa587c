"""Planner overhead per step: what ReactPlanner adds around the model and the tools.

    python benchmarks/planner_overhead.py [--runs N] [--repeat N] [--telemetry-only]
                                          [--processor batch|simple|both]
    python benchmarks/planner_overhead.py --instructions [--runs 60]   # callgrind
    python benchmarks/planner_overhead.py --telemetry-only --paired 30 [--runs 300]

Each run: an in-process scripted model (ScriptedLLM) asks for 5 in-process tool
calls, one per turn, then answers (6 model turns = 6 steps). The time spent
inside ``llm.complete`` and inside ``registry.call`` (a real ToolRegistry with
a Python tool) is measured and subtracted from the wall time of the runs; what
remains is the planner: building requests, checking calls, observations,
events, the run record, its checkpoints and its events in the store
(MemoryStore), the claim and its heartbeat task.

Reported: median over ``--repeat`` batches of ``--runs`` runs (default 5 of 200 for the planner,
15 of 300 for telemetry, whose figure is a difference of two noisy ones), in ms per step:

- ``kv.lookup`` (idempotent, a read) without a policy layer and with a
  PolicySet (view + execution checks): the shape of the requirement. Steps
  of idempotent tools need no checkpoint (a takeover repeats them harmlessly);
- ``kv.bump`` (not idempotent, a write): every step is checkpointed before
  and after its call (two writes of the run's state), so that a takeover
  never runs it twice. Shown for information: its cost is the store's.

Telemetry (also part of the default output; alone with ``--telemetry-only``): the same
lookup with tracing (OpenTelemetry SDK, its default sampler, every span recorded and exported
into an in-memory exporter) and Prometheus metrics on, against off, interleaved round by round;
also metrics alone, 10 % parent-based sampling, and a split of the overhead into the SDK's span
calls, extra garbage collection and the rest. Measured with the SDK's ``BatchSpanProcessor``
(what a deployment's ``OTEL_*`` variables configure; its thread's exports are inside the
measured window) and, for comparison, its ``SimpleSpanProcessor`` (each span exported as it
ends, on the run's own thread); ``--processor`` picks one. Required: at most +0.03 ms per step
with the batch processor (process CPU time against off in the same round). ``--instructions``
counts instructions per step of each configuration under callgrind instead (figures a loaded
machine does not move: this machine's speed drifts up to 2x, with up to 50 % steal time).
``--paired N`` measures the telemetry figure in N pairs of off/on batches instead, the order
alternating from pair to pair, and reports the median of the pairs' differences with its
quartiles: two batches of a pair run within a second of each other, so a machine whose speed
drifts moves both (the default rounds run five configurations between two "off" batches).

Required: at most 0.10 ms per step (a widely used planner needs ~0.14 ms on this
shape here); aim 0.05. Exits 1 when a lookup figure is above the requirement.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm._types import LLMRequest, LLMResponse
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import CallContext, ToolRegistry, ToolResult, tool

REQUIRED_MS = 0.10
TELEMETRY_REQUIRED_MS = 0.03
TARGET_MS = 0.05
TOOL_CALLS = 5
STEPS = TOOL_CALLS + 1


@tool(idempotent=True)
async def lookup(key: str) -> str:
    """Return a value for a key."""
    return "value-" + key


@tool
async def bump(key: str) -> str:
    """Count one more for a key (a write: not idempotent)."""
    return "bumped-" + key


class TimedLLM:
    """Wraps the scripted model and accumulates the time spent inside it."""

    def __init__(self, inner: ScriptedLLM) -> None:
        self.inner = inner
        self.model = inner.model
        self.spent = 0.0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        t0 = time.perf_counter()
        try:
            return await self.inner.complete(request)
        finally:
            self.spent += time.perf_counter() - t0


class TimedRegistry:
    """Wraps the registry and accumulates the time spent inside list_tools and call."""

    def __init__(self, inner: ToolRegistry) -> None:
        self.inner = inner
        self.spent = 0.0

    async def list_tools(self) -> Any:
        t0 = time.perf_counter()
        try:
            return await self.inner.list_tools()
        finally:
            self.spent += time.perf_counter() - t0

    async def call(
        self, name: str, arguments: Mapping[str, Any], ctx: CallContext | None = None
    ) -> ToolResult:
        t0 = time.perf_counter()
        try:
            return await self.inner.call(name, arguments, ctx)
        finally:
            self.spent += time.perf_counter() - t0

    def get(self, name: str) -> Any:
        """The registry's spec of ``name`` as last listed (what telemetry labels calls by)."""
        return self.inner.get(name)


def script(tool_name: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = [
        {"tool_calls": [{"name": tool_name, "arguments": {"key": f"k{i}"}}]}
        for i in range(TOOL_CALLS)
    ]
    turns.append({"content": "All five values looked up."})
    return turns


async def batch(
    planner: ReactPlanner, llm: TimedLLM, reg: TimedRegistry, runs: int, *, collect: bool = True
) -> float:
    headers = Headers(tenant="acme", principal="bench")
    llm.spent = reg.spent = 0.0
    if collect:
        gc.collect()
    t0 = time.perf_counter()
    for _ in range(runs):
        result = await planner.run("look up five keys", headers=headers)
        assert result.status == "completed", result.error
    wall = time.perf_counter() - t0
    return (wall - llm.spent - reg.spent) / (runs * STEPS) * 1000


async def measure(
    runs: int, repeat: int, policies: PolicySet | None, tool_name: str
) -> tuple[float, float]:
    registry = ToolRegistry()
    registry.add_functions(lookup, bump, source="kv", max_concurrency=64)
    llm = TimedLLM(ScriptedLLM(script(tool_name), record=False))
    reg = TimedRegistry(registry)
    planner = ReactPlanner(llm=llm, registry=reg, policies=policies)
    await batch(planner, llm, reg, 20)  # warm up: imports, caches, source listing
    figures = [await batch(planner, llm, reg, runs) for _ in range(repeat)]
    await registry.aclose()
    return statistics.median(figures), min(figures)


class SdkClock:
    """Time spent inside the span calls (start, attributes, events, status, end with the
    SDK's processor and exporter; the lean spans' or, with ``PENGUIFLOW_OTEL_SDK_SPANS=1``,
    the SDK's own), installed only for the batches that measure the split (its own clock
    reads would otherwise count as overhead)."""

    METHODS = ("end", "set_attribute", "set_attributes", "add_event", "set_status")

    def __init__(self) -> None:
        self.spent = 0.0
        self._depth = 0
        self._saved: list[tuple[Any, str, Any]] = []
        self.gc_spent = 0.0
        self._gc_started = 0.0

    def _timed(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:  # an SDK call made by another (set_attribute -> set_attributes)
                return fn(*args, **kwargs)
            self._depth = 1
            t0 = time.perf_counter()  # cheaper than a CPU clock; the calls never wait
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - t0
                self._depth = 0

        return timed

    def install(self, tracing: Any) -> None:
        from opentelemetry.sdk.trace import Span

        from penguiflow_agents.telemetry._spans import LeanSpan

        targets = [(tracing, "_start")] + [(c, m) for c in (Span, LeanSpan) for m in self.METHODS]
        for owner, name in targets:
            # A class's own method (None: inherited), or an instance's attribute as it is.
            original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(getattr(owner, name)))

    def _gc(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_spent += time.perf_counter() - self._gc_started

    def start_gc(self) -> None:
        """Also time the garbage collector's passes (the spans' objects make them more
        frequent and longer, at moments that fall outside the SDK's calls)."""
        self.gc_spent = 0.0
        gc.callbacks.append(self._gc)

    def stop_gc(self) -> float:
        gc.callbacks.remove(self._gc)
        return self.gc_spent

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._saved):
            if original is None:
                delattr(owner, name)  # the instance attribute: the class's method shows again
            else:
                setattr(owner, name, original)
        self._saved.clear()


async def measure_telemetry(runs: int, repeat: int, processor: str) -> dict[str, float]:
    """Telemetry off against on, batches interleaved round by round:

    - ``on``: tracing (every span recorded: ALWAYS_ON sampler, ``processor`` into an in-memory
      exporter) and Prometheus metrics;
    - ``metrics``: metrics only;
    - ``on_sdk``: as ``on`` with ``SdkClock`` installed: how much of it is the SDK's own;
    - ``sampled``: as ``on`` with ``ParentBased(TraceIdRatioBased(0.1))``, the standard
      ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` with ``OTEL_TRACES_SAMPLER_ARG=0.1``.

    Returns medians in ms per step: wall time (model and tools subtracted) of off and on, and
    per configuration the difference in process CPU time against off in the same round
    (the model and the tools cost the same CPU in both; CPU time is less sensitive to a
    loaded machine than wall time)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from penguiflow_agents.telemetry import Metrics, Telemetry

    registry = ToolRegistry()
    registry.add_functions(lookup, bump, source="kv", max_concurrency=64)
    llm = TimedLLM(ScriptedLLM(script("kv.lookup"), record=False))
    reg = TimedRegistry(registry)
    plain = ReactPlanner(llm=llm, registry=reg)

    def traced(sampler: Any = None) -> tuple[ReactPlanner, InMemorySpanExporter, Any, Telemetry]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
        # A batch processor's default queue (2,048 spans) overflows within a batch here and
        # drops spans: a queue big enough for every span of a batch keeps them all.
        span_processor = (
            BatchSpanProcessor(exporter, max_queue_size=1 << 16)
            if processor == "batch"
            else SimpleSpanProcessor(exporter)
        )
        provider.add_span_processor(span_processor)
        # The wrappers sit outside the timed model and registry: their cost counts as overhead.
        telemetry = Telemetry(tracer_provider=provider, metrics=Metrics())
        return telemetry.instrument(plain), exporter, provider, telemetry

    on, exporter, provider, _ = traced()
    on_sdk, sdk_exporter, sdk_provider, sdk_telemetry = traced()
    sampled, sampled_exporter, sampled_provider, _ = traced(ParentBased(TraceIdRatioBased(0.1)))
    metrics_only = Telemetry(metrics=Metrics()).instrument(plain)
    planners = {
        "off": plain,
        "on": on,
        "metrics": metrics_only,
        "on_sdk": on_sdk,
        "sampled": sampled,
    }
    for planner in planners.values():
        await batch(planner, llm, reg, 20)
    for p in (provider, sdk_provider, sampled_provider):
        p.force_flush()
    for e in (exporter, sdk_exporter, sampled_exporter):
        e.clear()
    assert sdk_telemetry.tracing is not None
    clock = SdkClock()
    wall: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {name: [] for name in planners}
    extra: dict[str, list[float]] = {name: [] for name in planners if name != "off"}
    sdk_share: list[float] = []
    gc_on: list[float] = []
    gc_off: list[float] = []
    spans_per_step: list[float] = []
    sampled_spans: list[float] = []
    steps = runs * STEPS
    names = list(planners)
    for round_ in range(repeat):
        # "off" first in each round, the others in an order that rotates from round to round.
        others = names[1:]
        shift = round_ % len(others)
        for name in ["off", *others[shift:], *others[:shift]]:
            planner = planners[name]
            # Outside the measured window: the runs of earlier batches leave the shared store
            # (else every batch finds a bigger heap for the collector to walk), then a collection.
            await plain.store.prune_runs(ended_before=time.time() + 60)
            gc.collect()
            if name == "on_sdk":
                clock.spent = 0.0
                clock.install(sdk_telemetry.tracing)
            if name in ("on_sdk", "off"):
                clock.start_gc()
            c0 = time.process_time()
            figure = await batch(planner, llm, reg, runs, collect=False)
            if name == "on":
                provider.force_flush()  # the batch processor's thread exports within the window
            cpu[name].append((time.process_time() - c0) / steps * 1000)
            if name == "on_sdk":
                clock.uninstall()
                sdk_share.append(clock.spent / steps * 1000)
            if name in ("on_sdk", "off"):
                (gc_on if name == "on_sdk" else gc_off).append(clock.stop_gc() / steps * 1000)
            if name in wall:
                wall[name].append(figure)
        for name in extra:
            extra[name].append(cpu[name][-1] - cpu["off"][-1])
        provider.force_flush()
        spans = len(exporter.get_finished_spans())
        assert spans >= steps * 2, spans  # a chat and an execute_tool span per step, all kept
        spans_per_step.append(spans / steps)
        sampled_provider.force_flush()
        sampled_spans.append(len(sampled_exporter.get_finished_spans()) / steps)
        for e in (exporter, sdk_exporter, sampled_exporter):
            e.clear()
    await registry.aclose()
    for p in (provider, sdk_provider, sampled_provider):
        p.shutdown()
    out = {f"cpu_{name}": statistics.median(values) for name, values in extra.items()}
    out["wall_off"] = statistics.median(wall["off"])
    out["wall_on"] = statistics.median(wall["on"])
    out["cpu_off_abs"] = statistics.median(cpu["off"])
    out["sdk"] = statistics.median(sdk_share)
    out["gc"] = statistics.median(a - b for a, b in zip(gc_on, gc_off, strict=True))
    out["spans_per_step"] = statistics.median(spans_per_step)
    out["sampled_spans_per_step"] = statistics.median(sampled_spans)
    return out


# -- instruction counts (callgrind): figures a loaded machine does not move --------------------

IR_CONFIGS = ("off", "metrics", "noop_tracer", "on", "on_batch", "sampled_out", "sampled")


def ir_planner(config: str, plain: ReactPlanner) -> tuple[ReactPlanner, Any]:
    """``plain`` as configured for an instruction count (and the provider to flush, if any)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
    from opentelemetry.trace import NoOpTracerProvider

    from penguiflow_agents.telemetry import Metrics, Telemetry

    if config == "off":
        return plain, None
    if config == "metrics":
        return Telemetry(metrics=Metrics()).instrument(plain), None
    if config == "noop_tracer":  # our tracing code alone: the API's no-op spans
        return Telemetry(tracer_provider=NoOpTracerProvider()).instrument(plain), None
    sampler = {
        "on": None,
        "on_batch": None,
        "sampled_out": ALWAYS_OFF,
        "sampled": ParentBased(TraceIdRatioBased(0.1)),
    }[config]
    provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    provider.add_span_processor(
        # A queue that holds every span of the measured runs (the default's 2,048 would drop).
        BatchSpanProcessor(InMemorySpanExporter(), max_queue_size=1 << 16)
        if config == "on_batch"
        else SimpleSpanProcessor(InMemorySpanExporter())
    )
    return Telemetry(tracer_provider=provider, metrics=Metrics()).instrument(plain), provider


async def ir_child(config: str, runs: int) -> None:
    """Runs under callgrind with instrumentation off until the measured runs."""
    registry = ToolRegistry()
    registry.add_functions(lookup, bump, source="kv", max_concurrency=64)
    plain = ReactPlanner(llm=ScriptedLLM(script("kv.lookup"), record=False), registry=registry)
    planner, provider = ir_planner(config, plain)
    headers = Headers(tenant="acme", principal="bench")
    for _ in range(30):
        await planner.run("look up five keys", headers=headers)
    if provider is not None:
        provider.force_flush()
    gc.collect()
    _instrument("on")  # blocks the loop on purpose: nothing else runs
    for _ in range(runs):
        await planner.run("look up five keys", headers=headers)
    if provider is not None:
        provider.force_flush()  # a batch processor's thread exports within the window
    _instrument("off")
    await registry.aclose()


def _instrument(switch: str) -> None:
    import os
    import subprocess

    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", switch, pid], capture_output=True, check=True)


def instructions(runs: int) -> int:
    """Instructions per step of each configuration (``valgrind --tool=callgrind``)."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("--instructions needs valgrind (callgrind) on the PATH")
        return 1
    print(f"instructions per step (callgrind, {runs} runs x {STEPS} steps, after 30 warm-up runs)")
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in IR_CONFIGS:
            out = Path(tmp) / f"{config}.out"
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    __file__,
                    "--ir-child",
                    config,
                    "--runs",
                    str(runs),
                ],
                capture_output=True,
                check=True,
            )
            totals = next(
                line for line in out.read_text().splitlines() if line.startswith("totals:")
            )
            counts[config] = int(totals.split()[1]) / (runs * STEPS) / 1000
            extra = counts[config] - counts["off"]
            print(f"  {config:12s} {counts[config]:8.1f} kIr/step  (+{extra:.1f})")
    tracing_ours = counts["noop_tracer"] - counts["off"]
    metrics = counts["metrics"] - counts["off"]
    sdk = counts["on"] - counts["off"] - metrics - tracing_ours
    print(
        f"  split of 'on': metrics {metrics:.1f}, our tracing code {tracing_ours:.1f} "
        f"(with no-op spans), OpenTelemetry SDK {sdk:.1f} kIr/step "
        f"({sdk / (counts['on'] - counts['off']):.0%})"
    )
    print(
        "  (on: simple span processor; on_batch: batch span processor, what OTEL_* variables "
        "configure, its thread's exports counted)"
    )
    return 0


async def measure_paired(runs: int, pairs: int, processor: str) -> dict[str, float]:
    """Telemetry off against on (tracing with every span kept + metrics, ``processor`` into an
    in-memory exporter) in ``pairs`` pairs of batches of ``runs`` runs, the order alternating:
    the median and quartiles of the pairs' differences in process CPU time per step, the
    median "off" and the median on/off ratio."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from penguiflow_agents.telemetry import Metrics, Telemetry

    registry = ToolRegistry()
    registry.add_functions(lookup, bump, source="kv", max_concurrency=64)
    llm = TimedLLM(ScriptedLLM(script("kv.lookup"), record=False))
    reg = TimedRegistry(registry)
    plain = ReactPlanner(llm=llm, registry=reg)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=1 << 16)
        if processor == "batch"
        else SimpleSpanProcessor(exporter)
    )
    on = Telemetry(tracer_provider=provider, metrics=Metrics()).instrument(plain)
    for planner in (plain, on):
        await batch(planner, llm, reg, 20)
    provider.force_flush()
    exporter.clear()
    steps = runs * STEPS
    diffs: list[float] = []
    offs: list[float] = []
    ratios: list[float] = []
    for i in range(pairs):
        cpu: dict[str, float] = {}
        for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
            await plain.store.prune_runs(ended_before=time.time() + 60)
            gc.collect()
            c0 = time.process_time()
            await batch(on if name == "on" else plain, llm, reg, runs, collect=False)
            if name == "on":
                provider.force_flush()  # the batch processor's thread exports within the window
            cpu[name] = (time.process_time() - c0) / steps * 1000
            if name == "on":
                assert len(exporter.get_finished_spans()) >= steps * 2  # every span kept
                exporter.clear()
        diffs.append(cpu["on"] - cpu["off"])
        offs.append(cpu["off"])
        ratios.append(cpu["on"] / cpu["off"])
    await registry.aclose()
    provider.shutdown()
    q1, median, q3 = statistics.quantiles(diffs, n=4)
    return {
        "median": median,
        "q1": q1,
        "q3": q3,
        "off": statistics.median(offs),
        "ratio": statistics.median(ratios),
    }


def paired_figures(runs: int, pairs: int, processor: str) -> bool:
    """Prints the paired telemetry figure with ``processor``; True when it meets the
    requirement (the median of the pairs' differences)."""
    t = asyncio.run(measure_paired(runs, pairs, processor))
    print(
        f"telemetry, paired: {pairs} pairs of off/on batches of {runs} runs, order alternating; "
        f"{processor} span processor into an in-memory exporter, every span kept, metrics on"
    )
    print(f"  {'lookup, telemetry off (CPU)':40s} {t['off']:.4f} ms/step (median)")
    print(
        f"  {'tracing + metrics on (CPU)':40s} +{t['median']:.4f} ms/step (median of the pairs; "
        f"quartiles +{t['q1']:.4f} .. +{t['q3']:.4f}; on/off {t['ratio']:.3f})"
    )
    ok = t["median"] <= TELEMETRY_REQUIRED_MS
    print(
        f"telemetry required <= +{TELEMETRY_REQUIRED_MS} ms/step (every span kept, CPU), "
        f"{processor} processor, paired: {'meets' if ok else 'MISSES'} the requirement"
    )
    return ok


def telemetry_figures(runs: int, repeat: int, processor: str) -> bool:
    """Prints the telemetry figures with ``processor``; True when they meet the requirement."""
    t = asyncio.run(measure_telemetry(runs, repeat, processor))
    extra = t["cpu_on"]
    tracing_ours = t["cpu_on_sdk"] - t["sdk"] - t["gc"] - t["cpu_metrics"]
    print(
        f"telemetry: {processor} span processor into an in-memory exporter, every span "
        f"kept ({t['spans_per_step']:.2f} spans per step), metrics on; process CPU time per "
        f"step against off in the same round (median of {repeat} batches of {runs} runs)"
    )
    print(f"  {'lookup, telemetry off (wall)':40s} {t['wall_off']:.4f} ms/step")
    print(
        f"  {'lookup, tracing + metrics on (wall)':40s} {t['wall_on']:.4f} ms/step "
        f"(+{t['wall_on'] - t['wall_off']:.4f})"
    )
    print(f"  {'lookup, telemetry off (CPU)':40s} {t['cpu_off_abs']:.4f} ms/step")
    print(f"  {'tracing + metrics on (CPU)':40s} +{extra:.4f} ms/step")
    print(f"  {'  metrics alone (CPU)':40s} +{t['cpu_metrics']:.4f} ms/step")
    print(
        f"  {'  split run: all (CPU, SDK clocked)':40s} +{t['cpu_on_sdk']:.4f} ms/step, of which "
        f"span calls (with the SDK's processor and exporter) {t['sdk']:.4f}, more garbage collection "
        f"{t['gc']:+.4f}, metrics ~{t['cpu_metrics']:.4f}, our tracing code ~{tracing_ours:.4f}"
    )
    print(
        f"  {'sampled 10% (parentbased_traceidratio)':40s} +{t['cpu_sampled']:.4f} ms/step "
        f"({t['sampled_spans_per_step']:.2f} spans per step kept)"
    )
    tel_ok = extra <= TELEMETRY_REQUIRED_MS
    print(
        f"telemetry required <= +{TELEMETRY_REQUIRED_MS} ms/step (every span kept, CPU), "
        f"{processor} processor: {'meets' if tel_ok else 'MISSES'} the requirement"
    )
    return tel_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per batch (default 200; telemetry 300)")
    parser.add_argument(
        "--repeat", type=int, help="batches, the median taken (default 5; telemetry 15)"
    )
    parser.add_argument(
        "--processor",
        choices=("batch", "simple", "both"),
        default="both",
        help="span processor of the telemetry figures (batch: what OTEL_* variables configure, "
        "the requirement's; simple: the SDK's synchronous one, for comparison)",
    )
    parser.add_argument(
        "--telemetry-only", action="store_true", help="only the telemetry on/off figures"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead: instructions per step of each telemetry configuration under callgrind",
    )
    parser.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="the telemetry figure from N pairs of off/on batches (order alternating): the "
        "median of the pairs' differences, for a machine whose speed drifts",
    )
    parser.add_argument("--ir-child", choices=IR_CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    if args.ir_child:
        asyncio.run(ir_child(args.ir_child, args.runs or 60))
        return 0
    if args.instructions:
        return instructions(args.runs or 60)
    policy = PolicySet.from_documents([{"tenant": "*", "allow": ["kv.*"]}])
    runs, repeat = args.runs or 200, args.repeat or 5
    # Telemetry's figure is the difference of two noisy ones: more and larger batches.
    tel_runs, tel_repeat = args.runs or 300, args.repeat or 15
    if args.telemetry_only:
        how = f"{args.paired} pairs" if args.paired else f"median of {tel_repeat}"
        print(
            f"planner overhead, {tel_runs} runs x {STEPS} steps ({TOOL_CALLS} tool calls + "
            f"answer), {how}"
        )
    worst = 0.0
    if not args.telemetry_only:
        print(
            f"planner overhead, {runs} runs x {STEPS} steps ({TOOL_CALLS} tool calls + answer), "
            f"median of {repeat}"
        )
        for label, policies, tool_name in (
            ("lookup, no policies", None, "kv.lookup"),
            ("lookup, with PolicySet", policy, "kv.lookup"),
            ("bump (2 checkpoints/step), no policies", None, "kv.bump"),
        ):
            median, best = asyncio.run(measure(runs, repeat, policies, tool_name))
            if tool_name == "kv.lookup":
                worst = max(worst, median)
            print(f"  {label:40s} {median:.4f} ms/step (best {best:.4f})")
        verdict = "meets" if worst <= REQUIRED_MS else "MISSES"
        print(f"required <= {REQUIRED_MS} ms/step, target {TARGET_MS}: {verdict} the requirement")
    processors = ("batch", "simple") if args.processor == "both" else (args.processor,)
    if args.paired:
        verdicts = {p: paired_figures(tel_runs, args.paired, p) for p in processors}
    else:
        verdicts = {p: telemetry_figures(tel_runs, tel_repeat, p) for p in processors}
    # The requirement's configuration: the batch processor, what a deployment's OTEL_* variables
    # configure (the simple one exports each span as it ends, on the run's own thread).
    tel_ok = verdicts["batch"] if "batch" in verdicts else verdicts[processors[0]]
    return 0 if worst <= REQUIRED_MS and tel_ok else 1


if __name__ == "__main__":
    sys.exit(main())
