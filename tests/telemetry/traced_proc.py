"""One stretch of a gated run in its own OS process, traced to memory (driven by test_spans.py).

Usage: python traced_proc.py DB_FILE pause|resume [RUN_ID]

Prints one JSON document on the last line: the result and every finished span
(name, trace id, span id, parent span id, links, attributes, start/end ns).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from penguiflow_agents import Headers, PolicySet, ReactPlanner, ToolRegistry, open_store
from penguiflow_agents.telemetry import Telemetry
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import tool

REQUESTER = Headers(tenant="acme", principal="alice", roles=["staff"])
POLICY = {
    "tenant": "acme",
    "allow": ["files.*"],
    "approvals": [{"match": "files.write", "approvers": ["role:admin"], "reason": "Writes"}],
}
SCRIPT: list[Any] = [
    {"tool_calls": [{"name": "files.write", "arguments": {"text": "hello"}, "id": "w1"}]},
    {"content": "Finished."},
]


@tool
def write(text: str) -> str:
    """Write a note."""
    return "wrote " + text


def span_doc(s: Any) -> dict[str, Any]:
    return {
        "name": s.name,
        "trace_id": format(s.context.trace_id, "032x"),
        "span_id": format(s.context.span_id, "016x"),
        "parent": format(s.parent.span_id, "016x") if s.parent else None,
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in s.links
        ],
        "attributes": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in s.attributes.items()
        },
        "start": s.start_time,
        "end": s.end_time,
    }


async def main() -> None:
    db, action = sys.argv[1], sys.argv[2]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = await open_store(f"sqlite:///{db}")
    registry = ToolRegistry()
    registry.add_functions(write, source="files")
    planner = ReactPlanner(
        llm=ScriptedLLM(SCRIPT),
        registry=registry,
        store=store,
        policies=PolicySet.from_documents([POLICY]),
    )
    planner = Telemetry(tracer_provider=provider).instrument(planner)
    if action == "pause":
        result = await planner.run("Write hello.", headers=REQUESTER)
    else:
        result = await planner.resume(sys.argv[3], headers=REQUESTER)
    await registry.aclose()
    await store.aclose()
    provider.shutdown()
    spans = [span_doc(s) for s in exporter.get_finished_spans()]
    print(json.dumps({"result": result.to_dict(), "spans": spans}))


asyncio.run(main())
