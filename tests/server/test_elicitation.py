"""A tool server's question during a run reaches the requester over the service.

A real stdio MCP server (tests/tools/elicit_server.py) asks mid-call; the
question is an `elicitation_requested` event of the run (SSE); the requester
answers with POST /v1/runs/{id}/elicitations/{eid}: answered, declined, timed
out (the manifest's `elicitation` setting then answers), refused answers.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.planner import EventLogElicitor
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.server import ServerSettings, create_app
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.tools import ToolRegistry
from penguiflow_agents.tools._manifest import SourceManifest
from tests.server.conftest import KEYS, Service, key_ring, parse_sse

SERVER = Path(__file__).resolve().parents[1] / "tools" / "elicit_server.py"
# Generous bound for a run on a loaded machine (a stdio server starts per app).
WAIT_S = 60.0


class CallThenEcho:
    """Turn 1 calls the tool the question names; turn 2 answers with the tool's result."""

    model = "scripted-elicit"
    is_replay = True

    async def complete(self, request: LLMRequest) -> LLMResponse:
        messages = list(request.messages)
        question = next(str(m["content"]) for m in messages if m.get("role") == "user")
        if not any(m.get("role") == "tool" for m in messages):
            return LLMResponse(
                content=None, tool_calls=[LLMToolCall(id="c1", name=question, arguments={})]
            )
        return LLMResponse(content=f"answer: {messages[-1]['content']}")


async def _service(elicitation: str, timeout_s: float) -> tuple[Service, Any, ToolRegistry]:
    store = MemoryStore()
    registry = ToolRegistry()
    registry.add_manifest(
        SourceManifest(
            name="ask",
            transport="mcp_stdio",
            command=[sys.executable, str(SERVER)],
            elicitation=elicitation,  # type: ignore[arg-type]
            timeout_s=WAIT_S,
            path="ask.yaml",
        )
    )
    app = create_app(
        ServerSettings(poll_s=0.1),
        store=store,
        registry=registry,
        policies=PolicySet.from_documents([{"tenant": "acme", "allow": ["ask.*"]}]),
        keys=key_ring(),
        llm=CallThenEcho(),  # type: ignore[arg-type]
        planner_options={"elicitor": EventLogElicitor(store, timeout_s=timeout_s, poll_s=0.05)},
    )
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    svc = Service(client=client, store=store, llm=None, app=app)  # type: ignore[arg-type]
    return svc, lifespan, registry


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    svc, lifespan, registry = await _service("ask", timeout_s=WAIT_S)
    try:
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await registry.aclose()


async def _question(svc: Service, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for event in await svc.store.list_events("acme", run_id):
            if event.kind == "elicitation_requested":
                return dict(event.data)
        await asyncio.sleep(0.05)
    raise AssertionError("the question never reached the run's log")


async def _start(svc: Service, tool: str) -> str:
    r = await svc.post("/v1/runs", "alice", {"query": tool})
    assert r.status_code == 202, r.text
    run_id: str = r.json()["run_id"]
    return run_id


async def _finished(svc: Service, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        doc: dict[str, Any] = (await svc.get(f"/v1/runs/{run_id}")).json()
        if doc["status"] not in ("running", "queued"):
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError("the run did not end")


async def test_an_answer_from_the_requester_reaches_the_tool(service: Service) -> None:
    run_id = await _start(service, "ask.ask_name")
    q = await _question(service, run_id)
    assert q["mode"] == "form" and q["message"] == "What is your name?" and q["source"] == "ask"
    assert q["schema"]["properties"]["name"]["type"] == "string" and q["call_id"] == "c1"
    path = f"/v1/runs/{run_id}/elicitations/{q['elicitation_id']}"

    bad = await service.post(path, "alice", {"action": "accept", "content": {"age": "old"}})
    assert bad.status_code == 422, bad.text
    message = bad.json()["error"]["message"]
    assert "'name' is a required property" in message and "$.age" in message
    other = await service.post(path, "boss", {"action": "accept", "content": {"name": "Bo"}})
    assert other.status_code == 403, "only the requester answers"
    foreign = await service.post(path, "globex", {"action": "accept", "content": {"name": "G"}})
    assert foreign.status_code == 404, "another tenant's run does not exist for it"

    answer = {"name": "Ada", "age": 36}
    ok = await service.post(path, "alice", {"action": "accept", "content": answer})
    assert ok.status_code == 200, ok.text
    again = await service.post(path, "alice", {"action": "decline"})
    assert again.status_code == 409 and "already answered" in again.text
    doc = await _finished(service, run_id)
    assert doc["status"] == "completed" and doc["answer"] == "answer: hello Ada (36)", doc

    events = parse_sse((await service.get(f"/v1/runs/{run_id}/events")).text)
    kinds = [e.kind for e in events]
    assert kinds.index("elicitation_requested") < kinds.index("elicitation_answered")


async def test_a_declined_question_is_declined_at_the_server(service: Service) -> None:
    run_id = await _start(service, "ask.ask_name")
    q = await _question(service, run_id)
    r = await service.post(
        f"/v1/runs/{run_id}/elicitations/{q['elicitation_id']}", "alice", {"action": "decline"}
    )
    assert r.status_code == 200, r.text
    doc = await _finished(service, run_id)
    assert doc["answer"] == "answer: no name: decline", doc


async def test_a_url_question_shows_the_link_and_takes_no_content(service: Service) -> None:
    run_id = await _start(service, "ask.visit")
    q = await _question(service, run_id)
    assert q["mode"] == "url" and q["url"] == "https://forms.example/sign" and "schema" not in q
    path = f"/v1/runs/{run_id}/elicitations/{q['elicitation_id']}"
    r = await service.post(path, "alice", {"action": "accept", "content": {"x": 1}})
    assert r.status_code == 422
    assert (await service.post(path, "alice", {"action": "accept"})).status_code == 200
    doc = await _finished(service, run_id)
    assert doc["answer"] == "answer: visit: accept", doc


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("ask", "answer: no name: cancel"), ("defaults", "answer: hello None (30)")],
)
async def test_an_unanswered_question_times_out_to_the_manifest_setting(
    policy: str, expected: str
) -> None:
    svc, lifespan, registry = await _service(policy, timeout_s=0.5)
    try:
        run_id = await _start(svc, "ask.ask_name")
        q = await _question(svc, run_id)
        doc = await _finished(svc, run_id)
        assert doc["answer"] == expected, doc
        kinds = [e.kind for e in await svc.store.list_events("acme", run_id)]
        assert "elicitation_expired" in kinds
        late = await svc.post(
            f"/v1/runs/{run_id}/elicitations/{q['elicitation_id']}", "alice", {"action": "decline"}
        )
        assert late.status_code == 409 and "expired" in late.text
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await registry.aclose()


def test_keys_used_here_exist() -> None:
    assert {"alice", "boss", "globex"} <= set(KEYS)
