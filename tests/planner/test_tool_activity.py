"""A streamed run shows what a call in flight reports: MCP progress, retries."""

from __future__ import annotations

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner import ReactPlanner, ToolActivity, ToolCallFinished
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import SourceManifest, ToolRegistry

STDIO_COMMAND = ["python", "-m", "penguiflow_agents.testing.mcp_server"]


async def test_mcp_progress_notifications_reach_the_run_stream_before_the_call_ends(
    headers: Headers,
) -> None:
    """Each progress notification of the real MCP server becomes a ToolActivity event."""
    registry = ToolRegistry()
    registry.add_manifest(SourceManifest(name="fx", transport="mcp_stdio", command=STDIO_COMMAND))
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "fx.slow", "arguments": {"seconds": 0.3, "steps": 3}}]},
            {"content": "done"},
        ]
    )
    async with registry:
        planner = ReactPlanner(llm=llm, registry=registry)
        events = [event async for event in planner.stream("wait", headers=headers)]
    kinds = [type(event).__name__ for event in events]
    activity = [e for e in events if isinstance(e, ToolActivity)]
    assert [a.data["progress"] for a in activity] == [1, 2, 3], kinds
    assert {(a.tool, a.event) for a in activity} == {("fx.slow", "tool.progress")}
    finished = next(i for i, e in enumerate(events) if isinstance(e, ToolCallFinished))
    assert all(events.index(a) < finished for a in activity)
    assert activity[0].call_id == events[finished].record.call_id  # type: ignore[union-attr]
