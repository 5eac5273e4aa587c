"""A @tool may take a CallContext: who calls (tenant, principal, roles), the run's id, trace id
and deadline, and the application's deps given as ReactPlanner(deps=...); never shown to the model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import CallContext, ToolRegistry, tool


@dataclass
class Inventory:
    """An application dependency (stands in for a database pool)."""

    stock: dict[str, int]


seen: list[CallContext] = []


@tool(idempotent=True)
async def stock_of(item: str, ctx: CallContext) -> dict[str, Any]:
    """How many of an item are in stock.

    Args:
        item: the item's name.
    """
    seen.append(ctx)
    inventory: Inventory = ctx.deps
    return {"item": item, "count": inventory.stock.get(item, 0), "asked_by": ctx.principal}


async def test_a_tool_gets_the_caller_the_run_and_the_application_deps() -> None:
    seen.clear()
    registry = ToolRegistry()
    registry.add_functions(stock_of, source="shop")
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "shop.stock_of", "arguments": {"item": "pens"}}]},
            {"content": "There are 12 pens."},
        ]
    )
    planner = ReactPlanner(llm=llm, registry=registry, deps=Inventory({"pens": 12}))
    who = Headers(tenant="acme", principal="alice", roles=["staff"])
    result = await planner.run("How many pens?", headers=who, trace_id="trace-1")
    assert result.status == "completed", result.error
    assert result.steps[0].result == {"item": "pens", "count": 12, "asked_by": "alice"}
    [ctx] = seen
    assert (ctx.tenant, ctx.principal, ctx.roles) == ("acme", "alice", ("staff",))
    assert ctx.run_id == result.run_id and ctx.trace_id == "trace-1"
    assert ctx.deadline is not None and ctx.deadline > time.monotonic() - 60
    # The model was offered `item` only: the context parameter is not in the schema.
    offered = llm.requests[0].tools[0].input_schema
    assert set(offered["properties"]) == {"item"} and "ctx" not in str(offered)


@tool
def whoami(ctx: CallContext) -> dict[str, Any]:
    """Who is calling."""
    return {"tenant": ctx.tenant, "principal": ctx.principal, "deps": ctx.deps}


async def test_called_outside_a_planner_a_tool_gets_the_callers_context_and_no_deps() -> None:
    registry = ToolRegistry()
    registry.add_functions(whoami, source="me")
    ctx = CallContext(headers=Headers(tenant="t", principal="p"))
    result = await registry.call("me.whoami", {}, ctx)
    assert result.ok, result.error
    assert result.output == {"tenant": "t", "principal": "p", "deps": None}
