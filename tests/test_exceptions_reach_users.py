"""Every exported exception can reach a user (issue #12 §9): ``RunPaused`` never did and is gone
(a paused run is a ``RunResult`` with status ``paused``); ``ToolSourceUnavailableError`` is what a
source used directly raises when it cannot be reached."""

from __future__ import annotations

import sys

import pytest

import penguiflow_agents
from penguiflow_agents import ToolSourceUnavailableError
from penguiflow_agents.tools import MCPToolSource, SourceManifest


def test_run_paused_is_not_exported() -> None:
    assert "RunPaused" not in penguiflow_agents.__all__
    assert not hasattr(penguiflow_agents.exceptions, "RunPaused")


async def test_an_mcp_server_that_does_not_start_raises_it() -> None:
    manifest = SourceManifest(
        name="gone",
        transport="mcp_stdio",
        command=[sys.executable, "-c", "import sys; sys.exit(3)"],
        path="gone.yaml",
    )
    source = MCPToolSource(manifest)
    try:
        with pytest.raises(ToolSourceUnavailableError):
            await source.list_tools()
    finally:
        await source.aclose()
