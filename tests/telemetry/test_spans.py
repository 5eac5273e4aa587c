"""GenAI spans of a run, recorded with OpenTelemetry's in-memory exporter.

Names and attributes follow the GenAI semantic conventions; parent/child links
hold for parallel calls (each call task inherits the run's span); a retry is a
span event; a run paused in one process and resumed in another is two
``invoke_agent`` spans of one trace, the second a child of (and linked to) the first.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from penguiflow_agents import ApprovalService, Headers, PolicySet, ReactPlanner, ToolRegistry
from penguiflow_agents.store import open_store
from penguiflow_agents.telemetry import Telemetry
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import tool

PROC = str(Path(__file__).with_name("traced_proc.py"))
PROC_TIMEOUT_S = 90
ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])


@pytest.fixture(autouse=True, params=["lean", "sdk"])
def span_implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the lean spans (the default) and with the SDK's own
    (``PENGUIFLOW_OTEL_SDK_SPANS=1``; inherited by the processes the tests start)."""
    if request.param == "sdk":
        monkeypatch.setenv("PENGUIFLOW_OTEL_SDK_SPANS", "1")
    else:
        monkeypatch.delenv("PENGUIFLOW_OTEL_SDK_SPANS", raising=False)
    return str(request.param)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


@tool(idempotent=True)
async def lookup(key: str) -> str:
    """A value for a key."""
    await asyncio.sleep(0.05)  # long enough for the two calls of a step to overlap
    return "value-" + key


_flaky_calls: dict[str, int] = {}


@tool(idempotent=True)
async def flaky(key: str) -> str:
    """Times out on its first call per key, then answers."""
    _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if _flaky_calls[key] == 1:
        await asyncio.sleep(5)
    return "ok-" + key


def _registry() -> ToolRegistry:
    reg = ToolRegistry()
    reg.add_functions(
        lookup,
        flaky,
        source="kv",
        timeout_s=0.3,
        retries={"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.02},
    )
    return reg


SCRIPT: list[dict[str, Any]] = [
    {
        "tool_calls": [
            {"name": "kv.lookup", "arguments": {"key": "a"}, "id": "c-lookup"},
            {"name": "kv.flaky", "arguments": {"key": "k1"}, "id": "c-flaky"},
        ]
    },
    {"content": "Both done."},
]


def test_the_lean_spans_are_the_default_for_an_sdk_provider(
    provider: TracerProvider, span_implementation: str
) -> None:
    from penguiflow_agents.telemetry._spans import LeanSpan

    span = Telemetry(tracer_provider=provider).tracing.chat("m", [])  # type: ignore[union-attr]
    assert isinstance(span, LeanSpan) is (span_implementation == "lean")
    span.end()


def by_name(
    spans: tuple[ReadableSpan, ...] | list[ReadableSpan], prefix: str
) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


async def test_a_run_with_parallel_calls_and_a_retry_is_one_trace_of_genai_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    _flaky_calls.clear()  # the test runs once per span implementation
    registry = _registry()
    planner = Telemetry(tracer_provider=provider).instrument(
        ReactPlanner(llm=ScriptedLLM(SCRIPT), registry=registry)
    )
    capture = structlog.testing.LogCapture()  # what a configured app sees (conftest resets it)
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    result = await planner.run("Look up two keys.", headers=ALICE, session_id="s-1")
    logs = capture.entries
    await registry.aclose()
    assert result.status == "completed", result.error
    spans = exporter.get_finished_spans()

    (agent,) = by_name(spans, "invoke_agent")
    chats = by_name(spans, "chat ")
    tools = {s.attributes["gen_ai.tool.call.id"]: s for s in by_name(spans, "execute_tool ")}
    assert agent.parent is None
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["penguiflow.run.id"] == result.run_id
    assert agent.attributes["penguiflow.tenant"] == "acme"
    assert agent.attributes["penguiflow.run.status"] == "completed"
    assert agent.attributes["gen_ai.conversation.id"] == "s-1"
    trace_id = agent.context.trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}

    assert [c.name for c in chats] == ["chat scripted", "chat scripted"]
    for chat in chats:
        assert chat.parent is not None and chat.parent.span_id == agent.context.span_id
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.request.model"] == "scripted"
        assert "gen_ai.provider.name" in chat.attributes
        assert "gen_ai.usage.input_tokens" in chat.attributes
        assert "gen_ai.input.messages" not in chat.attributes  # contents only when opted in
    assert [c.attributes["gen_ai.response.finish_reasons"] for c in chats] == [
        ("tool_calls",),
        ("stop",),
    ]

    assert set(tools) == {"c-lookup", "c-flaky"}
    for call in tools.values():
        assert call.parent is not None and call.parent.span_id == agent.context.span_id
        assert call.attributes["penguiflow.tool.source"] == "kv"
        assert call.attributes["penguiflow.tool.outcome"] == "ok"
        assert "gen_ai.tool.call.arguments" not in call.attributes
    assert tools["c-lookup"].name == "execute_tool kv.lookup"
    assert tools["c-lookup"].attributes["gen_ai.tool.name"] == "kv.lookup"
    # The two calls of the step ran at the same time.
    a, b = tools["c-lookup"], tools["c-flaky"]
    assert a.start_time < b.end_time and b.start_time < a.end_time  # type: ignore[operator]
    # The retry: one event on the flaky call's span, two attempts.
    assert tools["c-flaky"].attributes["penguiflow.tool.attempts"] == 2
    assert [e.name for e in tools["c-flaky"].events] == ["gen_ai.tool.retry"]
    assert tools["c-flaky"].events[0].attributes["attempt"] == 1  # type: ignore[index]
    assert tools["c-lookup"].events == ()

    # Store writes made inside the run are spans of the same trace.
    assert by_name(spans, "store ")
    # Every log line of the run carries its run id, the trace id and the tenant.
    assert {"tool_source.up", "tool.retry"} <= {entry["event"] for entry in logs}
    for entry in logs:
        assert entry["run_id"] == result.run_id
        assert entry["trace_id"] == format(trace_id, "032x")
        assert entry["tenant"] == "acme"


