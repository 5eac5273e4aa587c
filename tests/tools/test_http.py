"""HTTP tool sources (respx, no sockets): requests built from arguments, failures as results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from penguiflow_agents.tools import HttpToolSource, ToolErrorKind, ToolRegistry, load_manifest

BASE = "http://tickets.test/api"
SECRET = "s3cr3t-token-value"
MANIFEST = f"""\
name: tickets
transport: http
url: {BASE}
headers: {{Authorization: "Bearer ${{PF_TEST_TICKETS_TOKEN}}"}}
timeout_s: 0.5
retries: {{max_attempts: 3, initial_backoff_s: 0.01, max_backoff_s: 0.02}}
tools:
  get_ticket:
    method: GET
    path: /tickets/{{ticket_id}}
    description: Fetch one ticket.
    input_schema:
      type: object
      properties: {{ticket_id: {{type: string}}, verbose: {{type: boolean}}}}
      required: [ticket_id]
    idempotent: true
  create_ticket:
    method: POST
    path: /projects/{{project}}/tickets
    query: [dry_run]
    input_schema:
      type: object
      properties:
        project: {{type: string}}
        title: {{type: string}}
        labels: {{type: array, items: {{type: string}}}}
        dry_run: {{type: boolean}}
      required: [project, title]
  ping:
    method: GET
    path: /ping
