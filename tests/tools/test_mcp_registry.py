"""MCP sources through ToolRegistry: protection (semaphore, queue timeout, timeout,
retries), crashes and list changes against real server processes, and the real
`mcp-server-time` from PyPI through tools/time.yaml, in-process and via the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from penguiflow_agents.testing.mcp_server import HttpServerProcess, running_http_server
from penguiflow_agents.tools import CallContext, SourceManifest, ToolErrorKind, ToolRegistry

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
STDIO_COMMAND = ["python", "-m", "penguiflow_agents.testing.mcp_server"]
# Generous margin over a timing bound, for a shared 2-core machine.
MARGIN_S = 0.8
# Bound on waiting for the server to report what it has seen.
SEEN_S = 5.0
# Bound on one CLI run (it starts the time server and the interpreter twice over).
CLI_TIMEOUT_S = 60


def _children() -> set[int]:
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.add(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpServerProcess]:
    with running_http_server() as server:
        yield server


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _registry(transport: str, url: str = "", *, name: str = "fx", **settings: Any) -> ToolRegistry:
    if transport == "stdio":
        where: dict[str, Any] = {"transport": "mcp_stdio", "command": STDIO_COMMAND}
    else:
        where = {"transport": "mcp_http", "url": url}
    registry = ToolRegistry()
    registry.add_manifest(SourceManifest.model_validate({"name": name, **where, **settings}))
    return registry


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def protected(http_server: HttpServerProcess) -> AsyncIterator[dict[str, ToolRegistry]]:
    """One registry per transport: 3 slots, a long queue, timeout_s=1 (shared: a
    stdio server takes about a second to start). The timeout is long enough that a 5 ms
    call never hits it on a loaded machine, short enough to test timeouts with."""
    settings: dict[str, Any] = {"max_concurrency": 3, "queue_timeout_s": 60, "timeout_s": 1.0}
    registries = {
        "stdio": _registry("stdio", **settings),
        "http": _registry("http", http_server.url, **settings),
    }
    yield registries
    await asyncio.gather(*(r.aclose() for r in registries.values()))


async def _stats(registry: ToolRegistry, source: str = "fx") -> dict[str, Any]:
    result = await registry.call(f"{source}.stats", {})
    assert result.ok, result
    return dict(result.structured)


async def _eventually(check: Any, within_s: float = SEEN_S) -> None:
    """Poll the async ``check`` until true (the server acts on its own time)."""
    deadline = time.monotonic() + within_s
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within_s}s")
        await asyncio.sleep(0.02)


async def _stats_when(registry: ToolRegistry, key: str, at_least: int) -> dict[str, Any]:
    """Server stats once ``key`` reached ``at_least``."""
    stats: dict[str, Any] = {}

    async def seen() -> bool:
        stats.update(await _stats(registry))
        return bool(stats[key] >= at_least)

    await _eventually(seen)
    return stats


async def test_200_concurrent_calls_never_put_more_than_max_concurrency_in_flight(
    transport: str, protected: dict[str, ToolRegistry]
) -> None:
    registry = protected[transport]
    assert (await registry.call("fx.reset_stats", {})).ok
    results = await asyncio.gather(
        *(registry.call("fx.slow", {"seconds": 0.005}) for _ in range(200))
    )
    assert [r.outcome for r in results] == ["ok"] * 200
    stats = await _stats(registry)
    assert stats["calls"]["slow"] == 200
    assert stats["max_in_flight"] == 3


async def test_with_a_short_queue_timeout_the_overflow_is_overloaded(
    http_server: HttpServerProcess,
) -> None:
    registry = _registry(
        "http", http_server.url, max_concurrency=3, queue_timeout_s=0.1, timeout_s=30
    )
    async with registry:
        assert (await registry.call("fx.reset_stats", {})).ok
        started = time.perf_counter()
        results = await asyncio.gather(
            *(registry.call("fx.slow", {"seconds": 1.0}) for _ in range(200))
        )
        elapsed = time.perf_counter() - started
        stats = await _stats(registry)
    outcomes = [r.outcome for r in results]
    assert outcomes.count("ok") == 3
    assert outcomes.count("overloaded") == 197
    overloaded = next(r for r in results if r.outcome == "overloaded")
    assert "max_concurrency" in (overloaded.error or "") and overloaded.attempts == 0
    assert stats["calls"]["slow"] == 3 and stats["max_in_flight"] == 3
    assert elapsed < 1.0 + MARGIN_S


async def test_timeout_ends_the_call_promptly_and_the_server_sees_it_cancelled(
    transport: str, protected: dict[str, ToolRegistry]
) -> None:
    registry = protected[transport]
    assert (await registry.call("fx.reset_stats", {})).ok
    started = time.perf_counter()
    result = await registry.call("fx.slow", {"seconds": 5})
    elapsed = time.perf_counter() - started
    assert result.error_kind is ToolErrorKind.TIMEOUT, result
    assert "1 s (timeout_s)" in (result.error or "")
    assert 1.0 <= elapsed < 1.0 + MARGIN_S
    stats = await _stats_when(registry, "cancelled", 1)
    assert stats["cancelled"] == 1 and stats["in_flight"] == 0


async def test_killing_the_server_mid_call_is_unavailable_and_it_is_restarted_for_the_next_call() -> (
    None
):
    """The crash call itself is unavailable; an idempotent call cut by the same crash is
    retried on the restarted server; no server process is left behind."""
    before = _children()
    registry = _registry(
        "stdio",
        timeout_s=30,
        retries={"max_attempts": 3, "initial_backoff_s": 0.05, "max_backoff_s": 0.1},
        tools={"slow": {"idempotent": True}},
    )
    async with registry:
        first_pid = (await _stats(registry))["pid"]
        slow = asyncio.create_task(registry.call("fx.slow", {"seconds": 0.5}))
        await _stats_when(registry, "in_flight", 1)
        started = time.perf_counter()
        crashed = await registry.call("fx.crash", {})
        assert crashed.error_kind is ToolErrorKind.UNAVAILABLE, crashed
        assert crashed.attempts == 1 and time.perf_counter() - started < MARGIN_S
        result = await slow
        assert result.ok and result.attempts == 2, result
        again = await registry.call("fx.echo", {"text": "back"})
        assert again.ok and again.output == {"result": "back"}
        assert (await _stats(registry))["pid"] != first_pid
    assert _children() - before == set()


async def test_a_flaky_idempotent_tool_succeeds_after_retries(
    http_server: HttpServerProcess,
) -> None:
    key = uuid.uuid4().hex
    registry = _registry(
        "http",
        http_server.url,
        timeout_s=1.0,  # ends the two hanging attempts; a quick call fits, even on a busy machine
        retries={"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.05},
        tools={"flaky": {"idempotent": True}},
    )
    async with registry, _registry("http", http_server.url) as reader:
        result = await registry.call("fx.flaky", {"key": key, "fail_times": 2, "hang_s": 10})
        stats = await _stats(reader)  # not under the short timeout (CI once saw 0.3 s pass)
    assert result.ok and result.output == {"result": "ok after 3 calls"}, result
    assert result.attempts == 3
    assert stats["flaky"][key] == 3


async def test_a_flaky_non_idempotent_tool_is_called_exactly_once(
    http_server: HttpServerProcess,
) -> None:
    key = uuid.uuid4().hex
    registry = _registry(
        "http",
        http_server.url,
        timeout_s=0.3,
        retries={"max_attempts": 5, "initial_backoff_s": 0.01, "max_backoff_s": 0.05},
    )
    async with registry, _registry("http", http_server.url) as reader:
        result = await registry.call("fx.flaky", {"key": key, "fail_times": 2, "hang_s": 10})
        stats = await _stats_when(reader, "cancelled", 1)  # not under the short timeout
    assert result.error_kind is ToolErrorKind.TIMEOUT and result.attempts == 1, result
    assert stats["flaky"][key] == 1


async def test_a_tool_error_is_the_tools_answer_and_is_not_retried(
    http_server: HttpServerProcess,
) -> None:
    key = uuid.uuid4().hex
    registry = _registry("http", http_server.url, tools={"flaky": {"idempotent": True}})
    async with registry:
        result = await registry.call("fx.flaky", {"key": key, "fail_times": 1})
        stats = await _stats(registry)
    assert result.error_kind is ToolErrorKind.TOOL_ERROR and result.attempts == 1
    assert "flaky failure 1 of 1" in (result.error or "")
    assert stats["flaky"][key] == 1


async def test_a_changed_tool_list_reaches_the_registry_with_a_new_definition_hash(
    http_server: HttpServerProcess,
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    registry = ToolRegistry(on_event=lambda kind, payload: events.append((kind, dict(payload))))
    registry.add_manifest(
        SourceManifest(name="fx", transport="mcp_http", url=http_server.url, exclude=["added_.*"])
    )
    async with registry:
        before = {s.name: s.definition_hash for s in await registry.list_tools()}
        assert (await registry.call("fx.change_tools", {})).ok
        after: dict[str, str] = {}

        async def relisted() -> bool:  # the refresh follows the server's notification
            after.update({s.name: s.definition_hash for s in await registry.list_tools()})
            return after["fx.echo"] != before["fx.echo"]

        await _eventually(relisted)
        assert set(after) == set(before)  # added_1 is excluded by the manifest
        assert after["fx.echo"] != before["fx.echo"]
        assert registry.definition_hash("fx.echo") == after["fx.echo"]
        assert (await registry.call("fx.added_1", {"x": 2})).error_kind is ToolErrorKind.NOT_FOUND
    assert (
        "tool.definition_changed",
        {
            "tool": "fx.echo",
            "source": "fx",
            "previous_hash": before["fx.echo"],
            "definition_hash": after["fx.echo"],
        },
    ) in events


async def test_a_list_changed_notification_refreshes_the_registry_without_a_relist(
    http_server: HttpServerProcess,
) -> None:
    """The registry's own spec (schema for validation, hash) follows list_changed by itself."""
    registry = ToolRegistry()
    registry.add_manifest(
        SourceManifest(name="fx", transport="mcp_http", url=http_server.url, exclude=["added_.*"])
    )
    async with registry:
        await registry.list_tools()
        before = registry.definition_hash("fx.echo")
        assert (await registry.call("fx.change_tools", {})).ok

        async def pushed() -> bool:  # no list_tools() here: the notification alone must do it
            return registry.definition_hash("fx.echo") != before

        await _eventually(pushed)
        spec = registry.get("fx.echo")
        assert spec is not None and spec.definition_hash == registry.definition_hash("fx.echo")


