"""The lean spans (``telemetry/_spans.py``) against the OpenTelemetry SDK's own.

A run traced both ways exports the same spans (names, kinds, parents,
attributes, statuses, events); the lean spans go through the provider's
sampler, span limits and processors and encode to OTLP like any SDK span.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, StatusCode

from penguiflow_agents import Headers, ReactPlanner, ToolRegistry
from penguiflow_agents.telemetry import TRACE_HEADERS_KEY, Telemetry
from penguiflow_agents.telemetry._spans import SDK_SPANS_ENV, LeanSpan, span_factory
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import CallContext, tool
from penguiflow_agents.tools._types import trace_headers

ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])
# Attributes that differ from run to run (ids), left out of the comparison.
_VARYING = {"penguiflow.run.id", "gen_ai.tool.call.id", "gen_ai.conversation.id"}


@tool(idempotent=True)
async def lookup(key: str) -> str:
    """A value for a key."""
    return "value-" + key


@tool(idempotent=True)
async def broken(key: str) -> str:
    """Always fails."""
    raise RuntimeError("backend down")


SCRIPT: list[dict[str, Any]] = [
    {
        "tool_calls": [
            {"id": "c-1", "name": "kv.lookup", "arguments": {"key": "a"}},
            {"id": "c-2", "name": "kv.broken", "arguments": {"key": "b"}},
        ]
    },
    {"content": "One worked."},
]


def _provider(
    exporter: InMemorySpanExporter, *processors: SpanProcessor, **kwargs: Any
) -> TracerProvider:
    provider = TracerProvider(**kwargs)
    for p in processors:
        provider.add_span_processor(p)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def _run(provider: TracerProvider, *, capture: bool = False) -> str:
    registry = ToolRegistry()
    registry.add_functions(lookup, broken, source="kv")
    planner = Telemetry(tracer_provider=provider, capture_content=capture).instrument(
        ReactPlanner(llm=ScriptedLLM(SCRIPT), registry=registry)
    )
    try:
        result = await planner.run("Look up a and b.", headers=ALICE, session_id="s-1")
    finally:
        await registry.aclose()
    assert result.status == "completed", result.error
    return result.run_id


def _shape(spans: Sequence[ReadableSpan]) -> Counter[Any]:
    names = {s.context.span_id: s.name for s in spans}
    return Counter(
        (
            s.name,
            s.kind,
            names.get(s.parent.span_id) if s.parent is not None else None,
            tuple(sorted((k, v) for k, v in s.attributes.items() if k not in _VARYING)),
            s.status.status_code,
            tuple(e.name for e in s.events),
            len(s.links),
            s.instrumentation_scope.name if s.instrumentation_scope else None,
            tuple(sorted(s.resource.attributes.items())),
        )
        for s in spans
    )


async def test_a_run_exports_the_same_spans_as_with_the_sdk_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shapes = {}
    for implementation in ("lean", "sdk"):
        if implementation == "sdk":
            monkeypatch.setenv(SDK_SPANS_ENV, "1")
        else:
            monkeypatch.delenv(SDK_SPANS_ENV, raising=False)
        exporter = InMemorySpanExporter()
        await _run(_provider(exporter))
        spans = exporter.get_finished_spans()
        assert all(isinstance(s, LeanSpan) for s in spans) is (implementation == "lean")
        assert len({s.context.trace_id for s in spans}) == 1
        shapes[implementation] = _shape(spans)
    assert shapes["lean"] == shapes["sdk"]
    names = set(shapes["lean"].elements())
    # The failed call's span carries the error, as with the SDK's spans.
    (failed,) = [n for n in names if n[0] == "execute_tool kv.broken"]
    assert failed[4] is StatusCode.ERROR


async def test_lean_spans_encode_to_otlp_like_sdk_spans() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    exporter = InMemorySpanExporter()
    run_id = await _run(_provider(exporter))
    spans = exporter.get_finished_spans()
    request = ExportTraceServiceRequest.FromString(encode_spans(spans).SerializeToString())
    encoded = [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert len(encoded) == len(spans)
    by_id = {s.span_id: s for s in encoded}
    agent = next(s for s in encoded if s.name == "invoke_agent")
    attrs = {a.key: a.value.string_value for a in agent.attributes}
    assert attrs["penguiflow.run.id"] == run_id
    for s in encoded:
        if s is not agent:
            assert s.parent_span_id in by_id  # every other span has its parent in the export
        assert s.end_time_unix_nano >= s.start_time_unix_nano > 0
        assert s.trace_id == agent.trace_id


async def test_the_sampler_is_asked_and_its_decision_holds() -> None:
    class NoStore(Sampler):
        """Samples every span but the store's."""

        def __init__(self) -> None:
            self.asked: list[str] = []

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            self.asked.append(name)
            if name.startswith("store "):
                return SamplingResult(Decision.DROP)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, {**(attributes or {}), "x": 1})

        def get_description(self) -> str:
            return "NoStore"

    sampler = NoStore()
    exporter = InMemorySpanExporter()
    await _run(_provider(exporter, sampler=sampler))
    spans = exporter.get_finished_spans()
    assert spans and not [s for s in spans if s.name.startswith("store ")]
    assert any(name.startswith("store ") for name in sampler.asked)
    assert len(sampler.asked) > len(spans)  # asked for every span, the dropped ones too
    assert all(s.attributes["x"] == 1 for s in spans)  # the sampler's attributes are kept

    # Parent-based with any root sampler: the root is asked, its children follow it.
    exporter = InMemorySpanExporter()
    await _run(_provider(exporter, sampler=ParentBased(TraceIdRatioBased(1.0))))
    everything = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in everything}) == 1
    assert {s.name for s in everything} == {s.name for s in spans} | {
        s for s in (n for n in sampler.asked if n.startswith("store "))
    }

    # Off at the root: nothing recorded, and children follow the parent's decision.
    for off in (ALWAYS_OFF, ParentBased(TraceIdRatioBased(0.0))):
        exporter = InMemorySpanExporter()
        await _run(_provider(exporter, sampler=off))
        assert exporter.get_finished_spans() == ()