"""


@pytest.fixture
def manifest_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PF_TEST_TICKETS_TOKEN", SECRET)
    (tmp_path / "tickets.yaml").write_text(MANIFEST, encoding="utf-8")
    return tmp_path


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def registry(manifest_dir: Path) -> AsyncIterator[ToolRegistry]:
    async with ToolRegistry.from_dir(manifest_dir) as reg:
        yield reg


async def test_manifest_endpoints_are_listed_as_tools(registry: ToolRegistry) -> None:
    specs = {s.name: s for s in await registry.list_tools()}
    assert set(specs) == {"tickets.get_ticket", "tickets.create_ticket", "tickets.ping"}
    assert specs["tickets.get_ticket"].description == "Fetch one ticket."
    assert specs["tickets.get_ticket"].idempotent is True
    assert specs["tickets.ping"].description == "GET /ping"


async def test_get_fills_the_path_template_and_sends_the_rest_as_query(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    route = api.get("/tickets/T%2F1").mock(return_value=httpx.Response(200, json={"id": "T/1"}))
    result = await registry.call("tickets.get_ticket", {"ticket_id": "T/1", "verbose": True})
    assert result.ok, result.error
    assert result.output == {"id": "T/1"} and result.structured == {"id": "T/1"}
    request = route.calls.last.request
    assert request.url.params["verbose"] == "true"
    assert request.headers["authorization"] == f"Bearer {SECRET}"


async def test_post_sends_a_json_body_and_declared_query_arguments(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    route = api.post("/projects/core/tickets").mock(
        return_value=httpx.Response(201, json={"id": 7})
    )
    result = await registry.call(
        "tickets.create_ticket",
        {"project": "core", "title": "Broken", "labels": ["bug"], "dry_run": False},
    )
    assert result.ok and result.output == {"id": 7}
    request = route.calls.last.request
    assert json.loads(request.content) == {"title": "Broken", "labels": ["bug"]}
    assert request.url.params["dry_run"] == "false"


async def test_429_with_retry_after_is_retried_for_an_idempotent_tool_after_waiting(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    route = api.get("/tickets/1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}, text="slow down"),
            httpx.Response(200, json={"id": "1"}),
        ]
    )
    start = time.monotonic()
    result = await registry.call("tickets.get_ticket", {"ticket_id": "1"})
    assert result.ok, result.error
    assert result.attempts == 2 and route.call_count == 2
    assert time.monotonic() - start >= 0.95, "Retry-After (1 s) was honoured"


async def test_429_is_not_retried_for_a_non_idempotent_tool(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    route = api.post("/projects/core/tickets").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "1"})
    )
    result = await registry.call("tickets.create_ticket", {"project": "core", "title": "x"})
    assert result.error_kind is ToolErrorKind.OVERLOADED
    assert "HTTP 429" in (result.error or "")
    assert result.attempts == 1 and route.call_count == 1


async def test_retry_after_longer_than_the_cap_ends_the_call(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    route = api.get("/tickets/1").mock(
        return_value=httpx.Response(503, headers={"Retry-After": "3600"})
    )
    result = await registry.call("tickets.get_ticket", {"ticket_id": "1"})
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert route.call_count == 1


async def test_500_is_unavailable_and_retried_up_to_max_attempts_when_idempotent(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    route = api.get("/tickets/1").mock(return_value=httpx.Response(500, text="boom"))
    result = await registry.call("tickets.get_ticket", {"ticket_id": "1"})
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert "GET /tickets/{ticket_id}" in (result.error or "") and "HTTP 500" in (result.error or "")
    assert "boom" in (result.error or "")
    assert result.attempts == 3 and route.call_count == 3


async def test_4xx_is_a_tool_error_and_not_retried(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    route = api.get("/tickets/404").mock(
        return_value=httpx.Response(404, json={"error": "no such ticket"})
    )
    result = await registry.call("tickets.get_ticket", {"ticket_id": "404"})
    assert result.error_kind is ToolErrorKind.TOOL_ERROR
    assert "HTTP 404" in (result.error or "") and "no such ticket" in (result.error or "")
    assert route.call_count == 1


async def test_timeout_is_a_timeout_result(registry: ToolRegistry, api: respx.MockRouter) -> None:
    api.get("/ping").mock(side_effect=httpx.ReadTimeout("read timed out"))
    result = await registry.call("tickets.ping", {})
    assert result.error_kind is ToolErrorKind.TIMEOUT
    assert result.attempts == 1, "ping is not idempotent: no retry"


async def test_a_slow_endpoint_is_cut_off_at_timeout_s(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    cancelled = asyncio.Event()

    async def never_answers(request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return httpx.Response(200, json=True)

    api.get("/ping").mock(side_effect=never_answers)
    start = time.monotonic()
    result = await registry.call("tickets.ping", {})
    assert result.error_kind is ToolErrorKind.TIMEOUT
    assert time.monotonic() - start < 0.5 + 0.5
    assert cancelled.is_set(), "the HTTP call was cancelled"


async def test_connection_failure_is_unavailable(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    api.get("/ping").mock(side_effect=httpx.ConnectError("connection refused"))
    result = await registry.call("tickets.ping", {})
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert "GET /ping" in (result.error or "")


async def test_bad_json_body_is_a_clear_tool_error_naming_the_path_not_the_secret(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    api.get("/ping").mock(
        return_value=httpx.Response(
            200, text="<html>pong</html>", headers={"content-type": "text/html"}
        )
    )
    result = await registry.call("tickets.ping", {})
    assert result.error_kind is ToolErrorKind.TOOL_ERROR
    assert "GET /ping" in (result.error or "") and "not JSON" in (result.error or "")
    assert SECRET not in (result.error or "")


async def test_a_server_echoing_the_token_is_redacted_in_errors(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    api.get("/ping").mock(return_value=httpx.Response(401, text=f"bad token Bearer {SECRET}"))
    result = await registry.call("tickets.ping", {})
    assert result.error_kind is ToolErrorKind.TOOL_ERROR
    assert SECRET not in (result.error or "") and "***" in (result.error or "")


async def test_empty_2xx_body_is_ok_with_no_output(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    api.get("/ping").mock(return_value=httpx.Response(204))
    result = await registry.call("tickets.ping", {})
    assert result.ok and result.output is None


class RecordingTransport(httpx.MockTransport):
    def __init__(self) -> None:
        super().__init__(lambda request: httpx.Response(200, json={"path": request.url.path}))
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_the_source_client_is_closed_on_aclose(manifest_dir: Path) -> None:
    transport = RecordingTransport()
    source = HttpToolSource(load_manifest(manifest_dir / "tickets.yaml"), transport=transport)
    registry = ToolRegistry()
    registry.add_source(source)
    for _ in range(3):
        result = await registry.call("tickets.ping", {})
        assert result.output == {"path": "/api/ping"}
    assert transport.closed == 0
    await registry.aclose()
    assert transport.closed == 1


async def test_a_secret_in_the_url_stays_out_of_httpx_logs_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs every request's URL at info level; the ${VAR} value in it is masked."""
    url_secret = "k-77e1c0ffee"
    monkeypatch.setenv("PF_TEST_TICKETS_URL_KEY", url_secret)
    (tmp_path / "keyed.yaml").write_text(
        "name: keyed\ntransport: http\nurl: http://keyed.test/${PF_TEST_TICKETS_URL_KEY}/api\n"
        "tools:\n  ping: {method: GET, path: /ping}\n  boom: {method: GET, path: /boom}\n",
        encoding="utf-8",
    )
    caplog.set_level(logging.DEBUG)
    # Another library (litellm, once imported by an earlier test) may have quietened httpx.
    caplog.set_level(logging.INFO, logger="httpx")
    with respx.mock(assert_all_called=True) as router:
        router.get(f"http://keyed.test/{url_secret}/api/ping").mock(
            return_value=httpx.Response(200, json={"pong": True})
        )
        router.get(f"http://keyed.test/{url_secret}/api/boom").mock(
            side_effect=httpx.ConnectError(f"cannot reach keyed.test/{url_secret}")
        )
        async with ToolRegistry.from_dir(tmp_path) as registry:
            ok = await registry.call("keyed.ping", {})
            down = await registry.call("keyed.boom", {})
    assert ok.ok and ok.output == {"pong": True}
    assert down.error_kind is ToolErrorKind.UNAVAILABLE and "***" in (down.error or "")
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)
    assert url_secret not in caplog.text + (down.error or "")


