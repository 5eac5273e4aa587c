"""The hot paths of the lean spans (``telemetry/_spans.py``) decide and export as the SDK does.

``SpanFactory.child`` starts a run's model, tool and store spans and makes them
current in one step; the SDK's simple and batch processors' ``on_end`` are
repeated for lean spans with less work. Each must give what the general path
and the SDK's own code give: the same sampling decision, trace, parent and trace
state; an export with instrumentation suppressed, errors logged, a shut-down
processor's warning; a batch queue that drops when full and wakes its thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import NonRecordingSpan, SpanKind, TraceState

from penguiflow_agents.telemetry._otel import Tracing
from penguiflow_agents.telemetry._spans import LeanSpan, _fast_on_end, current_span, span_factory

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _tracing(*processors: Any, sampler: Any = None) -> Tracing:
    provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    for p in processors:
        provider.add_span_processor(p)
    return Tracing(provider)


class _RecordOnly(Sampler):
    """Records every span without sampling it (flags 00)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def test_a_child_of_the_current_span_is_its_trace_made_current_and_restored() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(SimpleSpanProcessor(exporter))
    state = TraceState([("vendor", "x")])
    remote = trace.SpanContext(
        trace_id=0xABC,
        span_id=0xDEF,
        is_remote=True,
        trace_flags=trace.TraceFlags(1),
        trace_state=state,
    )
    parent_ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    run = tracing._start("invoke_agent", context=parent_ctx)
    token = tracing.attach(run)
    before = otel_context.get_current()

    span, child_token = tracing.open_chat("openai/gpt-4.1", [])
    assert type(span) is LeanSpan
    assert trace.get_current_span() is span  # current while open
    ctx = span.get_span_context()
    assert ctx.trace_id == 0xABC and ctx.trace_state == state and ctx.trace_flags.sampled
    assert span.parent is not None and span.parent.span_id == run.get_span_context().span_id
    assert span.kind is SpanKind.CLIENT

    tool, tool_token = tracing.open_tool("kv.get", "kv", "c-1", {}, known=True)
    assert tool.parent is not None and tool.parent.span_id == ctx.span_id  # nested in chat
    tracing.end_tool(tool, _Result(), tool_token)
    assert trace.get_current_span() is span
    tracing.end_chat(span, _Response(), child_token)
    assert otel_context.get_current() is before  # the context before the span, restored
    tracing.detach(token)
    run.end()

    chat = next(s for s in exporter.get_finished_spans() if s.name.startswith("chat "))
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.usage.input_tokens"] == 7
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert chat.resource is not None and chat.instrumentation_scope is not None
    assert chat.instrumentation_scope.name == "penguiflow_agents"


def test_a_child_follows_the_samplers_that_decide_by_the_parent() -> None:
    # A record-only parent (made by another provider): always_on samples the child,
    # parentbased_always_on does not (the SDK's own decisions, here through child()).
    recording = _tracing(sampler=_RecordOnly())
    parent = recording._start("invoke_agent")
    assert type(parent) is LeanSpan and not parent.get_span_context().trace_flags.sampled
    token = recording.attach(parent)
    try:
        on = _tracing(sampler=ALWAYS_ON)
        span, span_token = on.open_store("create_run", "memory")
        assert type(span) is LeanSpan and span.get_span_context().trace_flags.sampled
        on.end_store(span, span_token)
        by_parent = _tracing(sampler=ParentBased(ALWAYS_ON))
        span, span_token = by_parent.open_store("create_run", "memory")
        assert not span.is_recording()  # the general path: the SDK's no-op span
        by_parent.end_store(span, span_token)
    finally:
        recording.detach(token)
    # Outside any span, store writes make no span at all.
    assert _tracing().open_store("create_run", "memory") == (None, None)


def test_a_child_asks_a_sampler_that_must_be_asked() -> None:
    asked: list[str] = []

    class Every(Sampler):
        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, *a: Any, **k: Any
        ) -> SamplingResult:
            asked.append(name)
            return SamplingResult(Decision.RECORD_AND_SAMPLE)

        def get_description(self) -> str:
            return "Every"

    exporter = InMemorySpanExporter()
    tracing = _tracing(SimpleSpanProcessor(exporter), sampler=Every())
    run = tracing._start("invoke_agent")
    token = tracing.attach(run)
    span, span_token = tracing.open_chat("m", [])
    tracing.end_chat(span, _Response(), span_token)
    tracing.detach(token)
    run.end()
    assert asked == ["invoke_agent", "chat m"]


