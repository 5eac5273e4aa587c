"""Logins through the service: POST /v1/auth/login/{source} gives the caller's authorization
URL, the browser comes back to GET /v1/auth/callback, the token is stored, and the caller's
run paused for that authorization resumes and makes its call once. The authorization server is
the tests' own (testing.oauth_server), in its own process; the service runs in process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlparse

import httpx
import pytest

from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.server import ServerSettings, create_app
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.mcp_server import HttpServerProcess, running_http_server
from penguiflow_agents.tools import ToolRegistry
from penguiflow_agents.tools._manifest import SourceManifest
from tests.server.conftest import Service, key_ring

CALLBACK = "http://test/v1/auth/callback"
WAIT_S = 60.0


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[HttpServerProcess]:
    with running_http_server(oauth=True) as srv:
        yield srv


class EchoThenAnswer:
    model = "scripted-auth"
    is_replay = True

    async def complete(self, request: LLMRequest) -> LLMResponse:
        messages = list(request.messages)
        if not any(m.get("role") == "tool" for m in messages):
            # The test server counts calls per key: one key per query keeps tests apart.
            query = next(m["content"] for m in messages if m.get("role") == "user")
            call = LLMToolCall(
                id="c1", name="remote.flaky", arguments={"key": query, "fail_times": 0}
            )
            return LLMResponse(content=None, tool_calls=[call])
        return LLMResponse(content=f"answer: {messages[-1]['content']}")


@pytest.fixture
async def service(oauth_server: HttpServerProcess) -> AsyncIterator[Service]:
    registry = ToolRegistry()
    registry.add_manifest(
        SourceManifest(
            name="remote",
            transport="mcp_http",
            url=oauth_server.url,
            auth={"type": "oauth", "redirect_uri": CALLBACK},  # type: ignore[arg-type]
            tools={"flaky": {"idempotent": False}},  # type: ignore[dict-item]
            path="remote.yaml",
        )
    )
    store = MemoryStore()
    app = create_app(
        ServerSettings(poll_s=0.1),
        store=store,
        registry=registry,
        policies=PolicySet.from_documents([{"tenant": "acme", "allow": ["remote.*"]}]),
        keys=key_ring(),
        llm=EchoThenAnswer(),  # type: ignore[arg-type]
    )
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:
        yield Service(client=client, store=store, llm=None, app=app)  # type: ignore[arg-type]
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
        await registry.aclose()


async def _login(svc: Service, who: str) -> httpx.Response:
    """Start the login as ``who``, play the browser at the authorization server, come back."""
    started = await svc.post("/v1/auth/login/remote", who)
    assert started.status_code == 200, started.text
    url = started.json()["url"]
    assert "code_challenge_method=S256" in url
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(url, follow_redirects=False)
    back = urlparse(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return await svc.client.get(f"{back.path}?{back.query}")  # the browser, without a key


async def test_a_login_through_the_service_resumes_the_paused_run(
    service: Service, oauth_server: HttpServerProcess
) -> None:
    first = await _login(service, "boss")  # someone authorized once: the tools are known
    assert first.status_code == 200 and "Authorized" in first.text, first.text

    doc = await service.run("go")
    assert doc["status"] == "paused", doc
    [wait] = doc["pending_approvals"]
    assert (wait["kind"], wait["principal"]) == ("authorization", "alice")

    page = await _login(service, "alice")
    assert page.status_code == 200, page.text
    assert doc["run_id"] in page.text, "the page names the run it resumed"
    deadline = time.monotonic() + WAIT_S
    while (run := (await service.get(f"/v1/runs/{doc['run_id']}")).json())["status"] != "completed":
        assert run["status"] in ("paused", "running"), run
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.05)
    assert "ok after 1 calls" in run["answer"], "the call ran, once"


async def test_an_unknown_state_is_a_404_page_and_a_login_needs_a_key(service: Service) -> None:
    page = await service.client.get("/v1/auth/callback?code=x&state=forged")
    assert page.status_code == 404 and "Unknown or expired login" in page.json()["error"]["message"]
    assert (await service.post("/v1/auth/login/remote", None)).status_code == 401
    assert (await service.post("/v1/auth/login/nope", "alice")).status_code == 404


async def test_the_url_a_paused_run_names_is_a_live_login_that_resumes_it(
    service: Service, oauth_server: HttpServerProcess
) -> None:
    """The pause's URL is a login this server completes (not the run's own grant, which
    ended with the call): opening it and coming back resumes the run, which calls once."""
    first = await _login(service, "boss")  # someone authorized once: the tools are known
    assert first.status_code == 200, first.text
    doc = await service.run("go live")
    assert doc["status"] == "paused", doc
    [wait] = doc["pending_approvals"]
    assert (wait["kind"], wait["principal"]) == ("authorization", "alice")
    url = wait["url"]
    assert url and "code_challenge_method=S256" in url
    async with httpx.AsyncClient() as browser:  # the person opens the link they were shown
        answer = await browser.get(url, follow_redirects=False)
    back = urlparse(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    page = await service.client.get(f"{back.path}?{back.query}")
    assert page.status_code == 200 and "Authorized" in page.text, page.text
    assert doc["run_id"] in page.text, "the page names the run it resumed"
    deadline = time.monotonic() + WAIT_S
    while (run := (await service.get(f"/v1/runs/{doc['run_id']}")).json())["status"] != "completed":
        assert run["status"] in ("paused", "running"), run
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.05)
    assert "ok after 1 calls" in run["answer"], "the call ran, once"


async def test_two_pauses_of_one_owner_share_one_live_login(
    service: Service, oauth_server: HttpServerProcess
) -> None:
    assert (await _login(service, "boss")).status_code == 200
    one = await service.run("go")
    two = await service.run("go")
    urls = {d["pending_approvals"][0]["url"] for d in (one, two)}
    assert len(urls) == 1, urls
