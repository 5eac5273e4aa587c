"""ToolRegistry: discovery, filters and overrides, validation, hashes, status, lifecycle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.exceptions import ManifestError, UserError
from penguiflow_agents.tools import (
    CallContext,
    SourceManifest,
    ToolCatalog,
    ToolErrorKind,
    ToolRegistry,
    ToolResult,
    ToolSpec,
    tool,
)


class FakeSource:
    """A hand-written ToolSource whose tool list and behaviour tests change."""

    def __init__(self, name: str, *, description: str = "v1", fail_list: bool = False) -> None:
        self.name = name
        self.description = description
        self.fail_list = fail_list
        self.raise_on_call = False
        self.closed = False
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def list_tools(self) -> list[ToolSpec]:
        if self.fail_list:
            raise ConnectionRefusedError("connection refused by 127.0.0.1:9")
        specs = [
            ToolSpec(
                name=f"{self.name}.{bare}",
                source=self.name,
                description=self.description,
                input_schema={
                    "type": "object",
                    "properties": {"n": {"type": "integer", "minimum": 0}},
                    "required": ["n"],
                },
            ).with_hash()
            for bare in ("get_one", "get_two", "delete_all")
        ]
        return specs

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        if self.raise_on_call:
            raise RuntimeError("adapter bug")
        self.calls.append((tool, dict(arguments)))
        return ToolResult.success(f"{self.name}.{tool}", {"tool": tool, "n": arguments["n"]})

    async def aclose(self) -> None:
        self.closed = True


@tool
def echo(text: str) -> str:
    """Echo the text."""
    return text


def test_registry_satisfies_the_tool_catalog_protocol() -> None:
    assert isinstance(ToolRegistry(), ToolCatalog)


async def test_tools_are_namespaced_and_carry_a_definition_hash() -> None:
    registry = ToolRegistry()
    registry.add_source(FakeSource("fake"))
    specs = await registry.list_tools()
    assert [s.name for s in specs] == ["fake.get_one", "fake.get_two", "fake.delete_all"]
    assert all(s.source == "fake" and len(s.definition_hash) == 64 for s in specs)
    assert registry.definition_hash("fake.get_one") == specs[0].definition_hash


async def test_include_and_exclude_filter_at_discovery_and_at_call() -> None:
    registry = ToolRegistry()
    source = FakeSource("fake")
    registry.add_source(source, include=["get_.*"], exclude=["get_two"])
    assert [s.name for s in await registry.list_tools()] == ["fake.get_one"]
    result = await registry.call("fake.delete_all", {"n": 1})
    assert result.error_kind is ToolErrorKind.NOT_FOUND
    assert source.calls == []


async def test_manifest_overrides_set_risk_idempotent_and_timeout() -> None:
    registry = ToolRegistry()
    registry.add_source(
        FakeSource("fake"),
        tools={"delete_all": {"risk": "high", "timeout_s": 2}, "get_one": {"idempotent": True}},
    )
    specs = {s.name: s for s in await registry.list_tools()}
    assert (specs["fake.delete_all"].risk, specs["fake.delete_all"].timeout_s) == ("high", 2)
    assert specs["fake.get_one"].idempotent is True
    assert specs["fake.get_two"].idempotent is False


async def test_unknown_names_are_not_found_results() -> None:
    registry = ToolRegistry()
    registry.add_source(FakeSource("fake"))
    for name in ("nope.get_one", "fake.nope", "fake", ""):
        result = await registry.call(name, {})
        assert result.error_kind is ToolErrorKind.NOT_FOUND, name
        assert result.tool == name


async def test_invalid_arguments_list_each_failing_path_and_constraint() -> None:
    registry = ToolRegistry()
    source = FakeSource("fake")
    registry.add_source(source)
    result = await registry.call("fake.get_one", {"n": -1})
    assert result.error_kind is ToolErrorKind.INVALID_ARGUMENTS
    assert "$.n" in (result.error or "") and "minimum" in (result.error or "")
    result = await registry.call("fake.get_one", {})
    assert "$.n: is required (required)" in (result.error or "")
    assert source.calls == [], "nothing reached the source"


async def test_invalid_arguments_name_every_nested_failure() -> None:
    @tool
    def ship(address: dict[str, str], parcels: list[int]) -> str:
        """Ship parcels."""
        return "ok"

    registry = ToolRegistry()
    registry.add_functions(ship)
    result = await registry.call(
        "local.ship", {"address": {"city": 3}, "parcels": [1, "two", 3.5], "extra": True}
    )
    assert result.error_kind is ToolErrorKind.INVALID_ARGUMENTS
    errors = result.structured["errors"]
    joined = "\n".join(errors)
    for fragment in (
        "$.address.city:",
        "$.parcels[1]:",
        "$.parcels[2]:",
        "(type)",
        "(additionalProperties)",
        "$.extra: is not allowed here; allowed: address, parcels",
    ):
        assert fragment in joined, fragment
    assert result.attempts == 0


async def test_arguments_that_are_not_an_object_are_invalid() -> None:
    registry = ToolRegistry()
    registry.add_functions(echo)
    result = await registry.call("local.echo", ["hi"])  # type: ignore[arg-type]
    assert result.error_kind is ToolErrorKind.INVALID_ARGUMENTS
    assert "JSON object" in (result.error or "")


async def test_call_before_any_listing_discovers_the_source_lazily() -> None:
    registry = ToolRegistry()
    registry.add_source(FakeSource("fake"))
    assert registry.status()[0].up is None, "not contacted before first use"
    result = await registry.call("fake.get_two", {"n": 2})
    assert result.ok and result.output == {"tool": "get_two", "n": 2}
    assert result.attempts == 1 and result.latency_s > 0
    assert registry.status()[0].up is True


async def test_a_source_that_fails_to_connect_is_down_and_others_still_list() -> None:
    registry = ToolRegistry()
    registry.add_source(FakeSource("broken", fail_list=True))
    registry.add_functions(echo)
    names = [s.name for s in await registry.list_tools()]
    assert names == ["local.echo"]
    status = {s.name: s for s in registry.status()}
    assert status["broken"].up is False
    assert "connection refused" in (status["broken"].reason or "")
    assert status["local"].up is True and status["local"].tools == 1
    result = await registry.call("broken.get_one", {"n": 1})
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert "down" in (result.error or "")


async def test_a_source_recovers_on_the_next_listing() -> None:
    registry = ToolRegistry()
    source = FakeSource("flappy", fail_list=True)
    registry.add_source(source)
    assert await registry.list_tools() == []
    source.fail_list = False
    assert len(await registry.list_tools()) == 3
    assert registry.status()[0].up is True


async def test_definition_change_is_an_event_and_changes_the_hash() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    registry = ToolRegistry(on_event=lambda name, payload: events.append((name, dict(payload))))
    source = FakeSource("fake", description="v1")
    registry.add_source(source)
    first = {s.name: s.definition_hash for s in await registry.list_tools()}
    await registry.list_tools()
    assert events == [], "an unchanged definition is not an event"
    source.description = "v2: now does something else"
    second = {s.name: s.definition_hash for s in await registry.list_tools()}
    assert second["fake.get_one"] != first["fake.get_one"]
    assert registry.definition_hash("fake.get_one") == second["fake.get_one"]
    changed = [p for name, p in events if name == "tool.definition_changed"]
    assert {p["tool"] for p in changed} == {"fake.get_one", "fake.get_two", "fake.delete_all"}
    one = next(p for p in changed if p["tool"] == "fake.get_one")
    assert one["previous_hash"] == first["fake.get_one"]
    assert one["definition_hash"] == second["fake.get_one"]


async def test_async_event_callbacks_are_awaited() -> None:
    seen: list[str] = []

    async def on_event(name: str, payload: Mapping[str, Any]) -> None:
        seen.append(str(payload["tool"]))

    registry = ToolRegistry(on_event=on_event)
    source = FakeSource("fake")
    registry.add_source(source)
    await registry.list_tools()
    source.description = "changed"
    await registry.list_tools()
    assert len(seen) == 3


async def test_a_source_that_raises_on_call_yields_a_result_not_an_exception() -> None:
    registry = ToolRegistry()
    source = FakeSource("fake")
    source.raise_on_call = True
    registry.add_source(source)
    result = await registry.call("fake.get_one", {"n": 1})
    assert not result.ok
    assert result.error_kind is ToolErrorKind.UNAVAILABLE
    assert "RuntimeError" in (result.error or "")


async def test_aclose_closes_every_source_and_context_manager_does_too() -> None:
    one, two = FakeSource("one"), FakeSource("two")
    async with ToolRegistry() as registry:
        registry.add_source(one)
        registry.add_source(two)
        await registry.list_tools()
    assert one.closed and two.closed


def test_two_sources_with_one_name_are_refused() -> None:
    registry = ToolRegistry()
    registry.add_source(FakeSource("dup"))
    with pytest.raises(ManifestError, match="already registered"):
        registry.add_source(FakeSource("dup"))


def test_bad_protection_settings_are_a_user_error() -> None:
    with pytest.raises(UserError, match="max_concurrency"):
        ToolRegistry().add_source(FakeSource("x"), max_concurrency=0)
    with pytest.raises(UserError, match="either"):
        ToolRegistry().add_source(
            FakeSource("x"),
            manifest=SourceManifest(name="x", transport="python", module="m"),
            timeout_s=1,
        )


async def test_python_manifest_lists_the_modules_tools(tmp_path: Path) -> None:
    (tmp_path / "clock.yaml").write_text(
        "name: clock\ntransport: python\nmodule: penguiflow_agents.demo_tools\n"
        "include: [add_minutes]\ntools: {add_minutes: {risk: medium}}\n"
    )
    async with ToolRegistry.from_dir(tmp_path) as registry:
        specs = await registry.list_tools()
        assert [(s.name, s.risk, s.idempotent) for s in specs] == [
            ("clock.add_minutes", "medium", True)
        ]
        result = await registry.call("clock.add_minutes", {"time": "23:30", "minutes": 45})
        assert result.output == {"time": "00:15", "day_offset": 1}


async def test_python_manifest_with_an_unimportable_module_is_down(tmp_path: Path) -> None:
    (tmp_path / "ghost.yaml").write_text(
        "name: ghost\ntransport: python\nmodule: penguiflow_agents_no_such_module\n"
    )
    async with ToolRegistry.from_dir(tmp_path) as registry:
        assert await registry.list_tools() == []
        reason = registry.status()[0].reason or ""
        assert "penguiflow_agents_no_such_module" in reason and "module" in reason


async def test_mcp_manifests_map_to_a_source_that_is_built_lazily(tmp_path: Path) -> None:
    (tmp_path / "remote.yaml").write_text(
        "name: remote\ntransport: mcp_http\nurl: http://127.0.0.1:${PF_TEST_UNSET_PORT}/mcp\n"
    )
    registry = ToolRegistry.from_dir(tmp_path)
    assert registry.load_errors == []
    assert registry.status()[0].transport == "mcp_http"
    assert registry.status()[0].up is None
    await registry.aclose()


async def test_check_gives_the_refusal_call_would_give_without_calling_anything() -> None:
    registry = ToolRegistry()
    source = FakeSource("fake")
    registry.add_source(source)
    registry.add_source(FakeSource("broken", fail_list=True))
    assert await registry.check("fake.get_one", {"n": 1}) is None
    invalid = await registry.check("fake.get_one", {"n": -1, "m": 2})
    assert invalid is not None and invalid.error_kind is ToolErrorKind.INVALID_ARGUMENTS
    assert invalid.error == (await registry.call("fake.get_one", {"n": -1, "m": 2})).error
    missing = await registry.check("fake.nope", {})
    assert missing is not None and missing.error_kind is ToolErrorKind.NOT_FOUND
    down = await registry.check("broken.get_one", {"n": 1})
    assert down is not None and down.error_kind is ToolErrorKind.UNAVAILABLE
    assert source.calls == []