def test_the_simple_processor_exports_at_once_with_instrumentation_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, Any, Any]] = []

    class Watching(SpanExporter):
        fail = False

        def export(self, spans: Any) -> SpanExportResult:
            for s in spans:
                seen.append(
                    (
                        s.name,
                        otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY),
                        trace.get_current_span(),
                    )
                )
            if self.fail:
                raise ConnectionError("collector down")
            return SpanExportResult.SUCCESS

    exporter = Watching()
    processor = SimpleSpanProcessor(exporter)
    tracing = _tracing(processor)
    factory = tracing.child.__self__  # type: ignore[union-attr]
    assert factory._ends[0] is not processor.on_end  # the fast path is the one in use
    run = tracing._start("invoke_agent")
    token = tracing.attach(run)
    span, span_token = tracing.open_store("update_run", "memory")
    tracing.end_store(span, span_token)
    assert seen == [("store update_run", True, run)]  # suppressed, under the run's context
    assert otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY) is None  # and restored

    exporter.fail = True
    span, span_token = tracing.open_store("update_run", "memory")
    with caplog.at_level(logging.ERROR):
        tracing.end_store(span, span_token)  # the error is logged, not raised
    assert "Exception while exporting Span." in caplog.text
    assert current_span() is run

    processor.shutdown()
    exporter.fail = False
    span, span_token = tracing.open_store("update_run", "memory")
    with caplog.at_level(logging.WARNING):
        tracing.end_store(span, span_token)
    assert "Processor is already shutdown" in caplog.text
    assert len(seen) == 2  # nothing exported after the shutdown
    tracing.detach(token)


def test_a_record_only_span_is_not_exported() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(SimpleSpanProcessor(exporter), sampler=_RecordOnly())
    span = tracing._start("invoke_agent")
    assert span.is_recording()
    span.end()
    assert exporter.get_finished_spans() == ()


