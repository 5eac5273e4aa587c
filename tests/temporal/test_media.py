"""MCP images on Temporal runs: the ``tool_call`` activity hands a result's images to the
workflow (they reach the model there as in process), and keeps them out of the calls table.

Runs the activity in temporalio's ``ActivityEnvironment`` over a real ToolRegistry with our
MCP test server (stdio); no dev server is needed for this seam.
"""

from __future__ import annotations

import base64
from typing import Any

from temporalio.testing import ActivityEnvironment

from penguiflow_agents.store import MemoryStore
from penguiflow_agents.temporal._activities import RunActivities
from penguiflow_agents.temporal._adapters import tool_result_of
from penguiflow_agents.testing.mcp_server import PIXEL_PNG
from penguiflow_agents.tools import ToolRegistry
from penguiflow_agents.tools._manifest import SourceManifest

PIXEL_B64 = base64.b64encode(PIXEL_PNG).decode()


def _call(idempotent: bool) -> dict[str, Any]:
    return {
        "name": "fx.image",
        "arguments": {"caption": "red"},
        "idempotent": idempotent,
        "tenant": "acme",
        "principal": "alice",
        "roles": [],
        "run_id": "run-1",
        "call_id": "c1",
        "trace_id": None,
        "key": f"temporal:c1:{int(idempotent)}",
        "trace": {},
    }


async def test_the_tool_call_activity_carries_images_to_the_workflow_not_to_the_store() -> None:
    registry = ToolRegistry()
    registry.add_manifest(
        SourceManifest(
            name="fx",
            transport="mcp_stdio",
            command=["python", "-m", "penguiflow_agents.testing.mcp_server"],
            path="fx.yaml",
        )
    )
    store = MemoryStore()

    def no_model(model: str) -> Any:
        raise AssertionError("no model call here")

    acts = RunActivities(store=store, registry=registry, open_model=no_model)
    env = ActivityEnvironment()
    try:
        out = await env.run(acts.tool_call, _call(idempotent=False))
    finally:
        await registry.aclose()
    assert out["ok"] and out["media"] == [{"mime_type": "image/png", "data": PIXEL_B64}]
    result = tool_result_of(out)
    assert [m.data for m in result.media] == [PIXEL_B64]
    assert "[image 1: image/png" in result.output
    # The once-only record of the call has its text, not its image bytes.
    stored = await store.get_call("acme", "run-1", "temporal:c1:0")
    assert stored is not None and stored.result is not None
    assert "media" not in stored.result and PIXEL_B64 not in str(stored.result)
