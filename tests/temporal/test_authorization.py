"""A run on Temporal whose call needs a person's authorization (OAuth) waits for it without
a timer and without calling again, then makes the call once on the ``resume`` update (as
``submit --resume`` / ``POST /v1/runs/{id}/resume`` send it after ``auth login``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import AuthorizationRequiredError
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.store import open_store
from penguiflow_agents.temporal import TemporalEngine, TemporalTarget, TemporalWorker
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.testing.temporal_dev import TemporalDevServer
from penguiflow_agents.tools import CallContext, ToolRegistry, ToolResult, tool
from penguiflow_agents.tools._python import PythonToolSource
from penguiflow_agents.worker import wait_for_run

from .conftest import RECORDED, WAIT_S

POLICY = {"tenant": "*", "allow": ["drive.*"]}
ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])


async def test_an_authorization_wait_needs_no_timer_and_resumes_on_the_update(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    authorized = tmp_path / "authorized"
    reads: list[str] = []

    @tool
    async def read(name: str) -> str:
        """Read a file of the caller's drive (needs the caller's authorization)."""
        reads.append(name)
        return f"contents of {name}"

    class Drive(PythonToolSource):
        """As an OAuth source: without the caller's token, the call reaches nothing."""

        async def call(
            self, tool: str, arguments: Mapping[str, Any], ctx: CallContext
        ) -> ToolResult:
            if not authorized.exists():
                raise AuthorizationRequiredError(
                    "drive",
                    tenant="acme",
                    principal="alice",
                    url="https://idp.example/authorize?state=x",
                    reason="no token for alice",
                )
            return await super().call(tool, arguments, ctx)

    async def model(request: LLMRequest) -> LLMResponse:
        said = [str(m["content"]) for m in request.messages if m["role"] == "tool"]
        if said:
            return LLMResponse(content="Read: " + said[-1])
        call = LLMToolCall(id="c1", name="drive.read", arguments={"name": "plan.txt"})
        return LLMResponse(content=None, tool_calls=[call])

    url = f"{temporal_server.url}?task_queue=pf-auth-{tmp_path.name[-8:]}"
    store = await open_store(f"sqlite:///{tmp_path / 'state.db'}")
    registry = ToolRegistry()
    registry.add_source(Drive("drive", [read]))
    worker = TemporalWorker(
        TemporalTarget.parse(url),
        store=store,
        registry=registry,
        open_model=lambda _m: contextlib.nullcontext(ScriptedLLM([model] * 4, record=False)),
        policy_documents=[POLICY],
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop=stop))
    try:
        engine = await TemporalEngine.connect(url)
        run_id = await engine.submit("read my plan", headers=ALICE)
        paused = await wait_for_run(store, "acme", run_id, timeout_s=WAIT_S)
        assert paused.status == "paused", paused.error
        (pending,) = paused.pending_approvals
        assert (pending.kind, pending.source, pending.url) == (
            "authorization",
            "drive",
            "https://idp.example/authorize?state=x",
        )
        handle = engine.client.get_workflow_handle(run_id)
        # The store says "paused" from inside the last activity: its completion and the
        # workflow task after it may still be on their way into the history (a loaded machine).
        before = await _settled_length(handle)
        await asyncio.sleep(3.0)  # no timer: the paused run does nothing while it waits
        assert len((await handle.fetch_history()).events) == before
        assert reads == []
        authorized.write_text("token")  # alice ran `auth login`
        await engine.resume(run_id, headers=ALICE)
        result = await asyncio.wait_for(engine.result(run_id, headers=ALICE), WAIT_S)
        assert result.status == "completed", result.error
        assert result.answer == "Read: contents of plan.txt"
        assert reads == ["plan.txt"]  # once
        RECORDED.append((temporal_server.address, run_id))
    finally:
        stop.set()
        await asyncio.wait_for(running, WAIT_S)
        await registry.aclose()
        await store.aclose()


async def _settled_length(handle: Any) -> int:
    """The number of events in a workflow's history once two reads 0.25 s apart agree (a
    timer waking every second would still show up in the 3 s after)."""
    last = -1
    for _ in range(60):
        now = len((await handle.fetch_history()).events)
        if now == last:
            return now
        last = now
        await asyncio.sleep(0.25)
    return last
