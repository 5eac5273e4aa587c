"""Arguments the caller already prepared are not validated twice, and only then (issue #14).

The planner checks every call (``prepare_arguments``) before it runs it and says so
with ``CallContext.extra[PREPARED_FOR_KEY]`` (the spec it checked against); the
registry trusts that only for the tool's current spec object, and the key never
reaches the source. Also: a source of ``@tool`` functions is listed once.
"""

from __future__ import annotations

import dataclasses

from penguiflow_agents.tools import CallContext, ToolRegistry, tool
from penguiflow_agents.tools._types import PREPARED_FOR_KEY, ToolErrorKind

seen: list[dict[str, object]] = []


@tool
async def echo(text: str, ctx: CallContext) -> str:
    """Say it back."""
    seen.append(dict(ctx.extra))
    return text


async def test_the_current_spec_skips_the_second_check_and_the_key_never_reaches_the_tool() -> None:
    registry = ToolRegistry()
    registry.add_functions(echo, source="t")
    (spec,) = await registry.list_tools()
    seen.clear()

    async def not_again(name: str, arguments: object) -> object:
        raise AssertionError("checked a second time")

    registry._prepare = not_again  # type: ignore[method-assign,assignment]
    ctx = CallContext(extra={PREPARED_FOR_KEY: spec})
    result = await registry.call("t.echo", {"text": "hi"}, ctx)
    assert result.ok and result.output == "hi"
    assert seen == [{}]


async def test_any_other_spec_is_checked_again() -> None:
    registry = ToolRegistry()
    registry.add_functions(echo, source="t")
    (spec,) = await registry.list_tools()
    stale = dataclasses.replace(spec)  # equal, but not the registry's current object
    result = await registry.call(
        "t.echo", {"text": 5, "extra": 1}, CallContext(extra={PREPARED_FOR_KEY: stale})
    )
    assert not result.ok and result.error_kind == ToolErrorKind.INVALID_ARGUMENTS
    result = await registry.call("t.echo", {"text": 5}, CallContext())
    assert not result.ok and result.error_kind == ToolErrorKind.INVALID_ARGUMENTS


async def test_a_source_of_tool_functions_is_listed_once() -> None:
    registry = ToolRegistry()
    registry.add_functions(echo, source="t")
    first = await registry.list_tools()
    entry = registry._entries["t"]
    listed = entry.source.list_tools

    async def counting() -> object:
        raise AssertionError("listed again")

    entry.source.list_tools = counting  # type: ignore[method-assign]
    try:
        again = await registry.list_tools()
    finally:
        entry.source.list_tools = listed  # type: ignore[method-assign]
    assert [s.name for s in again] == [s.name for s in first] == ["t.echo"]
    assert again[0] is first[0]
