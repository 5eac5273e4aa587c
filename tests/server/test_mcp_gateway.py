"""The MCP gateway at /mcp, driven by the ``mcp`` SDK's client over real HTTP (uvicorn on
127.0.0.1): each key sees its tenant's view, hidden tools are unknown, gated calls wait for
an approval decided through the HTTP API and then run once, Origin and keys are checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent, ToolListChangedNotification

from penguiflow_agents.policy import PolicySet
from penguiflow_agents.server import ServerSettings, create_app
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.mcp_server import stdio_command
from penguiflow_agents.tools import SourceManifest, ToolRegistry, tool
from tests.server.conftest import KEYS, POLICIES, key_ring

MODES = ["auto", "legacy"]  # 2026-07-28 single exchanges; the handshake era's sessions


@dataclass
class Gateway:
    url: str
    base: str
    store: MemoryStore
    writes: list[tuple[str, str]] = field(default_factory=list)

    def client(
        self, who: str | None, mode: str = "auto", *, token: str | None = None, **kw: Any
    ) -> Client:
        """The SDK's client with ``who``'s key (or a bearer ``token``) on every request."""
        bearer = token or (KEYS[who] if who else None)
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
        return Client(streamable_http_client(self.url, http_client=http), mode=mode, **kw)

    async def api(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
            return await http.request(
                method, path, headers={"Authorization": f"Bearer {KEYS[who]}"}, **kw
            )

    async def events(self, tenant: str, kind: str) -> list[dict[str, Any]]:
        out = []
        for (t, _run), events in self.store._events.items():
            if t == tenant:
                out += [e.data for e in events if e.kind == kind]
        return out


@contextlib.asynccontextmanager
async def gateway(
    *,
    policies: list[dict[str, Any]] | None = None,
    mcp_source: bool = False,
    manifests: tuple[dict[str, Any], ...] = (),
    **settings: Any,
) -> AsyncIterator[Gateway]:
    """The service on uvicorn; ``mcp_source``: also the SDK-built test server over stdio as
    source ``t``."""
    writes: list[tuple[str, str]] = []

    @tool
    async def write_text(path: str, text: str) -> str:
        """Write a text file (recorded)."""
        writes.append((path, text))
        return f"wrote {len(text)} characters to {path}"

    @tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    registry = ToolRegistry()
    registry.add_functions(write_text, source="files")
    registry.add_functions(add, source="math")
    if mcp_source:
        registry.add_manifest(
            SourceManifest.model_validate(
                {"name": "t", "transport": "mcp_stdio", "command": stdio_command()}
            )
        )
    for manifest in manifests:
        registry.add_manifest(SourceManifest.model_validate(manifest))
    store = MemoryStore()
    app = create_app(
        ServerSettings(poll_s=0.2, **settings),
        store=store,
        registry=registry,
        policies=PolicySet.from_documents(policies or POLICIES),
        keys=key_ring(),
        llm=object(),  # type: ignore[arg-type]  # no runs here
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(90):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        yield Gateway(url=f"{base}/mcp", base=base, store=store, writes=writes)
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=30)
        if mcp_source or manifests:
            await registry.aclose()


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


async def pending_approval(gw: Gateway, tool: str) -> str:
    """The id of the tenant's pending request for ``tool``, once there is one (read as an admin)."""
    async with asyncio.timeout(60):
        while True:
            r = await gw.api("GET", "/v1/approvals?status=pending", "boss")
            pending = [a for a in r.json() if a["tool"] == tool]
            if pending:
                return str(pending[0]["id"])
            await asyncio.sleep(0.05)


async def approve_when_pending(gw: Gateway, tool: str) -> str:
    """As an admin, over the HTTP API: wait for the pending request, then approve it."""
    approval_id = await pending_approval(gw, tool)
    r = await gw.api(
        "POST", f"/v1/approvals/{approval_id}/decision", "boss", json={"decision": "approve"}
    )
    assert r.status_code == 200, r.text
    return approval_id


@pytest.mark.parametrize("mode", MODES)
async def test_two_tenants_keys_see_their_own_views_under_the_cli_names(mode: str) -> None:
    async with gateway() as gw:
        for who, expected in (
            ("alice", ["files.write_text", "math.add"]),
            ("globex", ["math.add"]),
        ):
            async with gw.client(who, mode) as client:
                listed = sorted(t.name for t in (await client.list_tools()).tools)
                assert listed == expected
                catalog = await gw.api("GET", "/v1/tools", who)
                assert sorted(t["name"] for t in catalog.json()) == listed
                result = await client.call_tool("math.add", {"a": 2, "b": 3})
                assert not result.is_error and text_of(result) == "5"
        calls = await gw.events("globex", "mcp_tool_call")
        assert [(c["tool"], c["key_id"], c["principal"], c["outcome"]) for c in calls] == [
            ("math.add", "globex", "gus", "ok")
        ]