async def test_the_time_server_is_listed_and_called_through_the_repo_manifest() -> None:
    before = _children()
    async with ToolRegistry.from_dir(REPO / "tools") as registry:
        specs = {s.name: s for s in await registry.list_tools() if s.source == "time"}
        assert set(specs) == {"time.get_current_time", "time.convert_time"}
        assert (
            specs["time.get_current_time"].idempotent
            and specs["time.get_current_time"].risk == "low"
        )
        assert "timezone" in specs["time.get_current_time"].input_schema["properties"]
        now = await registry.call("time.get_current_time", {"timezone": "UTC"}, CallContext())
        assert now.ok, now
        assert now.structured["timezone"] == "UTC" and now.structured["datetime"].endswith("+00:00")
        converted = await registry.call(
            "time.convert_time",
            {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        )
        assert converted.ok and converted.structured["time_difference"] == "+9.0h"
        bad = await registry.call("time.get_current_time", {"timezone": "Mars/Olympus_Mons"})
        assert bad.error_kind is ToolErrorKind.TOOL_ERROR and "Mars/Olympus_Mons" in (
            bad.error or ""
        )
        status = {s.name: s for s in registry.status()}["time"]
        assert status.up and status.transport == "mcp_stdio"
    assert _children() - before == set()


async def test_secret_values_never_reach_logs_events_results_or_status(
    http_server: HttpServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """${VAR} in an mcp_http url and headers: the SDK and httpx log the URL at debug/info
    level, a server may echo a value in an error; none of it shows the value."""
    secret = "pf-secret-5c1e7a"
    monkeypatch.setenv("PF_TEST_MCP_URL_SECRET", secret)
    caplog.set_level(logging.DEBUG)
    events: list[tuple[str, dict[str, Any]]] = []
    registry = ToolRegistry(on_event=lambda kind, payload: events.append((kind, dict(payload))))
    registry.add_manifest(
        SourceManifest(
            name="fx",
            transport="mcp_http",
            url=http_server.url + "?key=${PF_TEST_MCP_URL_SECRET}",
            headers={"Authorization": "Bearer ${PF_TEST_MCP_URL_SECRET}"},
            path="fx.yaml",
        )
    )
    ctx = CallContext(on_event=lambda kind, payload: events.append((kind, dict(payload))))
    with capture_logs() as logs:
        async with registry:
            results = [
                await registry.call("fx.echo", {"text": "hi"}, ctx),
                await registry.call("fx.slow", {"seconds": 0.02, "steps": 2}, ctx),
                await registry.call("fx.fail", {"message": f"bad key {secret}"}, ctx),
                await registry.call("fx.fail", {"message": secret, "protocol": True}, ctx),
            ]
            status = [s.to_dict() for s in registry.status()]
    assert [r.outcome for r in results] == ["ok", "ok", "tool_error", "tool_error"]
    assert "bad key ***" in (results[2].error or "")
    assert any("HTTP Request" in r.getMessage() for r in caplog.records), "httpx logged"
    assert [kind for kind, _ in events] == ["tool.progress", "tool.progress"]
    seen = repr(logs) + repr(events) + repr(status) + caplog.text
    seen += repr([r.to_dict() for r in results]) + repr([r.getMessage() for r in caplog.records])
    assert secret not in seen


async def test_an_exception_inside_the_registry_block_still_stops_the_server() -> None:
    before = _children()
    registry = _registry("stdio")
    with pytest.raises(RuntimeError, match="caller failed"):
        async with registry:
            pid = (await _stats(registry))["pid"]
            assert pid in _children() - before
            raise RuntimeError("caller failed")
    assert _children() - before == set()