async def test_message_contents_are_recorded_only_when_opted_in(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    registry = _registry()
    script = [
        {"tool_calls": [{"name": "kv.lookup", "arguments": {"key": "zebra"}}]},
        {"content": "The answer is value-zebra."},
    ]
    planner = Telemetry(tracer_provider=provider, capture_content=True).instrument(
        ReactPlanner(llm=ScriptedLLM(script), registry=registry)
    )
    result = await planner.run("What is zebra?", headers=ALICE)
    await registry.aclose()
    assert result.status == "completed"
    spans = exporter.get_finished_spans()
    first_chat = by_name(spans, "chat ")[0]
    assert "What is zebra?" in str(first_chat.attributes["gen_ai.input.messages"])
    assert "zebra" in str(first_chat.attributes["gen_ai.output.messages"])
    (call,) = by_name(spans, "execute_tool ")
    assert json.loads(str(call.attributes["gen_ai.tool.call.arguments"])) == {"key": "zebra"}
    assert "value-zebra" in str(call.attributes["gen_ai.tool.call.result"])


def _proc(db: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, PROC, str(db), *args],
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT_S,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"traced_proc {args} printed nothing; stderr:\n{done.stderr}"
    return dict(json.loads(lines[-1]))


async def test_a_run_paused_in_one_process_and_resumed_in_another_links_the_two_spans(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    paused = await asyncio.to_thread(_proc, db, "pause")
    assert paused["result"]["status"] == "paused"
    (first,) = [s for s in paused["spans"] if s["name"] == "invoke_agent"]
    assert first["attributes"]["penguiflow.run.status"] == "paused"
    assert first["attributes"]["penguiflow.run.resumed"] is False

    store = await open_store(f"sqlite:///{db}")
    policies = PolicySet.from_documents(
        [
            {
                "tenant": "acme",
                "allow": ["files.*"],
                "approvals": [{"match": "files.write", "approvers": ["role:admin"]}],
            }
        ]
    )
    (pending,) = paused["result"]["pending_approvals"]
    approval = await ApprovalService(store, policies).decide(
        tenant="acme", approval_id=pending["id"], principal="bob", roles=["admin"],
        decision="approve",
    )  # fmt: skip
    await store.aclose()

    resumed = await asyncio.to_thread(_proc, db, "resume", paused["result"]["run_id"])
    assert resumed["result"]["status"] == "completed"
    (second,) = [s for s in resumed["spans"] if s["name"] == "invoke_agent"]
    assert second["attributes"]["penguiflow.run.resumed"] is True
    assert second["attributes"]["penguiflow.run.id"] == paused["result"]["run_id"]
    assert second["links"] == [{"trace_id": first["trace_id"], "span_id": first["span_id"]}]
    # The decision came later, in another process: the resume goes on in the run's own trace.
    assert second["trace_id"] == first["trace_id"]
    assert second["parent"] == first["span_id"]
    (wait,) = [s for s in resumed["spans"] if s["name"] == "approval_wait files.write"]
    assert wait["parent"] == second["span_id"]
    assert wait["attributes"]["penguiflow.approval.outcome"] == "approved"
    assert wait["start"] == int(approval.created_at * 1e9)
    assert wait["end"] == int(approval.decision.decided_at * 1e9)  # type: ignore[union-attr]
    (call,) = [s for s in resumed["spans"] if s["name"] == "execute_tool files.write"]
    assert call["parent"] == second["span_id"]


async def test_a_resume_triggered_under_another_trace_stays_in_the_runs_trace_and_links_it(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A later resume (an approval decided through a request with its own ``traceparent``)
    continues the run's trace; the request's trace is a ``resumed_by`` link."""

    @tool
    async def write(path: str) -> str:
        """Write a file."""
        return "written " + path

    registry = ToolRegistry()
    registry.add_functions(write, source="files")
    policies = PolicySet.from_documents(
        [
            {
                "tenant": "acme",
                "allow": ["files.*"],
                "approvals": [{"match": "files.write", "approvers": ["role:admin"]}],
            }
        ]
    )
    turns: list[Any] = [
        {"tool_calls": [{"name": "files.write", "arguments": {"path": "/a"}}]},
        {"content": "Written."},
    ]
    planner = Telemetry(tracer_provider=provider).instrument(
        ReactPlanner(llm=ScriptedLLM(turns), registry=registry, policies=policies)
    )
    paused = await planner.run("write /a", headers=ALICE)
    assert paused.status == "paused"
    await ApprovalService(planner.store, policies).decide(
        tenant="acme", approval_id=paused.pending_approvals[0].id, principal="bob",
        roles=["admin"], decision="approve",
    )  # fmt: skip
    other_trace, other_span = "ab" * 16, "cd" * 8
    done = await planner.resume(
        paused.run_id,
        headers=ALICE,
        trace_carrier={"traceparent": f"00-{other_trace}-{other_span}-01"},
    )
    assert done.status == "completed", done.error
    first, second = by_name(exporter.get_finished_spans(), "invoke_agent")
    assert second.context.trace_id == first.context.trace_id
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    links = {(link.attributes or {}).get("penguiflow.link"): link.context for link in second.links}
    assert links["paused_by"].span_id == first.context.span_id
    assert format(links["resumed_by"].trace_id, "032x") == other_trace
    assert format(links["resumed_by"].span_id, "016x") == other_span


def test_the_standard_sampler_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: fewer spans with OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (nothing in code)."""
    from penguiflow_agents.telemetry._otel import tracer_provider_from_env

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    provider = tracer_provider_from_env()
    assert provider is not None
    try:
        assert "TraceIdRatioBased{0.1}" in provider.sampler.get_description()
    finally:
        provider.shutdown()