@pytest.mark.parametrize("mode", MODES)
async def test_a_hidden_tool_is_refused_like_an_unknown_one_and_never_runs(mode: str) -> None:
    async with gateway() as gw, gw.client("globex", mode) as client:
        hidden = await client.call_tool("files.write_text", {"path": "/a", "text": "x"})
        unknown = await client.call_tool("files.nope", {"path": "/a", "text": "x"})
        assert hidden.is_error and unknown.is_error
        assert text_of(hidden) == "Unknown tool: files.write_text"
        assert text_of(unknown) == "Unknown tool: files.nope"
        assert gw.writes == []
        outcomes = [c["outcome"] for c in await gw.events("globex", "mcp_tool_call")]
        assert outcomes == ["denied", "not_found"]
        bad = await client.call_tool("math.add", {"a": "two"})
        assert bad.is_error and "invalid arguments for 'math.add'" in text_of(bad)


@pytest.mark.parametrize("mode", MODES)
async def test_a_gated_call_waits_with_progress_is_approved_over_http_and_runs_once(
    mode: str,
) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with gateway(mcp_approval_wait_s=120) as gw, gw.client("alice", mode) as client:
        call = asyncio.create_task(
            client.call_tool(
                "files.write_text",
                {"path": "/shared/n.txt", "text": "hello"},
                progress_callback=on_progress,
            )
        )
        approval_id = await approve_when_pending(gw, "files.write_text")
        result = await asyncio.wait_for(call, 60)
        assert not result.is_error, text_of(result)
        assert text_of(result) == "wrote 5 characters to /shared/n.txt"
        assert result.meta and result.meta["penguiflow-agents/approval_id"] == approval_id
        assert gw.writes == [("/shared/n.txt", "hello")]
        assert progress and approval_id in str(progress[0][2])
        applied = await gw.events("acme", "approval_applied")
        assert [(a["approval_id"], a["outcome"]) for a in applied] == [(approval_id, "ok")]
        (event,) = [c for c in await gw.events("acme", "mcp_tool_call")]
        assert event["approval_id"] == approval_id and event["key_id"] == "acme-alice"
        r = await gw.api("GET", f"/v1/approvals/{approval_id}", "alice")
        assert r.json()["status"] == "approved"


async def test_an_undecided_call_names_its_approval_and_the_same_call_after_approval_runs_once() -> (
    None
):
    args = {"path": "/shared/m.txt", "text": "later"}
    async with gateway(mcp_approval_wait_s=0.5) as gw, gw.client("alice") as client:
        first = await client.call_tool("files.write_text", args)
        assert first.is_error and first.meta
        approval_id = first.meta["penguiflow-agents/approval_id"]
        assert f"approval {approval_id!r} is still pending" in text_of(first)
        again = await client.call_tool("files.write_text", args)  # still undecided: same request
        assert again.meta and again.meta["penguiflow-agents/approval_id"] == approval_id
        assert gw.writes == []
        assert await approve_when_pending(gw, "files.write_text") == approval_id
        # Two identical calls after the approval: the decision is used by one execution; the
        # other call asks for an approval of its own.
        both = await asyncio.gather(
            client.call_tool("files.write_text", args), client.call_tool("files.write_text", args)
        )
        ran = [r for r in both if not r.is_error]
        asked = [r for r in both if r.is_error]
        assert [text_of(r) for r in ran] == ["wrote 5 characters to /shared/m.txt"]
        assert ran[0].meta and ran[0].meta["penguiflow-agents/approval_id"] == approval_id
        assert len(asked) == 1 and asked[0].meta
        assert asked[0].meta["penguiflow-agents/approval_id"] != approval_id
        assert gw.writes == [("/shared/m.txt", "later")]
        pending = await gw.api("GET", "/v1/approvals?status=pending", "boss")
        assert [a["id"] for a in pending.json()] == [asked[0].meta["penguiflow-agents/approval_id"]]