async def test_span_limits_and_processors_see_what_the_sdk_gives_them() -> None:
    class Stamp(SpanProcessor):
        def __init__(self) -> None:
            self.started: list[Any] = []

        def on_start(self, span: Any, parent_context: Context | None = None) -> None:
            span.set_attribute("stamped", True)
            self.started.append(span)

    stamp = Stamp()
    exporter = InMemorySpanExporter()
    limits = SpanLimits(max_span_attribute_length=12)
    await _run(_provider(exporter, stamp, span_limits=limits), capture=True)
    spans = exporter.get_finished_spans()
    assert len(stamp.started) == len(spans)
    assert all(s.attributes["stamped"] is True for s in spans)
    chat = next(s for s in spans if s.name.startswith("chat "))
    assert len(chat.attributes["gen_ai.input.messages"]) == 12  # captured, then cut
    # An ended span is frozen: what an exporter holds does not change afterwards.
    chat.set_attribute("late", 1)  # type: ignore[attr-defined]
    chat.add_event("late")  # type: ignore[attr-defined]
    assert "late" not in chat.attributes and not [e for e in chat.events if e.name == "late"]


def test_an_exception_in_a_span_is_recorded_with_an_error_status() -> None:
    exporter = InMemorySpanExporter()
    factory = span_factory(_provider(exporter).get_tracer("test"))
    assert factory is not None
    with pytest.raises(ValueError), factory.start_span("work"):
        raise ValueError("disk full")
    (span,) = exporter.get_finished_spans()
    assert isinstance(span, LeanSpan)
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None and event.attributes["exception.type"] == "ValueError"


