"""@tool: schema from type hints, description from the docstring, sync code off the loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.tools import CallContext, ToolRegistry, tool, tool_definition


class Item(BaseModel):
    sku: str
    qty: int = 1


@tool(idempotent=True, risk="medium")
def place_order(items: list[Item], note: str = "", rush: bool = False) -> dict[str, Any]:
    """Place an order for some items.

    Args:
        items: what to order,
            one entry per product.
        note: free text for the warehouse.
    """
    return {"count": sum(i.qty for i in items), "types": [type(i).__name__ for i in items]}


def test_schema_comes_from_type_hints_and_pydantic_models() -> None:
    definition = tool_definition(place_order)
    assert definition is not None
    schema = definition.input_schema
    assert schema["type"] == "object"
    assert schema["required"] == ["items"]
    assert schema["properties"]["rush"]["type"] == "boolean"
    assert schema["properties"]["note"]["default"] == ""
    assert schema["additionalProperties"] is False
    item_schema = schema["$defs"]["Item"]
    assert item_schema["required"] == ["sku"]


def test_description_is_the_docstring_summary_and_args_describe_parameters() -> None:
    definition = tool_definition(place_order)
    assert definition is not None
    assert definition.description == "Place an order for some items."
    props = definition.input_schema["properties"]
    assert props["items"]["description"] == "what to order, one entry per product."
    assert props["note"]["description"] == "free text for the warehouse."
    assert (definition.risk, definition.idempotent) == ("medium", True)


def test_decorated_function_stays_directly_callable() -> None:
    assert place_order([Item(sku="a", qty=2)]) == {"count": 2, "types": ["Item"]}


async def test_arguments_arrive_as_pydantic_models() -> None:
    registry = ToolRegistry()
    registry.add_functions(place_order, source="shop")
    result = await registry.call(
        "shop.place_order", {"items": [{"sku": "a"}, {"sku": "b", "qty": 3}]}
    )
    assert result.ok, result.error
    assert result.output == {"count": 4, "types": ["Item", "Item"]}


async def test_sync_tool_runs_in_a_worker_thread_not_on_the_loop() -> None:
    @tool
    def where() -> int:
        """Report the thread."""
        return threading.get_ident()

    registry = ToolRegistry()
    registry.add_functions(where)
    result = await registry.call("local.where", {})
    assert result.ok
    assert result.output != threading.get_ident()


async def test_blocking_sync_tool_does_not_block_the_event_loop() -> None:
    release = threading.Event()

    @tool
    def blocker() -> str:
        """Block until released."""
        assert release.wait(10)
        return "released"

    registry = ToolRegistry()
    registry.add_functions(blocker)
    task = asyncio.create_task(registry.call("local.blocker", {}))
    await asyncio.sleep(0.05)  # the loop keeps running while the tool blocks its thread
    assert not task.done()
    release.set()
    assert (await task).output == "released"


async def test_call_context_parameter_is_injected_and_not_in_the_schema() -> None:
    @tool
    async def whoami(ctx: CallContext, greeting: str = "hi") -> str:
        """Greet the caller."""
        return f"{greeting} {ctx.run_id}"

    definition = tool_definition(whoami)
    assert definition is not None
    assert set(definition.input_schema["properties"]) == {"greeting"}
    registry = ToolRegistry()
    registry.add_functions(whoami)
    result = await registry.call("local.whoami", {}, CallContext(run_id="run-1"))
    assert result.output == "hi run-1"


async def test_field_constraints_become_schema_constraints() -> None:
    @tool(name="set-volume")
    def set_volume(level: Annotated[int, Field(ge=0, le=10)]) -> int:
        """Set the volume."""
        return level

    definition = tool_definition(set_volume)
    assert definition is not None
    assert definition.name == "set-volume"
    assert definition.input_schema["properties"]["level"]["maximum"] == 10


def test_parameter_shadowing_a_basemodel_attribute_keeps_its_name() -> None:
    @tool
    def describe(schema: str, json: int = 0) -> str:
        """Echo."""
        return f"{schema}{json}"

    definition = tool_definition(describe)
    assert definition is not None
    assert set(definition.input_schema["properties"]) == {"schema", "json"}


async def test_shadowing_parameter_values_reach_the_function() -> None:
    @tool
    def echo(schema: str) -> str:
        """Echo."""
        return schema

    registry = ToolRegistry()
    registry.add_functions(echo)
    assert (await registry.call("local.echo", {"schema": "x"})).output == "x"


def test_dotted_or_empty_names_and_var_args_are_refused() -> None:
    with pytest.raises(UserError, match="prefix"):
        tool(name="a.b")(lambda: None)
    with pytest.raises(UserError, match=r"\*args"):

        @tool
        def varargs(*args: int) -> None:
            """Nope."""


def test_plain_functions_have_no_tool_definition() -> None:
    def plain() -> None: ...

    assert tool_definition(plain) is None
    with pytest.raises(UserError, match="@tool"):
        ToolRegistry().add_functions(plain)
