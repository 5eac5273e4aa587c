"""A tool call's activity is attempted as its source's manifest says: ``retries.max_attempts``
for an idempotent tool, once for one that is not (read from the run's recorded history)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.store import open_store
from penguiflow_agents.temporal import TemporalEngine, TemporalTarget, TemporalWorker
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.testing.temporal_dev import TemporalDevServer
from penguiflow_agents.tools import ToolRegistry, tool

from .conftest import WAIT_S

POLICY = {"tenant": "*", "allow": ["kv.*", "ops.*"]}


@tool(idempotent=True)
async def lookup(key: str) -> str:
    """A value for a key."""
    return "value-" + key


@tool
async def bump(counter: str) -> str:
    """Increment a counter (not idempotent)."""
    return f"{counter} bumped"


async def model(request: LLMRequest) -> LLMResponse:
    if any(m["role"] == "tool" for m in request.messages):
        return LLMResponse(content="Done.")
    return LLMResponse(
        content=None,
        tool_calls=[
            LLMToolCall(id="c1", name="kv.lookup", arguments={"key": "k"}),
            LLMToolCall(id="c2", name="ops.bump", arguments={"counter": "n"}),
        ],
    )


async def test_call_attempts_come_from_the_manifest(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    url = f"{temporal_server.url}?task_queue=pf-retry-{tmp_path.name[-8:]}"
    store = await open_store(f"sqlite:///{tmp_path / 'state.db'}")
    registry = ToolRegistry()
    registry.add_functions(lookup, source="kv", retries={"max_attempts": 5})
    registry.add_functions(bump, source="ops", retries={"max_attempts": 4})
    llm = ScriptedLLM([model, model], record=False)
    worker = TemporalWorker(
        TemporalTarget.parse(url),
        store=store,
        registry=registry,
        open_model=lambda _m: contextlib.nullcontext(llm),
        policy_documents=[POLICY],
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop=stop))
    try:
        engine = await TemporalEngine.connect(url)
        alice = Headers(tenant="acme", principal="alice")
        run_id = await engine.submit("look up and bump", headers=alice)
        result = await asyncio.wait_for(engine.result(run_id, headers=alice), WAIT_S)
        assert result.status == "completed", result.error
        history = await engine.client.get_workflow_handle(run_id).fetch_history()
    finally:
        stop.set()
        await asyncio.wait_for(running, WAIT_S)
        await registry.aclose()
        await store.aclose()
    scheduled = {
        e.activity_task_scheduled_event_attributes.task_queue.name: (
            e.activity_task_scheduled_event_attributes.retry_policy.maximum_attempts
        )
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "penguiflow.tool_call"
    }
    queue = url.rpartition("=")[2]
    assert scheduled == {f"{queue}.tools.kv": 5, f"{queue}.tools.ops": 1}
