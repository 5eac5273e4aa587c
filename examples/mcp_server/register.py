"""Register an MCP server as a tool source and let a model use it.

    python examples/mcp_server/register.py

Two ways to declare the same kind of source, both used here:

1. a manifest file (``tools/<name>.yaml``), loaded with ``ToolRegistry.from_dir`` — here
   ``examples/mcp_server/tools/time.yaml``, the ``mcp-server-time`` server over stdio;
2. a ``SourceManifest`` built in code and added with ``registry.add_manifest`` — here the
   package's test server (``penguiflow_agents.testing.mcp_server``) over stdio.

The script lists the tools with each source's state, calls one tool directly (what
``penguiflow-agents tools call`` does), then lets the offline replay model call both servers
in one run. Servers start on first use and stop when the registry closes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from penguiflow_agents import Headers, ReactPlanner, ToolRegistry, configure_logging, open_llm
from penguiflow_agents.tools import CallContext, SourceManifest

HERE = Path(__file__).resolve().parent

# The same keys as a manifest file (see README, "Register an MCP server").
LAB = SourceManifest.model_validate(
    {
        "name": "lab",
        "transport": "mcp_stdio",
        "command": ["python", "-m", "penguiflow_agents.testing.mcp_server", "--transport", "stdio"],
        "include": ["echo", "add"],  # regexes on the server's tool names: only these two
        "timeout_s": 10,
        "tools": {"add": {"risk": "low", "idempotent": True}},
    }
)


async def main() -> None:
    configure_logging(structured=False, level="warning")
    registry = ToolRegistry.from_dir(HERE / "tools")  # 1. from manifest files
    registry.add_manifest(LAB)  # 2. from code
    async with registry:
        for spec in await registry.list_tools():
            print(
                f"tool {spec.name}: {spec.description.splitlines()[0] if spec.description else ''}"
            )
        for source in registry.status():
            print(f"source {source.name} ({source.transport}): {'up' if source.up else 'down'}")

        me = Headers(tenant="demo", principal="guest")
        direct = await registry.call("lab.add", {"a": 2, "b": 3}, CallContext(headers=me))
        print(f"lab.add(2, 3) -> {direct.output}")

        async with open_llm(f"replay:{HERE / 'script.yaml'}") as llm:
            planner = ReactPlanner(llm=llm, registry=registry)
            result = await planner.run("What time is it in Tokyo? And add 40 and 2.", headers=me)
        for step in result.steps:
            print(f"step {step.tool} {step.arguments} -> {step.outcome}")
        print(f"{result.status}: {result.answer}")


if __name__ == "__main__":
    asyncio.run(main())
