"""A stdio MCP server whose tools answer big: ``big(n)`` returns ``n`` bytes of text and
``big_json(n)`` a structured object about ``n`` bytes large (for the max_result_bytes tests)."""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

server = MCPServer("big")


@server.tool(structured_output=False)
async def big(n: int) -> str:
    """n bytes of text."""
    return ("BIGTEXT-" + "x" * 92 + "\n") * (n // 101) + "END"


@server.tool()
async def big_json(n: int) -> dict[str, list[str]]:
    """An object with a list of n / 100 strings."""
    return {"rows": [f"row-{i:06d}-" + "y" * 88 for i in range(n // 100)]}


async def _main() -> None:
    low = server._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        await low.run(read_stream, write_stream, low.create_initialization_options())


if __name__ == "__main__":
    anyio.run(_main)