async def test_a_rejected_call_tells_the_reason_and_does_not_run() -> None:
    async with gateway(mcp_approval_wait_s=60) as gw, gw.client("alice", "legacy") as client:
        call = asyncio.create_task(
            client.call_tool("files.write_text", {"path": "/shared/r.txt", "text": "no"})
        )
        approval_id = await pending_approval(gw, "files.write_text")
        decided = await gw.api(
            "POST",
            f"/v1/approvals/{approval_id}/decision",
            "boss",
            json={"decision": "reject", "reason": "not today"},
        )
        assert decided.status_code == 200, decided.text
        result = await asyncio.wait_for(call, 60)
        assert result.is_error and "'boss' rejected it. Reason: not today" in text_of(result)
        assert gw.writes == []


async def test_no_key_or_a_bad_key_is_401_with_a_challenge() -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with gateway() as gw, httpx.AsyncClient(timeout=30) as http:
        for headers in (
            {},
            {"Authorization": "Bearer pfa_not-a-key"},
            {"Authorization": "Basic x"},
        ):
            r = await http.post(gw.url, json=body, headers=headers)
            assert r.status_code == 401, r.text
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["error"]["code"] == "unauthorized"
        revoked = await http.post(
            gw.url, json=body, headers={"Authorization": f"Bearer {KEYS['revoked']}"}
        )
        assert revoked.status_code == 401
        with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 its own way
            async with gw.client(None) as client:
                await client.list_tools()


async def test_a_foreign_origin_is_refused_and_a_loopback_one_or_a_configured_one_passes() -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {
        "Authorization": f"Bearer {KEYS['alice']}",
        "Accept": "application/json, text/event-stream",
    }
    async with gateway(mcp_allowed_origins=("https://ide.example",)) as gw:
        async with httpx.AsyncClient(timeout=30) as http:
            for origin, status in (
                ("http://evil.example", 403),
                ("http://127.0.0.1.evil.example", 403),
                ("http://localhost:5173", 403),  # loopback is the default, replaced here
                ("https://ide.example", 200),
            ):
                r = await http.post(gw.url, json=initialize, headers={**headers, "Origin": origin})
                assert r.status_code == status, (origin, r.text)
                if status == 403:
                    assert r.json()["error"]["code"] == "forbidden_origin"
    async with gateway() as gw, httpx.AsyncClient(timeout=30) as http:
        for origin, status in (("http://localhost:5173", 200), ("http://evil.example", 403)):
            r = await http.post(gw.url, json=initialize, headers={**headers, "Origin": origin})
            assert r.status_code == status, (origin, r.text)