def test_the_batch_processor_queues_wakes_its_thread_and_drops_when_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exported = threading.Event()

    class Counting(InMemorySpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            result = super().export(spans)
            exported.set()
            return result

    exporter = Counting()
    # A long delay: only a full batch wakes the thread before a flush.
    processor = BatchSpanProcessor(
        exporter, max_queue_size=8, max_export_batch_size=4, schedule_delay_millis=60_000
    )
    tracing = _tracing(processor)
    factory = tracing.child.__self__  # type: ignore[union-attr]
    assert factory._ends[0] is not processor.on_end  # the fast path is the one in use
    run = tracing._start("invoke_agent")
    token = tracing.attach(run)
    for _ in range(3):
        tracing.end_store(*tracing.open_store("create_run", "memory"))
    assert len(processor._batch_processor._queue) == 3 and not exported.is_set()
    tracing.end_store(*tracing.open_store("create_run", "memory"))  # the 4th: a full batch
    assert exported.wait(10)
    assert len(exporter.get_finished_spans()) == 4

    # A full queue drops the span, as the SDK does (its warning); the rest is exported.
    queue_owner = processor._batch_processor
    with queue_owner._export_lock:  # the thread cannot drain the queue meanwhile
        with caplog.at_level(logging.WARNING):
            for _ in range(9):
                tracing.end_store(*tracing.open_store("update_run", "memory"))
        assert len(queue_owner._queue) == 8
    assert "Queue full" in caplog.text
    processor.force_flush()
    assert len(exporter.get_finished_spans()) == 4 + 8

    processor.shutdown()
    tracing.end_store(*tracing.open_store("update_run", "memory"))  # after the shutdown
    assert len(exporter.get_finished_spans()) == 12
    tracing.detach(token)


def test_processors_not_known_as_they_are_keep_their_own_on_end() -> None:
    class Mine(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            super().on_end(span)

    exporter = InMemorySpanExporter()
    mine = Mine(exporter)
    assert _fast_on_end(mine) == mine.on_end  # a subclass: its own
    plain = SimpleSpanProcessor(exporter)
    replaced = plain.on_end
    plain.on_end = replaced  # type: ignore[method-assign]
    assert _fast_on_end(plain) is replaced  # replaced on the instance: as it is
    factory = span_factory(_provider_with(mine).get_tracer("t"))
    assert factory is not None
    factory.start_span("x").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["x"]


def _provider_with(*processors: Any) -> TracerProvider:
    provider = TracerProvider()
    for p in processors:
        provider.add_span_processor(p)
    return provider


class _Usage:
    prompt_tokens = 7
    completion_tokens = 3


class _Response:
    usage = _Usage()
    finish_reason = "stop"
    tool_calls: tuple[Any, ...] = ()
    model = "gpt-4.1"
    cost_usd = None
    content = "ok"


class _Result:
    outcome = "ok"
    attempts = 1
    ok = True
    output = "v"


def test_a_span_opened_in_one_context_and_ended_in_another_logs_and_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import contextvars

    exporter = InMemorySpanExporter()
    tracing = _tracing(SimpleSpanProcessor(exporter))
    run = tracing._start("invoke_agent")
    token = tracing.attach(run)
    span, span_token = contextvars.copy_context().run(tracing.open_tool, "kv.get", "kv", "c", {})
    otel_context.attach(Context())
    with caplog.at_level(logging.ERROR):
        tracing.end_tool(span, _Result(), span_token)
    assert "Failed to detach context" in caplog.text
    assert [s.name for s in exporter.get_finished_spans()] == ["execute_tool kv.get"]
    del token


def test_a_root_under_the_default_sampler_is_decided_as_the_sdk_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """parentbased_always_on (the SDK's default) samples a root without being asked; its
    flags are the SDK's; a parent-based sampler with another root sampler is still asked."""
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    sdk_root = TracerProvider().get_tracer("t").start_span("root")
    lean_root = _tracing()._start("root")
    assert type(lean_root) is LeanSpan
    assert lean_root.get_span_context().trace_flags == sdk_root.get_span_context().trace_flags
    assert lean_root.get_span_context().trace_state == sdk_root.get_span_context().trace_state
    asked: list[str] = []
    ratio = TraceIdRatioBased(0.0)
    monkeypatch.setattr(
        ratio,
        "should_sample",
        lambda *a, **k: asked.append("asked") or SamplingResult(Decision.DROP),
    )
    root = _tracing(sampler=ParentBased(ratio))._start("root")
    assert asked == ["asked"] and not root.is_recording()


def test_the_traced_store_keeps_its_stores_methods_once_read() -> None:
    from penguiflow_agents.store import MemoryStore
    from penguiflow_agents.telemetry._wrappers import TracedStore

    store = MemoryStore()
    traced = TracedStore(store, _tracing())
    assert "append_event" not in vars(traced)
    assert traced.append_event == store.append_event
    assert "append_event" in vars(traced)  # the next read skips __getattr__
    # What the store holds on the instance (not a method of its class) is read each time.
    store.hook = lambda: 1  # type: ignore[attr-defined]
    assert traced.hook() == 1
    assert "hook" not in vars(traced)
    store.hook = lambda: 2  # type: ignore[attr-defined]
    assert traced.hook() == 2


def test_a_processor_without_an_instance_dict_is_called_as_it_is() -> None:
    class Slotted:  # a processor by its methods, as the SDK takes it
        __slots__ = ("ended",)

        def __init__(self) -> None:
            self.ended: list[str] = []

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            pass

        def _on_ending(self, span: Any) -> None:
            pass

        def on_end(self, span: ReadableSpan) -> None:
            self.ended.append(span.name)

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    slotted = Slotted()
    assert not hasattr(slotted, "__dict__")
    factory = span_factory(_provider_with(slotted).get_tracer("t"))
    assert factory is not None
    factory.start_span("x").end()
    assert slotted.ended == ["x"]


def test_children_of_a_span_not_sampled_are_cheap_and_as_the_sdk_makes_them() -> None:
    """Under a sampler that follows the parent, or always_off, a child of a span that is not
    sampled is a NonRecordingSpan of its own (a new span id, the parent's trace, flags and
    trace state), current while open; store writes under it make no span at all; an invalid
    parent (the API's INVALID_SPAN made current) gives a root, as the SDK's would."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    state = TraceState([("k", "v")])
    unsampled = trace.SpanContext(
        trace_id=0x1234,
        span_id=0x99,
        is_remote=False,
        trace_flags=trace.TraceFlags(0),
        trace_state=state,
    )
    for sampler in (ParentBased(ALWAYS_ON), ALWAYS_OFF):
        exporter = InMemorySpanExporter()
        tracing = _tracing(SimpleSpanProcessor(exporter), sampler=sampler)
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(unsampled)))
        try:
            span, span_token = tracing.open_tool("kv.get", "kv", "c-1", {})
            assert type(span) is NonRecordingSpan and trace.get_current_span() is span
            ctx = span.get_span_context()
            assert (ctx.trace_id, ctx.trace_state, ctx.is_valid) == (0x1234, state, True)
            assert ctx.span_id != 0x99 and not ctx.trace_flags.sampled
            assert tracing.open_store("update_run", "memory") == (None, None)
            tracing.end_tool(span, _Result(), span_token)
            assert trace.get_current_span().get_span_context() is unsampled
        finally:
            otel_context.detach(token)
        assert exporter.get_finished_spans() == ()
    exporter = InMemorySpanExporter()
    tracing = _tracing(SimpleSpanProcessor(exporter), sampler=ALWAYS_ON)
    token = otel_context.attach(trace.set_span_in_context(trace.INVALID_SPAN))
    try:
        span, span_token = tracing.open_chat("m", [])
        assert span.get_span_context().is_valid and span.parent is None  # a root
        tracing.end_chat(span, _Response(), span_token)
    finally:
        otel_context.detach(token)
    assert [s.name for s in exporter.get_finished_spans()] == ["chat m"]


def test_a_span_shared_by_two_tracers_gets_each_ones_decision_for_its_children() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = InMemorySpanExporter()
    on = _tracing(SimpleSpanProcessor(exporter))
    off = _tracing(SimpleSpanProcessor(InMemorySpanExporter()), sampler=ALWAYS_OFF)
    run = on._start("invoke_agent")
    token = on.attach(run)
    for _ in range(2):  # what a parent's children share is kept: asked again in turns
        first, t1 = on.open_store("update_run", "memory")
        on.end_store(first, t1)
        # The other tracer's child of the same span: its own sampler's decision (not the
        # first tracer's, kept on the span), under the same trace.
        other, t2 = off.open_tool("kv.lookup", "kv", "call_1", {}, True)
        assert type(other) is NonRecordingSpan
        assert not other.get_span_context().trace_flags.sampled
        assert other.get_span_context().trace_id == run.get_span_context().trace_id
        off.end_tool(other, _ok_result(), t2)
    on.detach(token)
    run.end()
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["store update_run", "store update_run", "invoke_agent"]
    assert all(
        s.parent.span_id == run.get_span_context().span_id
        for s in exporter.get_finished_spans()[:2]
    )


def _ok_result() -> Any:
    from penguiflow_agents.tools._types import ToolResult

    return ToolResult.success("kv.lookup", "v")


def test_spans_sharing_static_attributes_never_change_them_or_each_other() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(SimpleSpanProcessor(exporter))
    run = tracing._start("invoke_agent")
    token = tracing.attach(run)
    static = dict(tracing.store_static("update_run", "memory")[1])
    first, t1 = tracing.open_store("update_run", "memory")
    second, t2 = tracing.open_store("update_run", "memory")
    assert first._attributes is second._attributes  # shared until one is written
    first.set_attribute("db.response.rows", 1)  # through the API: a copy of its own
    first.set_attributes({"note": "x"})
    tracing.end_store(second, t2)
    tracing.end_store(first, t1)
    assert tracing.store_static("update_run", "memory")[1] == static  # the shared dict as it was
    ended = {s.context.span_id: s for s in exporter.get_finished_spans()}
    assert dict(ended[second.get_span_context().span_id].attributes) == static
    assert dict(ended[first.get_span_context().span_id].attributes) == {
        **static,
        "db.response.rows": 1,
        "note": "x",
    }
    # A write after the end changes nothing an exporter holds.
    held = ended[first.get_span_context().span_id].attributes
    first.set_attribute("late", True)
    assert "late" not in held and "late" not in first.attributes
    tracing.detach(token)
    run.end()


def test_a_child_keeps_what_else_the_context_holds() -> None:
    from opentelemetry import baggage

    tracing = _tracing(SimpleSpanProcessor(InMemorySpanExporter()))
    outer = otel_context.attach(baggage.set_baggage("tenant.tier", "gold"))
    run = tracing._start("invoke_agent")
    token = tracing.attach(run)
    span, t = tracing.open_chat("openai/gpt-4.1", [])
    assert trace.get_current_span() is span
    assert baggage.get_baggage("tenant.tier") == "gold"  # the context's other entries stay
    tracing.end_chat(span, _chat_response(), t)
    tracing.detach(token)
    otel_context.detach(outer)
    # ...and with the span alone in the context, its child's context is the child alone.
    token = tracing.attach(run)
    span, t = tracing.open_chat("openai/gpt-4.1", [])
    assert dict(otel_context.get_current()) == {
        k: v for k, v in otel_context.get_current().items() if v is span
    }
    tracing.end_chat(span, _chat_response(), t)
    tracing.detach(token)
    run.end()


def _chat_response() -> Any:
    from penguiflow_agents.llm._types import LLMResponse, Usage

    return LLMResponse(content="hi", usage=Usage(prompt_tokens=1, completion_tokens=1))


async def test_the_wrappers_fall_back_to_the_general_path_when_no_span_is_current() -> None:
    from penguiflow_agents.llm._types import LLMRequest
    from penguiflow_agents.store import MemoryStore
    from penguiflow_agents.telemetry import Telemetry
    from penguiflow_agents.testing.scripted_llm import ScriptedLLM

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider=provider)
    llm = telemetry.llm(ScriptedLLM([{"content": "hi"}], record=False))
    store = telemetry.store(MemoryStore())
    assert trace.get_current_span() is trace.INVALID_SPAN
    # Outside a run: a model call is a root span of its own (through the tracer's general
    # path), a store write makes none.
    await llm.complete(LLMRequest(messages=[{"role": "user", "content": "x"}]))
    await store.save_session("acme", "alice", [])
    (span,) = exporter.get_finished_spans()
    assert span.name.startswith("chat ") and span.parent is None
    assert span.attributes["gen_ai.usage.output_tokens"] is not None
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left current
