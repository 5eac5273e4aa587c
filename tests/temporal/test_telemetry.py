"""Traces of a run on Temporal: each model turn and tool call is an activity span naming the
workflow and the activity, a child of the submitter's trace, around the chat / execute_tool
spans (a TemporalWorker with telemetry, in this process, against the dev server)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.store import open_store
from penguiflow_agents.telemetry import Metrics, Telemetry
from penguiflow_agents.temporal import TemporalEngine, TemporalTarget, TemporalWorker
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.testing.temporal_dev import TemporalDevServer
from penguiflow_agents.tools import ToolRegistry, tool

from .conftest import WAIT_S

POLICY = {"tenant": "*", "allow": ["kv.*"]}


@tool(idempotent=True)
async def lookup(key: str) -> str:
    """A value for a key."""
    return "value-" + key


async def model(request: LLMRequest) -> LLMResponse:
    if any(m["role"] == "tool" for m in request.messages):
        return LLMResponse(content="It is value-k.")
    return LLMResponse(
        content=None, tool_calls=[LLMToolCall(id="c1", name="kv.lookup", arguments={"key": "k"})]
    )


async def test_activity_spans_carry_the_workflow_and_activity_ids_under_the_callers_trace(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider=provider, metrics=Metrics(tenant_label=True))
    url = f"{temporal_server.url}?task_queue=pf-traces-{tmp_path.name[-8:]}"
    store = await open_store(f"sqlite:///{tmp_path / 'state.db'}")
    registry = ToolRegistry()
    registry.add_functions(lookup, source="kv")
    llm = ScriptedLLM([model, model], record=False)
    worker = TemporalWorker(
        TemporalTarget.parse(url),
        store=store,
        registry=registry,
        open_model=lambda _m: contextlib.nullcontext(llm),
        policy_documents=[POLICY],
        telemetry=telemetry,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop=stop))
    try:
        engine = await TemporalEngine.connect(url)
        alice = Headers(tenant="acme", principal="alice")
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("caller") as caller:
            run_id = await engine.submit("what is k?", headers=alice, trace=telemetry.carrier())
        result = await asyncio.wait_for(engine.result(run_id, headers=alice), WAIT_S)
        assert result.status == "completed", result.error
    finally:
        stop.set()
        await asyncio.wait_for(running, WAIT_S)
        await registry.aclose()
        await store.aclose()
    spans = exporter.get_finished_spans()
    activities = [s for s in spans if s.name.startswith("activity ")]
    assert sorted(s.name for s in activities) == [
        "activity model_turn",
        "activity model_turn",
        "activity tool_call",
    ]
    trace_id = caller.get_span_context().trace_id
    for span in activities:
        attrs = dict(span.attributes or {})
        assert attrs["temporal.workflow.id"] == run_id == attrs["penguiflow.run.id"]
        assert attrs["temporal.activity.id"] and attrs["temporal.activity.attempt"] == 1
        assert attrs["penguiflow.tenant"] == "acme"
        assert span.context.trace_id == trace_id  # the caller's trace goes on in the worker
        assert span.parent is not None and span.parent.span_id == caller.get_span_context().span_id
    by_id = {s.context.span_id: s for s in spans}
    (call,) = [s for s in spans if s.name == "execute_tool kv.lookup"]
    assert call.parent is not None and by_id[call.parent.span_id].name == "activity tool_call"
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == 2
    assert {by_id[c.parent.span_id].name for c in chats if c.parent} == {"activity model_turn"}
    assert telemetry.metrics is not None
    text = telemetry.metrics.render().decode()
    assert 'source="kv"' in text  # the per-source call metrics count calls on Temporal too