def test_invalid_attribute_values_are_dropped_not_exported() -> None:
    """A user's code may set anything on the current span: what OTLP cannot carry is dropped
    (as the SDK drops it), lists become tuples, and the export still succeeds."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    exporter = InMemorySpanExporter()
    factory = span_factory(_provider(exporter).get_tracer("test"))
    assert factory is not None
    span = factory.start_span("work")
    span.set_attribute("ok", "yes")
    span.set_attribute("nested", {"a": 1})
    span.set_attributes({"mixed": [1, "a"], "ids": ["a", "b"], "obj": object()})
    span.add_event("e", {"bad": {"x": 1}, "fine": 2})
    span.end()
    (done,) = exporter.get_finished_spans()
    assert dict(done.attributes) == {"ok": "yes", "ids": ("a", "b")}
    assert dict(done.events[0].attributes or {}) == {"fine": 2}
    encode_spans([done])


def test_a_processor_added_while_a_span_is_open_sees_its_end() -> None:
    """The factory keeps the processors' hooks, refreshed when the provider gets a new one."""
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    provider = _provider(first)
    factory = span_factory(provider.get_tracer("test"))
    assert factory is not None
    span = factory.start_span("open")
    provider.add_span_processor(SimpleSpanProcessor(second))
    span.end()
    assert [s.name for s in first.get_finished_spans()] == ["open"]
    assert [s.name for s in second.get_finished_spans()] == ["open"]
    factory.start_span("next").end()
    assert len(second.get_finished_spans()) == 2


def test_current_span_switches_are_the_apis_own_context(caplog: pytest.LogCaptureFixture) -> None:
    """Our attach/detach set the same context the OpenTelemetry API reads and writes: a span
    made current here is the API's current span, a span the API made current is our parent,
    a span's ``context`` is its span context (what processors read), and a token detached
    out of order is logged, as the API logs it, instead of raising."""
    import contextvars

    from opentelemetry import context as otel_context
    from opentelemetry import trace

    from penguiflow_agents.telemetry._spans import attach_span, current_span, detach

    exporter = InMemorySpanExporter()
    provider = _provider(exporter)
    factory = span_factory(provider.get_tracer("test"))
    assert factory is not None
    outer = factory.start_span("outer")
    token = attach_span(outer)
    assert trace.get_current_span() is outer
    with provider.get_tracer("sdk").start_as_current_span("sdk-span") as sdk_span:
        assert current_span() is sdk_span
        inner = factory.start_span("inner")
        assert inner.parent is not None
        assert inner.parent.span_id == sdk_span.get_span_context().span_id
        assert inner.context is inner.get_span_context()
        inner.end()
    assert current_span() is outer
    detach(token)
    assert trace.get_current_span() is trace.INVALID_SPAN
    # A token made in another context cannot reset this one: logged, the context unchanged.
    foreign = contextvars.copy_context().run(attach_span, outer)
    otel_context.attach(Context())
    with caplog.at_level("ERROR"):
        detach(foreign)
    assert "Failed to detach context" in caplog.text
    outer.end()
    assert {s.name for s in exporter.get_finished_spans()} == {"inner", "sdk-span", "outer"}


async def test_a_python_tool_reads_its_calls_trace_context_as_a_mapping() -> None:
    """``CallContext.extra[TRACE_HEADERS_KEY]`` is formatted when read: a tool that reads it
    gets its ``execute_tool`` span's ``traceparent`` (what http and MCP sources send)."""
    seen: dict[str, Any] = {}

    @tool(idempotent=True)
    async def traced(key: str, ctx: CallContext) -> str:
        """Reads its trace context."""
        carrier = ctx.extra[TRACE_HEADERS_KEY]
        seen.update(mapping=dict(carrier), via_sources=trace_headers(ctx), keys=list(carrier))
        return "ok"

    exporter = InMemorySpanExporter()
    registry = ToolRegistry()
    registry.add_functions(traced, source="kv")
    script: list[dict[str, Any]] = [
        {"tool_calls": [{"id": "c-1", "name": "kv.traced", "arguments": {"key": "a"}}]},
        {"content": "done"},
    ]
    planner = Telemetry(tracer_provider=_provider(exporter)).instrument(
        ReactPlanner(llm=ScriptedLLM(script), registry=registry)
    )
    try:
        result = await planner.run("go", headers=ALICE)
    finally:
        await registry.aclose()
    assert result.status == "completed", result.error
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "execute_tool kv.traced"]
    ctx = span.context
    expected = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    assert seen["mapping"] == {"traceparent": expected}
    assert seen["via_sources"] == {"traceparent": expected}
    assert seen["keys"] == ["traceparent"]
