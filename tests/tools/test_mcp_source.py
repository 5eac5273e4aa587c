"""MCPToolSource against real MCP server processes (our fault-injecting test server).

Every test talks to a real server over stdio (a child process per test) or
streamable HTTP (one server process per module on a free 127.0.0.1 port).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from penguiflow_agents.exceptions import MissingEnvVarError
from penguiflow_agents.testing.mcp_server import (
    HttpServerProcess,
    running_http_server,
)
from penguiflow_agents.tools._manifest import SourceManifest, load_manifest
from penguiflow_agents.tools._mcp import MCPToolSource, MCPUnavailableError
from penguiflow_agents.tools._types import CallContext, ToolErrorKind, ToolSpec

# One event loop for the module, so that sessions can be shared between tests
# (a stdio server takes about a second to start).
pytestmark = pytest.mark.asyncio(loop_scope="module")

# Generous bound for anything that should be "immediate" on a shared 2-core machine.
PROMPT_S = 2.0
# Bound on waiting for the server to report something it has received (a cancel, a call).
SEEN_S = 5.0
# "python" is replaced by the running interpreter, so the server runs in this virtualenv.
STDIO_COMMAND = ["python", "-m", "penguiflow_agents.testing.mcp_server"]
# Both protocol eras over HTTP (cancel = closing the request's stream at 2026-07-28,
# notifications/cancelled before); stdio speaks the default era.
ERAS = [("stdio", "auto"), ("http", "auto"), ("http", "legacy")]


def _children() -> set[int]:
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.add(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def _manifest(transport: str, url: str = "", *, name: str = "fx", **extra: Any) -> SourceManifest:
    path = f"{name}.yaml"
    if transport == "stdio":
        return SourceManifest(
            name=name, transport="mcp_stdio", command=STDIO_COMMAND, path=path, **extra
        )
    return SourceManifest(name=name, transport="mcp_http", url=url, path=path, **extra)


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpServerProcess]:
    with running_http_server() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(http_server: HttpServerProcess) -> AsyncIterator[dict[str, MCPToolSource]]:
    sources = {
        "stdio": MCPToolSource(_manifest("stdio")),
        "http": MCPToolSource(_manifest("http", http_server.url)),
    }
    yield sources
    await asyncio.gather(*(s.aclose() for s in sources.values()))


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="module")
async def source(shared: dict[str, MCPToolSource], transport: str) -> MCPToolSource:
    src = shared[transport]
    await _call_ok(src, "reset_stats")
    return src


async def _call_ok(src: MCPToolSource, tool: str, **args: Any) -> Any:
    result = await src.call(tool, args, CallContext())
    assert result.ok, result
    return result.structured if result.structured is not None else result.output


async def _eventually(
    check: Callable[[], Awaitable[bool] | bool], within_s: float = SEEN_S
) -> None:
    """Poll ``check`` until true (for what another process or task does on its own time)."""
    deadline = time.monotonic() + within_s
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within_s}s: {check}")
        await asyncio.sleep(0.01)


async def _wait_for_stat(src: MCPToolSource, key: str, at_least: int) -> dict[str, Any]:
    stats: dict[str, Any] = {}

    async def seen() -> bool:
        stats.update(await _call_ok(src, "stats"))
        return bool(stats[key] >= at_least)

    await _eventually(seen)
    return stats


async def test_tools_are_listed_namespaced_with_definition_hashes(source: MCPToolSource) -> None:
    specs = await source.list_tools()
    by_name = {s.name: s for s in specs}
    assert {"fx.echo", "fx.add", "fx.slow", "fx.crash"} <= set(by_name)
    add = by_name["fx.add"]
    assert add.source == "fx" and add.bare_name == "add"
    assert add.input_schema["properties"].keys() == {"a", "b"}
    assert add.definition_hash == add.with_hash().definition_hash != ""
    assert add.description == "Add two integers."


async def test_include_exclude_and_per_tool_overrides_shape_the_specs(
    tmp_path: Path, http_server: HttpServerProcess
) -> None:
    manifest = tmp_path / "fx.yaml"
    manifest.write_text(
        f"name: fx\ntransport: mcp_http\nurl: {http_server.url}\n"
        'include: ["e.*", "add", "slow"]\nexclude: ["slow"]\nidempotent: false\n'
        "tools:\n  add: {risk: high, idempotent: true, timeout_s: 3}\n"
    )
    src = MCPToolSource.from_manifest(load_manifest(manifest))
    try:
        specs = {s.name: s for s in await src.list_tools()}
    finally:
        await src.aclose()
    assert set(specs) == {"fx.echo", "fx.add"}
    assert (specs["fx.add"].risk, specs["fx.add"].idempotent, specs["fx.add"].timeout_s) == (
        "high",
        True,
        3,
    )
    # echo has no annotations: risk medium (nothing says it is harmless).
    assert (specs["fx.echo"].risk, specs["fx.echo"].idempotent, specs["fx.echo"].timeout_s) == (
        "medium",
        False,
        None,
    )


async def test_structured_content_is_kept_and_is_what_the_model_reads(
    source: MCPToolSource,
) -> None:
    """The server sends text "5" and structured {"result": 5}: the output is the JSON value."""
    result = await source.call("add", {"a": 2, "b": 3}, CallContext())
    assert result.ok and result.tool == "fx.add"
    assert result.output == {"result": 5}
    assert result.structured == {"result": 5}
    assert result.attempts == 1 and result.latency_s > 0


async def test_a_result_without_structured_content_is_its_text(source: MCPToolSource) -> None:
    result = await source.call("text_only", {"text": "plain words"}, CallContext())
    assert result.ok and result.structured is None
    assert result.output == "plain words"


async def test_an_is_error_result_becomes_a_tool_error_with_its_text(source: MCPToolSource) -> None:
    result = await source.call("fail", {"message": "disk is full"}, CallContext())
    assert not result.ok
    assert result.error_kind is ToolErrorKind.TOOL_ERROR
    assert result.error is not None and "disk is full" in result.error


async def test_a_json_rpc_error_becomes_a_tool_error_naming_the_code(source: MCPToolSource) -> None:
    result = await source.call(
        "fail", {"message": "quota exceeded", "protocol": True}, CallContext()
    )
    assert not result.ok
    assert result.error_kind is ToolErrorKind.TOOL_ERROR
    assert (
        result.error is not None and "-32099" in result.error and "quota exceeded" in result.error
    )


async def test_progress_notifications_become_tool_progress_events_for_the_caller(
    source: MCPToolSource,
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def sink(kind: str, payload: Any) -> None:
        events.append((kind, dict(payload)))

    ctx = CallContext(call_id="c-1", on_event=sink)
    result = await source.call("slow", {"seconds": 0.15, "steps": 3}, ctx)
    assert result.ok, result
    assert [k for k, _ in events] == ["tool.progress"] * 3
    assert [p["progress"] for _, p in events] == [1, 2, 3]
    assert events[-1][1] == {
        "tool": "fx.slow",
        "call_id": "c-1",
        "progress": 3,
        "total": 3,
        "message": "step 3 of 3",
    }


@pytest.mark.parametrize(("transport", "protocol"), ERAS)
async def test_cancelling_a_call_cancels_the_request_on_the_server(
    transport: str, protocol: str, shared: dict[str, MCPToolSource], http_server: HttpServerProcess
) -> None:
    url = http_server.url if transport == "http" else ""
    own = protocol != "auto"
    src = MCPToolSource(_manifest(transport, url), protocol="legacy") if own else shared[transport]
    try:
        await _call_ok(src, "reset_stats")
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await src.call("slow", {"seconds": 5}, CallContext())
        assert time.perf_counter() - started < 0.2 + PROMPT_S
        stats = await _wait_for_stat(src, "cancelled", 1)
        assert stats["cancelled"] == 1 and stats["in_flight"] == 0
        assert (await src.call("echo", {"text": "still up"}, CallContext())).output == {
            "result": "still up"
        }
    finally:
        if own:
            await src.aclose()


async def test_concurrent_calls_share_one_session(source: MCPToolSource) -> None:
    results = await asyncio.gather(
        *(source.call("echo", {"text": str(i)}, CallContext()) for i in range(50))
    )
    assert [r.output for r in results] == [{"result": str(i)} for i in range(50)]
    stats = await _call_ok(source, "stats")
    assert stats["calls"]["echo"] == 50
    assert len({(await _call_ok(source, "stats"))["pid"] for _ in range(3)}) == 1


async def test_a_stdio_server_crash_fails_in_flight_calls_at_once_and_the_next_call_restarts_it() -> (
    None
):
    before = _children()
    src = MCPToolSource(_manifest("stdio"))
    try:
        first_pid = (await _call_ok(src, "stats"))["pid"]
        slow = asyncio.create_task(src.call("slow", {"seconds": 30}, CallContext()))
        await _wait_for_stat(src, "in_flight", 1)
        started = time.perf_counter()
        crashed = await src.call("crash", {}, CallContext())
        in_flight = await slow
        assert time.perf_counter() - started < PROMPT_S
        for result in (crashed, in_flight):
            assert result.error_kind is ToolErrorKind.UNAVAILABLE, result
            assert "lost during the call" in (result.error or "")
        assert not src.connected
        again = await src.call("echo", {"text": "back"}, CallContext())
        assert again.ok and again.output == {"result": "back"}
        assert (await _call_ok(src, "stats"))["pid"] != first_pid
    finally:
        await src.aclose()
    assert _children() - before == set()


async def test_a_server_that_dies_while_idle_is_noticed_and_the_next_call_just_works() -> None:
    """No call in flight when the process dies: the end of its output marks the session
    broken at once, so the next call starts a new server instead of failing."""
    before = _children()
    src = MCPToolSource(_manifest("stdio"))
    try:
        first_pid = (await _call_ok(src, "stats"))["pid"]
        assert src.connected
        psutil.Process(first_pid).kill()
        await _eventually(lambda: not src.connected)
        result = await src.call("echo", {"text": "fresh"}, CallContext())
        assert result.ok and result.output == {"result": "fresh"}, result
        assert (await _call_ok(src, "stats"))["pid"] != first_pid
    finally:
        await src.aclose()
    assert _children() - before == set()


async def test_an_http_server_crash_fails_in_flight_calls_and_the_source_reconnects_after_restart() -> (
    None
):
    with running_http_server() as server:
        src = MCPToolSource(_manifest("http", server.url))
        changed: asyncio.Queue[list[ToolSpec]] = asyncio.Queue()
        src.on_tools_changed = changed.put_nowait
        try:
            slow = asyncio.create_task(src.call("slow", {"seconds": 30}, CallContext()))
            await _wait_for_stat(src, "in_flight", 1)
            started = time.perf_counter()
            crashed = await src.call("crash", {}, CallContext())
            in_flight = await slow
            assert time.perf_counter() - started < PROMPT_S
            assert crashed.error_kind is ToolErrorKind.UNAVAILABLE, crashed
            assert in_flight.error_kind is ToolErrorKind.UNAVAILABLE, in_flight
            down = await src.call("echo", {"text": "nobody home"}, CallContext())
            assert down.error_kind is ToolErrorKind.UNAVAILABLE, down
            with running_http_server(server.port) as restarted:
                try:
                    # A failed reconnect (while the server was down) opened a short backoff window.
                    async def back() -> bool:
                        return (await src.call("echo", {"text": "back"}, CallContext())).ok

                    await _eventually(back, within_s=10)
                    assert (await _call_ok(src, "stats"))["pid"] == restarted.pid
                    # The new session watches the new server's tool list.
                    version = (await _call_ok(src, "change_tools"))["result"]
                    async with asyncio.timeout(SEEN_S):
                        specs = await changed.get()
                    assert f"fx.added_{version}" in {s.name for s in specs}
                finally:
                    await src.aclose()
        finally:
            await src.aclose()


async def test_a_restarted_http_server_that_forgot_our_session_gets_a_new_one_transparently() -> (
    None
):
    with running_http_server() as first:
        src = MCPToolSource(_manifest("http", first.url, name="rs"), protocol="legacy")
        changed: asyncio.Queue[list[ToolSpec]] = asyncio.Queue()
        src.on_tools_changed = changed.put_nowait
        assert await _call_ok(src, "echo", text="before") == {"result": "before"}
    try:
        with running_http_server(first.port) as second:
            try:
                # The old session id gets "404 Session not found": reconnect and send again.
                result = await src.call("echo", {"text": "after"}, CallContext())
                assert result.ok and result.attempts == 1, result
                assert (await _call_ok(src, "stats"))["pid"] == second.pid
                version = (await _call_ok(src, "change_tools"))["result"]
                async with asyncio.timeout(SEEN_S):
                    specs = await changed.get()
                assert f"rs.added_{version}" in {s.name for s in specs}
            finally:
                await src.aclose()
    finally:
        await src.aclose()


@pytest.mark.parametrize(("transport", "protocol"), ERAS)
async def test_list_changed_refreshes_the_cache_and_changes_the_definition_hash(
    transport: str, protocol: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("http_server").url if transport == "http" else ""
    # Its own name: the shared HTTP session hears the same change and logs it too.
    src = MCPToolSource(_manifest(transport, url, name="lc"), protocol=protocol)  # type: ignore[arg-type]
    changed: asyncio.Queue[list[ToolSpec]] = asyncio.Queue()
    src.on_tools_changed = changed.put_nowait
    try:
        before = {s.name: s for s in await src.list_tools()}
        with capture_logs() as logs:
            version = (await _call_ok(src, "change_tools"))["result"]
            async with asyncio.timeout(SEEN_S):
                specs = {s.name: s for s in await changed.get()}
        assert set(specs) == set(before) | {f"lc.added_{version}"}
        assert specs["lc.echo"].description == f"Echo the text back (version {version})."
        assert specs["lc.echo"].definition_hash != before["lc.echo"].definition_hash
        assert specs["lc.add"].definition_hash == before["lc.add"].definition_hash
        listed = {s.name: s.definition_hash for s in await src.list_tools()}
        assert listed == {n: s.definition_hash for n, s in specs.items()}
        events = [
            e for e in logs if e["event"] == "tool_definition_changed" and e["source"] == "lc"
        ]
        assert [(e["tool"], e["previous_hash"], e["definition_hash"]) for e in events] == [
            ("lc.echo", before["lc.echo"].definition_hash, specs["lc.echo"].definition_hash)
        ]
    finally:
        await src.aclose()


async def test_server_stderr_goes_to_the_log_not_the_terminal(
    shared: dict[str, MCPToolSource], capfd: pytest.CaptureFixture[str]
) -> None:
    with capture_logs() as logs:
        await _call_ok(shared["stdio"], "write_stderr", text="a line on stderr")
        # The pipe is read by its own task.
        await _eventually(lambda: any(e.get("line") == "a line on stderr" for e in logs))
    lines = [
        (e["event"], e["source"], e["line"])
        for e in logs
        if e["event"] == "mcp_server_stderr" and "MCP server starting" not in e["line"]
    ]  # the server's own start-up line too when this test is the first to start it
    assert lines == [("mcp_server_stderr", "fx", "a line on stderr")]
    assert "a line on stderr" not in capfd.readouterr().err


async def test_env_vars_are_resolved_at_connect_and_never_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PF_TEST_MCP_SECRET", "s3cr3t-value-42")
    manifest = _manifest("stdio", env={"GIVEN": "token=${PF_TEST_MCP_SECRET}"})
    src = MCPToolSource(manifest)
    with capture_logs() as logs:
        try:
            assert await _call_ok(src, "getenv", name="GIVEN") == {
                "result": "token=s3cr3t-value-42"
            }
            await _call_ok(src, "write_stderr", text="leaking s3cr3t-value-42 here")
        finally:
            await src.aclose()
    assert "s3cr3t-value-42" not in repr(logs)
    assert any(e.get("line") == "leaking *** here" for e in logs)


async def test_a_missing_env_var_is_a_clear_error_naming_variable_and_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PF_TEST_MCP_UNSET", raising=False)
    src = MCPToolSource(_manifest("stdio", env={"X": "${PF_TEST_MCP_UNSET}"}))
    try:
        with pytest.raises(MissingEnvVarError) as caught:
            await src.list_tools()
        assert caught.value.variable == "PF_TEST_MCP_UNSET" and caught.value.file == "fx.yaml"
        result = await src.call("echo", {"text": "x"}, CallContext())
        assert result.error_kind is ToolErrorKind.UNAVAILABLE
        assert "PF_TEST_MCP_UNSET" in (result.error or "") and "fx.yaml" in (result.error or "")
    finally:
        await src.aclose()


async def test_an_unreachable_http_server_is_unavailable_without_echoing_secrets(
    monkeypatch: pytest.MonkeyPatch, unused_tcp_port: int
) -> None:
    monkeypatch.setenv("PF_TEST_MCP_TOKEN", "tok-9f8e7d6c")
    manifest = SourceManifest(
        name="fx",
        transport="mcp_http",
        url=f"http://127.0.0.1:{unused_tcp_port}/mcp?key=${{PF_TEST_MCP_TOKEN}}",
        headers={"Authorization": "Bearer ${PF_TEST_MCP_TOKEN}"},
        path="fx.yaml",
    )
    src = MCPToolSource(manifest)
    with capture_logs() as logs:
        try:
            with pytest.raises(MCPUnavailableError) as caught:
                await src.list_tools()
            result = await src.call("echo", {"text": "x"}, CallContext())
        finally:
            await src.aclose()
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert "fx" in str(caught.value)
    assert "tok-9f8e7d6c" not in str(caught.value) + (result.error or "") + repr(logs)


async def test_a_server_that_cannot_start_is_unavailable_and_retried_with_backoff() -> None:
    src = MCPToolSource(
        SourceManifest(name="fx", transport="mcp_stdio", command=["/nonexistent/mcp-server"])
    )
    try:
        first = await src.call("echo", {"text": "x"}, CallContext())
        assert first.error_kind is ToolErrorKind.UNAVAILABLE
        assert "/nonexistent/mcp-server" in (first.error or "")
        started = time.perf_counter()
        second = await src.call("echo", {"text": "x"}, CallContext())
        assert time.perf_counter() - started < 0.1
        assert second.error_kind is ToolErrorKind.UNAVAILABLE
        assert "next connection attempt" in (second.error or "")
    finally:
        await src.aclose()


async def test_python_in_a_command_is_the_running_interpreter(
    shared: dict[str, MCPToolSource],
) -> None:
    assert STDIO_COMMAND[0] == "python"
    assert (await _call_ok(shared["stdio"], "stats"))["executable"] == sys.executable


async def test_aclose_leaves_no_server_process_behind() -> None:
    before = _children()
    src = MCPToolSource(_manifest("stdio"))
    pid = (await _call_ok(src, "stats"))["pid"]
    assert pid in _children() - before
    await src.aclose()
    assert _children() - before == set()
    assert not src.connected


async def test_a_source_outlives_its_event_loop_and_reconnects_from_a_new_one() -> None:
    """asyncio.run() twice (here in a worker thread): the first loop's end stops its
    server; the next loop gets a session of its own."""
    before = _children()
    src = MCPToolSource(_manifest("stdio"))

    async def pid() -> int:
        return int((await _call_ok(src, "stats"))["pid"])

    def two_loops() -> tuple[int, set[int], int]:
        first = asyncio.run(pid())  # no aclose: the loop's shutdown cancels the session
        between = _children() - before
        second = asyncio.run(pid())
        asyncio.run(src.aclose())
        return first, between, second

    first, between, second = await asyncio.to_thread(two_loops)
    assert first != second
    assert between == set()
    assert _children() - before == set()


async def test_aclose_while_connecting_stops_the_server() -> None:
    before = _children()
    src = MCPToolSource(_manifest("stdio"))
    pending = asyncio.create_task(src.list_tools())
    await _eventually(
        lambda: bool(_children() - before), within_s=PROMPT_S
    )  # spawned, still starting
    assert _children() - before, "the server process did not start"
    await src.aclose()
    with pytest.raises(MCPUnavailableError):
        await pending
    assert _children() - before == set()
