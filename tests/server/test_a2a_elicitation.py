"""Through two services (each the app on a real uvicorn on 127.0.0.1): a run on the first calls
the second's skill through a `transport: a2a` source; the second's run pauses for an approval
(`input-required`), which reaches the first run's requester as an `elicitation_requested`
event; once the approval is decided on the second, the requester's answer
(`POST /v1/runs/{id}/elicitations/{eid}`) continues the remote task and the run completes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from penguiflow_agents.llm import LLMResponse, LLMToolCall
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.server import ServerSettings, create_app
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, load_manifest
from tests.server.conftest import KEYS, key_ring, live_service

pytestmark = pytest.mark.timeout(180)


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        headers = {"Authorization": f"Bearer {KEYS['alice']}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
        ) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=30)


async def until(what: str, check: Any, timeout_s: float = 90.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_remote_input_required_is_asked_as_the_runs_elicitation_and_the_answer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service() as remote:
        (tmp_path / "remote.yaml").write_text(
            f"name: remote\ntransport: a2a\nurl: {remote.client.base_url}\n"
            'auth: {type: bearer, token: "${REMOTE_KEY}"}\ntimeout_s: 120\n'
        )
        monkeypatch.setenv("REMOTE_KEY", KEYS["alice"])
        registry = ToolRegistry()
        registry.add_manifest(load_manifest(tmp_path / "remote.yaml"))
        call = LLMToolCall(id="c1", name="remote.run", arguments={"message": "write hello"})
        llm = ScriptedLLM([LLMResponse(content=None, tool_calls=[call]), LLMResponse(content="ok")])
        store = MemoryStore()
        app = create_app(
            ServerSettings(poll_s=0.2),
            store=store,
            registry=registry,
            policies=PolicySet.from_documents([{"tenant": "acme", "allow": ["remote.*"]}]),
            keys=key_ring(),
            llm=llm,
        )
        async with serve(app) as first:
            run_id = (await first.post("/v1/runs", json={"query": "note it"})).json()["run_id"]

            async def asked() -> Any:
                events = await store.list_events("acme", run_id)
                return next((e for e in events if e.kind == "elicitation_requested"), None)

            question = await until("the remote question", asked)
            assert question.data["source"] == "remote"
            assert "approval" in question.data["message"]
            # The remote run waits for its approval: decided there, by its approver.
            pending = (await remote.get("/v1/approvals?status=pending", "boss")).json()
            decided = await remote.post(
                f"/v1/approvals/{pending[0]['id']}/decision", "boss", {"decision": "approve"}
            )
            assert decided.status_code == 200, decided.text
            eid = question.data["elicitation_id"]
            answered = await first.post(
                f"/v1/runs/{run_id}/elicitations/{eid}",
                json={"action": "accept", "content": {"answer": "approved, go on"}},
            )
            assert answered.status_code == 200, answered.text

            async def ended() -> Any:
                doc = (await first.get(f"/v1/runs/{run_id}")).json()
                return doc if doc["status"] != "running" else None

            doc = await until("the run to end", ended)
        assert doc["status"] == "completed", doc
        step = doc["steps"][0]
        assert step["tool"] == "remote.run" and step["outcome"] == "ok", step
        assert "wrote 5 characters" in str(step["result"])
        assert len((await remote.get("/v1/runs")).json()["runs"]) == 1
