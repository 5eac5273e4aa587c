"""A run paused for a sign-in shows in its requester's inbox with a link that resumes it.

A real `serve` process with an OAuth-protected MCP source (the tests' own authorization
server, which approves at once), a real chromium: alice's run pauses because she never
signed in to the source; her inbox lists "Sign in to remote"; following the link goes to the
authorization server and back to serve's callback, which stores her token and resumes the
run; the tool is called once. Another user's inbox does not list her wait.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from penguiflow_agents.testing.mcp_server import HttpServerProcess, running_http_server
from tests.server.serve_process import free_port, start_serve
from tests.server.test_inbox_browser import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    UI_TIMEOUT_MS,
    Server,
    sign_in,
    wait_for_run,
)
from tests.server.test_inbox_browser import chromium as chromium

POLICY = """\
tenant: acme
allow: ["remote.*"]
"""
SCRIPT = json.dumps(
    {
        "turns": [
            {
                "tool_calls": [
                    {"name": "remote.flaky", "arguments": {"key": "inbox", "fail_times": 0}}
                ]
            },
            {"content": "Done: the remote tool answered."},
        ]
    }
)


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[HttpServerProcess]:
    with running_http_server(oauth=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, chromium: str, oauth_server: HttpServerProcess
) -> Iterator[Server]:
    from penguiflow_agents.server import add_key

    root = tmp_path_factory.mktemp("inbox-sign-in")
    port = free_port()
    (root / "tools").mkdir()
    (root / "tools" / "remote.yaml").write_text(
        "name: remote\ntransport: mcp_http\n"
        f"url: {oauth_server.url}\n"
        f"auth: {{type: oauth, redirect_uri: 'http://127.0.0.1:{port}/v1/auth/callback'}}\n"
        "tools: {flaky: {idempotent: false}}\n"
    )
    (root / "policies").mkdir()
    (root / "policies" / "acme.yaml").write_text(POLICY)
    (root / "script.json").write_text(SCRIPT)
    keys = {
        "alice": add_key(root / "keys.yaml", tenant="acme", principal="alice")[0],
        "bob": add_key(root / "keys.yaml", tenant="acme", principal="bob")[0],
    }
    env = dict(os.environ, PENGUIFLOW_SECRET_KEY="")
    env.pop("PENGUIFLOW_SECRET_KEY")
    serving = start_serve(root, "--model", f"replay:{root / 'script.json'}", env=env, port=port)
    try:
        yield Server(url=serving.url, keys=keys, root=root)
    finally:
        serving.stop(kill=True)


@pytest.fixture
def page(chromium: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 420, "height": 900}).new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                yield page
            finally:
                page.screenshot(
                    path=str(ARTIFACTS / f"{request.node.name}-end.png"), full_page=True
                )
        finally:
            browser.close()


def login_as(server: Server, who: str) -> None:
    """Sign ``who`` in through the API (the tools become known), playing the browser."""
    with server.client(who) as client:
        started = client.post("/v1/auth/login/remote").raise_for_status().json()
        answer = httpx.get(started["url"], follow_redirects=False)
        back = urlparse(answer.headers["location"])
        client.get(f"{back.path}?{back.query}").raise_for_status()


def test_a_paused_sign_in_is_listed_for_its_owner_and_its_link_resumes_the_run(
    server: Server, page: Any
) -> None:
    login_as(server, "bob")  # someone signed in once: the source's tools are known
    with server.client("alice") as alice:
        doc = alice.post("/v1/runs?wait=true", json={"query": "call it"}).raise_for_status().json()
        assert doc["status"] == "paused", doc
        assert doc["pending_approvals"][0]["kind"] == "authorization"
        with server.client("bob") as bob:  # not bob's wait: his list is empty
            assert bob.get("/v1/auth/waiting").raise_for_status().json() == {"waiting": []}

        sign_in(page, server, "alice")
        link = page.get_by_role("link", name="Sign in to remote")
        link.wait_for()
        assert page.get_by_text(doc["run_id"], exact=False).count() >= 1
        page.screenshot(path=str(ARTIFACTS / "sign-in-listed.png"), full_page=True)
        link.click()  # the authorization server approves at once and sends the browser back
        page.get_by_role("heading", name="Authorized").wait_for()
        assert doc["run_id"] in page.content()
        done = wait_for_run(alice, doc["run_id"], "completed")
        assert done["answer"] == "Done: the remote tool answered."
        assert alice.get("/v1/auth/waiting").raise_for_status().json() == {"waiting": []}
        history = alice.get(
            f"/v1/runs/{doc['run_id']}/events", headers={"Accept": "application/json"}
        ).raise_for_status()
        assert "ok after 1 calls" in history.text, "the tool ran, once"