@contextlib.asynccontextmanager
async def slow_http_server(delay_s: float) -> AsyncIterator[str]:
    """A real HTTP endpoint on 127.0.0.1 that answers ``{"late": true}`` after ``delay_s``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = b'{"late": true}'
        try:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(delay_s)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (its timeout), or the server is closing
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_a_tools_own_timeout_s_longer_than_the_sources_is_the_limit(tmp_path: Path) -> None:
    """Source timeout_s 0.2, tool timeout_s 5: a 0.6 s endpoint answers (over a real socket)."""
    async with slow_http_server(0.6) as url:
        (tmp_path / "slowpoke.yaml").write_text(
            f"name: slowpoke\ntransport: http\nurl: {url}\ntimeout_s: 0.2\n"
            "tools:\n  wait: {method: GET, path: /wait, timeout_s: 5}\n"
            "  quick: {method: GET, path: /quick}\n",
            encoding="utf-8",
        )
        async with ToolRegistry.from_dir(tmp_path) as registry:
            waited = await registry.call("slowpoke.wait", {})
            quick = await registry.call("slowpoke.quick", {})
    assert waited.ok and waited.output == {"late": True}, waited
    assert quick.error_kind is ToolErrorKind.TIMEOUT


async def test_a_url_made_invalid_by_its_variable_is_down_without_echoing_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PF_TEST_TICKETS_BAD_PORT", "99999-secret-port")
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ntransport: http\nurl: http://127.0.0.1:${PF_TEST_TICKETS_BAD_PORT}/api\n"
        "tools:\n  ping: {method: GET, path: /ping}\n",
        encoding="utf-8",
    )
    with capture_logs() as logs:
        async with ToolRegistry.from_dir(tmp_path) as registry:
            assert await registry.list_tools() == []
            result = await registry.call("bad.ping", {})
            reason = registry.status()[0].reason or ""
    assert "bad.yaml" in reason and "not valid" in reason
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert "99999-secret-port" not in reason + (result.error or "") + repr(logs)


async def test_an_image_body_is_a_result_the_model_is_shown_as_an_image(
    registry: ToolRegistry, api: respx.MockRouter
) -> None:
    """A 2xx PNG/JPEG/GIF/WebP body (issue #13, item 19's sibling): described in the text,
    carried as ``media``, shown to the model as image content by the planner."""
    import base64

    from penguiflow_agents._identity import Headers
    from penguiflow_agents.planner import ReactPlanner
    from penguiflow_agents.testing.mcp_server import PIXEL_PNG
    from penguiflow_agents.testing.scripted_llm import ScriptedLLM

    api.get("/ping").mock(
        return_value=httpx.Response(
            200, content=PIXEL_PNG, headers={"content-type": "image/png; charset=binary"}
        )
    )
    result = await registry.call("tickets.ping", {})
    assert result.ok, result.error
    assert result.output == f"[image 1: image/png, {len(PIXEL_PNG)} bytes, attached as an image]"
    encoded = base64.b64encode(PIXEL_PNG).decode()
    assert [(m.mime_type, m.data) for m in result.media] == [("image/png", encoded)]

    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "tickets.ping", "arguments": {}, "id": "p1"}]}, {"content": "ok"}]
    )
    done = await ReactPlanner(llm=llm, registry=registry).run("ping", headers=Headers(tenant="t"))
    assert done.status == "completed", done.error
    shown = [
        part
        for m in llm.requests[-1].messages
        if m["role"] == "user" and isinstance(m["content"], list)
        for part in m["content"]
    ]
    assert shown[-1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{encoded}"},
    }
    # Any other non-JSON body is still refused, naming what is accepted.
    api.get("/ping").mock(
        return_value=httpx.Response(
            200, content=b"<svg/>", headers={"content-type": "image/svg+xml"}
        )
    )
    refused = await registry.call("tickets.ping", {})
    assert refused.error_kind == ToolErrorKind.TOOL_ERROR
    assert "must return JSON (or a PNG, JPEG, GIF or WebP image)" in (refused.error or "")