async def test_a_session_opened_with_one_key_cannot_be_used_with_another() -> None:
    async with gateway() as gw, gw.client("alice", "legacy") as client:
        await client.list_tools()
        session_id = None
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                gw.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                },
                headers={
                    "Authorization": f"Bearer {KEYS['alice']}",
                    "Accept": "application/json, text/event-stream",
                },
            )
            session_id = r.headers["mcp-session-id"]
            stolen = await http.post(
                gw.url,
                json={"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
                headers={
                    "Authorization": f"Bearer {KEYS['globex']}",
                    "Accept": "application/json, text/event-stream",
                    "Mcp-Session-Id": session_id,
                    "Mcp-Protocol-Version": "2025-11-25",
                },
            )
            assert stolen.status_code == 404


def test_serve_options_set_the_gateway_origins_and_wait_and_refuse_a_non_origin() -> None:
    from penguiflow_agents.cli import build_parser
    from penguiflow_agents.cli._serve import settings_of
    from penguiflow_agents.exceptions import UserError
    from penguiflow_agents.server._settings import DEFAULT_MCP_ORIGINS

    plain = settings_of(build_parser().parse_args(["serve"]))
    assert plain.mcp_allowed_origins == DEFAULT_MCP_ORIGINS and plain.mcp_approval_wait_s == 60
    argv = ["serve", "--mcp-origin", "https://ide.example", "--mcp-approval-wait", "5"]
    given = settings_of(build_parser().parse_args(argv))
    assert given.mcp_allowed_origins == ("https://ide.example",)
    assert given.mcp_approval_wait_s == 5
    with pytest.raises(UserError, match=r"'ide\.example' is not an origin"):
        settings_of(build_parser().parse_args(["serve", "--mcp-origin", "ide.example"]))


async def test_listeners_hear_tools_list_changed_when_their_own_view_changes() -> None:
    """A source changes its tools (the test server's ``change_tools``, called through the
    gateway): acme's view (``t.*``) changes and both its listeners are told, on the
    2026-07-28 listen stream and on a handshake-era session's GET stream; globex sees only
    ``t.add``, which did not change, and is told nothing."""
    policies = [{"tenant": "acme", "allow": ["t.*"]}, {"tenant": "globex", "allow": ["t.add"]}]
    legacy_heard = asyncio.Event()
    globex_heard: list[Any] = []

    async def on_legacy(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            legacy_heard.set()

    async def on_globex(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            globex_heard.append(message)

    async with (
        gateway(policies=policies, mcp_source=True, mcp_watch_s=0.1) as gw,
        gw.client("alice") as modern,
        gw.client("alice", "legacy", message_handler=on_legacy) as legacy,
        gw.client("globex", "legacy", message_handler=on_globex) as globex,
    ):
        before = {t.name for t in (await legacy.list_tools()).tools}
        assert {"t.echo", "t.change_tools"} <= before
        assert [t.name for t in (await globex.list_tools()).tools] == ["t.add"]
        async with modern.listen(tools_list_changed=True) as subscription:
            changed = await modern.call_tool("t.change_tools", {})
            assert not changed.is_error, text_of(changed)
            async with asyncio.timeout(60):
                event = await anext(aiter(subscription))
                await legacy_heard.wait()
            assert type(event).__name__ == "ToolsListChanged"
        after = {t.name for t in (await modern.list_tools(cache_mode="bypass")).tools}
        assert after - before == {"t.added_1"}
        await asyncio.sleep(0.5)  # several comparisons later
        assert globex_heard == []


async def test_approval_rules_on_risk_gate_by_the_tools_risk() -> None:
    """``risk: high`` gates only high-risk tools: ``math.add`` (low) runs at once."""
    policies = [
        {
            "tenant": "acme",
            "allow": ["files.*", "math.*"],
            "approvals": [{"risk": "high", "approvers": ["role:admin"]}],
        }
    ]
    async with gateway(policies=policies, mcp_approval_wait_s=0.2) as gw, gw.client("alice") as c:
        assert text_of(await c.call_tool("math.add", {"a": 1, "b": 1})) == "2"
        assert gw.writes == [] and not (await gw.events("acme", "approval_requested"))


async def test_an_oidc_token_is_a_caller_like_a_key_and_a_bad_one_is_401(tmp_path: Any) -> None:
    import json
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    from penguiflow_agents.server import OIDCConfig

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "alg": "ES256"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    issuer, audience = "https://login.example.test/", "penguiflow"
    oidc = OIDCConfig(issuer=issuer, audience=audience, jwks=str(tmp_path / "jwks.json"))

    def token(**claims: Any) -> str:
        body = {"iss": issuer, "aud": audience, "sub": "gus", "tenant": "globex"}
        body |= {"exp": int(time.time()) + 300, **claims}
        return jwt.encode(body, key, algorithm="ES256", headers={"kid": "k1"})

    async with gateway(oidc=oidc) as gw:
        async with gw.client(None, token=token()) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["math.add"]
            assert text_of(await client.call_tool("math.add", {"a": 1, "b": 2})) == "3"
        (event,) = await gw.events("globex", "mcp_tool_call")
        assert event["key_id"] == "oidc:globex:gus" and event["principal"] == "gus"
        async with httpx.AsyncClient(timeout=30) as http:
            expired = token(exp=int(time.time()) - 3600)
            r = await http.post(gw.url, json={}, headers={"Authorization": f"Bearer {expired}"})
            assert r.status_code == 401 and "refused" in r.json()["error"]["message"]


async def test_two_calls_waiting_on_one_approval_run_it_once_and_the_other_asks_anew() -> None:
    args = {"path": "/shared/race.txt", "text": "once"}
    async with gateway(mcp_approval_wait_s=60) as gw, gw.client("alice") as client:
        first = asyncio.create_task(client.call_tool("files.write_text", args))
        approval_id = await pending_approval(gw, "files.write_text")
        second = asyncio.create_task(client.call_tool("files.write_text", args))
        # Give the second call time to find the same pending request and wait on it too (any
        # interleaving must end alike: one execution, the other call asks anew).
        await asyncio.sleep(0.5)
        r = await gw.api(
            "POST", f"/v1/approvals/{approval_id}/decision", "boss", json={"decision": "approve"}
        )
        assert r.status_code == 200, r.text
        done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        winner = done.pop().result()
        assert text_of(winner) == "wrote 4 characters to /shared/race.txt"
        other = second if first.done() and first.result() is winner else first
        anew = await pending_approval(gw, "files.write_text")
        assert anew != approval_id
        r = await gw.api(
            "POST",
            f"/v1/approvals/{anew}/decision",
            "boss",
            json={"decision": "reject", "reason": "once is enough"},
        )
        assert r.status_code == 200, r.text
        loser = await asyncio.wait_for(other, 60)
        assert loser.is_error and "once is enough" in text_of(loser)
        assert gw.writes == [("/shared/race.txt", "once")]


async def test_a_usable_name_whose_source_is_down_says_why_and_a_hidden_one_stays_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An OAuth ``mcp_http`` source nobody has authorized lists no tools (it is down): a caller
    whose policy allows its names is told why and what to run; one whose policy does not gets
    ``Unknown tool``."""
    import base64
    import os

    from penguiflow_agents.testing.mcp_server import running_http_server

    monkeypatch.setenv("PENGUIFLOW_SECRET_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    policies = [{"tenant": "acme", "allow": ["remote.*"]}, {"tenant": "globex", "allow": []}]
    with running_http_server(oauth=True) as remote:
        manifest = {
            "name": "remote",
            "transport": "mcp_http",
            "url": remote.url,
            "auth": {"type": "oauth"},
        }
        async with gateway(policies=policies, manifests=(manifest,)) as gw:
            async with gw.client("alice") as client:
                assert (await client.list_tools()).tools == []
                result = await client.call_tool("remote.echo", {"text": "x"})
            async with gw.client("globex") as client:
                hidden = await client.call_tool("remote.echo", {"text": "x"})
    assert result.is_error and text_of(result).startswith("Error (unavailable): source 'remote'")
    assert "auth login remote" in text_of(result)
    assert text_of(hidden) == "Unknown tool: remote.echo"


async def test_a_tools_own_progress_reaches_the_mcp_client() -> None:
    """The stdio server's progress notifications of an ungated call are forwarded."""
    heard: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        heard.append((done, total, message))

    policies = [{"tenant": "acme", "allow": ["t.*"]}]
    async with gateway(policies=policies, mcp_source=True) as gw, gw.client("alice") as client:
        result = await client.call_tool(
            "t.slow", {"seconds": 0.2, "steps": 3}, progress_callback=on_progress
        )
        assert not result.is_error, text_of(result)
    assert [done for done, _, _ in heard] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://localhost", True),
        ("http://[::1]:8080", True),
        ("http://127.0.0.1:1", True),
        ("https://localhost:5173", False),  # another scheme
        ("http://localhost.evil.example:80", False),
        ("http://localhost:80.evil.example", False),
        ("http://localhost:", False),
        ("null", False),  # a sandboxed frame or a file: page
    ],
)
def test_origin_patterns_match_a_host_on_any_port_and_nothing_else(
    origin: str, allowed: bool
) -> None:
    from penguiflow_agents.server._mcp_gateway import origin_allowed
    from penguiflow_agents.server._settings import DEFAULT_MCP_ORIGINS

    assert origin_allowed(origin, DEFAULT_MCP_ORIGINS) is allowed


async def test_a_call_its_client_abandons_while_it_waits_is_still_a_store_event() -> None:
    """The client closes the stream of a gated call (with progress: SSE) while it waits."""

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        pass

    async with gateway(mcp_approval_wait_s=120) as gw:
        async with gw.client("alice") as client:
            call = asyncio.create_task(
                client.call_tool(
                    "files.write_text",
                    {"path": "/shared/gone.txt", "text": "x"},
                    progress_callback=on_progress,
                )
            )
            await pending_approval(gw, "files.write_text")
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        async with asyncio.timeout(60):
            while True:
                events = await gw.events("acme", "mcp_tool_call")
                if events:
                    break
                await asyncio.sleep(0.05)
        assert [(e["outcome"], e["key_id"]) for e in events] == [("cancelled", "acme-alice")]
        assert gw.writes == []


async def test_a_tools_images_reach_the_mcp_client_as_image_content() -> None:
    """An image a source returns (MCP image content) is passed on as image content, next to
    the text; the call's store event holds the text, not the image bytes."""
    import base64

    from mcp_types import ImageContent, TextContent

    from penguiflow_agents.testing.mcp_server import PIXEL_PNG

    policies = [{"tenant": "acme", "allow": ["t.*"]}]
    async with gateway(policies=policies, mcp_source=True) as gw, gw.client("alice") as client:
        result = await client.call_tool("t.image", {"caption": "red"})
        events = await gw.events("acme", "mcp_tool_call")
    assert not result.is_error, text_of(result)
    text, image = result.content
    assert isinstance(text, TextContent) and text.text.startswith("red\n[image 1: image/png")
    assert isinstance(image, ImageContent) and image.mime_type == "image/png"
    assert base64.b64decode(image.data) == PIXEL_PNG
    assert events and image.data not in json.dumps(events)
