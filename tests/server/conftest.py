"""A service over real parts: MemoryStore, a ToolRegistry of Python tools, policies, keys,
and a model that answers by the question (no HTTP, no litellm), called through httpx's
ASGITransport (no sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.server import ApiKey, KeyRing, ServerSettings, create_app, hash_key
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.tools import ToolRegistry, tool

POLICIES: list[dict[str, Any]] = [
    {
        "tenant": "acme",
        "allow": ["files.*", "math.*"],
        "roles": {"viewer": {"allow": ["math.*"]}},
        "approvals": [
            {"match": "files.write_*", "approvers": ["role:admin"], "reason": "Writes need a human"}
        ],
    },
    {"tenant": "globex", "allow": ["math.*"]},
]

KEYS = {
    "alice": "pfa_alice-key-0000000000000000000000",
    "boss": "pfa_boss-key-00000000000000000000000",
    "chat": "pfa_chat-key-00000000000000000000000",
    "globex": "pfa_globex-key-000000000000000000000",
    "revoked": "pfa_revoked-key-00000000000000000000",
}


def key_ring() -> KeyRing:
    return KeyRing(
        [
            ApiKey(
                id="acme-alice", sha256=hash_key(KEYS["alice"]), tenant="acme", principal="alice"
            ),
            ApiKey(
                id="acme-boss",
                sha256=hash_key(KEYS["boss"]),
                tenant="acme",
                principal="boss",
                roles=("admin",),
            ),
            ApiKey(
                id="acme-chat",
                sha256=hash_key(KEYS["chat"]),
                tenant="acme",
                principal="chat-backend",
                act_for_users=True,
                grantable_roles=("viewer",),
            ),
            ApiKey(id="globex", sha256=hash_key(KEYS["globex"]), tenant="globex", principal="gus"),
            ApiKey(
                id="acme-old",
                sha256=hash_key(KEYS["revoked"]),
                tenant="acme",
                principal="old",
                revoked=True,
            ),
        ]
    )


@tool
async def write_text(path: str, text: str) -> str:
    """Write a text file (pretend)."""
    return f"wrote {len(text)} characters to {path}"


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def tool_registry() -> ToolRegistry:
    registry = ToolRegistry()
    registry.add_functions(write_text, source="files")
    registry.add_functions(add, source="math")
    return registry


@dataclass
class QuestionLLM:
    """Answers by the run's question: ``write TEXT`` writes a shared file (gated), ``add A B``
    adds, ``wait`` blocks until ``release`` is set; anything else is echoed. ``slow `` before
    a question makes each turn take ``delay_s``."""

    model: str = "scripted-server"
    release: asyncio.Event = field(default_factory=asyncio.Event)
    is_replay: bool = True
    delay_s: float = 0.05  # each turn of a question starting with "slow "

    async def complete(self, request: LLMRequest) -> LLMResponse:
        messages = list(request.messages)
        question = next(str(m["content"]) for m in messages if m.get("role") == "user")
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        last = str(messages[-1].get("content") or "")
        if question.startswith("slow "):
            question = question[5:]
            await asyncio.sleep(self.delay_s)
        if turn > 0:
            return LLMResponse(content=f"done: {last}")
        if question.startswith("wait"):
            await self.release.wait()
            return LLMResponse(content="released")
        if m := re.match(r"write (.+)", question):
            call = LLMToolCall(
                id="c1", name="files.write_text", arguments={"path": "/shared/n.txt", "text": m[1]}
            )
            return LLMResponse(content=None, tool_calls=[call])
        if m := re.match(r"add (\d+) (\d+)", question):
            call = LLMToolCall(id="c1", name="math.add", arguments={"a": int(m[1]), "b": int(m[2])})
            return LLMResponse(content=None, tool_calls=[call])
        return LLMResponse(content=f"echo: {question}")


@dataclass
class Service:
    client: httpx.AsyncClient
    store: MemoryStore
    llm: QuestionLLM
    app: Any

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[who]}"}

    async def get(self, path: str, who: str | None = "alice", **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.auth(who) if who else {}, **kw)

    async def post(
        self, path: str, who: str | None = "alice", json: Any = None, **kw: Any
    ) -> httpx.Response:
        return await self.client.post(path, headers=self.auth(who) if who else {}, json=json, **kw)

    async def run(self, query: str, who: str = "alice", **body: Any) -> dict[str, Any]:
        """POST /v1/runs?wait=true; the run document."""
        r = await self.post("/v1/runs?wait=true", who, {"query": query, **body})
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc


def make_app(settings: ServerSettings | None, **kw: Any) -> tuple[Any, MemoryStore, QuestionLLM]:
    store = kw.pop("store", None) or MemoryStore()
    llm = kw.pop("llm", None) or QuestionLLM()
    keys = kw.pop("keys", None) or key_ring()
    app = create_app(
        settings or ServerSettings(poll_s=0.2),
        store=store,
        registry=tool_registry(),
        policies=PolicySet.from_documents(POLICIES),
        keys=keys,
        llm=llm,
        **kw,
    )
    return app, store, llm


async def open_service(settings: ServerSettings | None = None, **kw: Any) -> tuple[Service, Any]:
    """The app with its lifespan entered, and a client over ASGITransport (which buffers each
    response whole: a stream that never ends needs ``live_service``)."""
    app, store, llm = make_app(settings, **kw)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return Service(client=client, store=store, llm=llm, app=app), lifespan


@asynccontextmanager
async def live_service(settings: ServerSettings | None = None, **kw: Any) -> AsyncIterator[Service]:
    """The app served by uvicorn on 127.0.0.1 (a free port) in this event loop; responses
    stream as they are written."""
    app, store, llm = make_app(settings, **kw)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        backlog=2048,
        timeout_graceful_shutdown=5,
        # Longer than any idle gap in a test: a pooled connection closed by the server just
        # as the client reuses it would fail a request for no reason of ours.
        timeout_keep_alive=120,
    )
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
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as client:
            yield Service(client=client, store=store, llm=llm, app=app)
    finally:
        llm.release.set()
        server.should_exit = True
        await asyncio.wait({task}, timeout=30)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    svc, lifespan = await open_service()
    try:
        yield svc
    finally:
        svc.llm.release.set()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


def error_of(response: httpx.Response) -> Mapping[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


@dataclass
class SSEEvent:
    id: int
    kind: str
    data: Any


def parse_sse(text: str) -> list[SSEEvent]:
    """The events of an SSE body (comments skipped)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ": " not in line:
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            out.append(SSEEvent(int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return out
