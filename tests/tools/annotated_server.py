"""A stdio MCP server whose tools declare annotations (tests of risk/idempotent defaults).

``python tests/tools/annotated_server.py [--flip]``: ``--flip`` serves the same
tools with ``read_notes`` no longer read-only (a changed definition).
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations


def build(flip: bool = False) -> MCPServer:
    server = MCPServer("annotated", version="1.0", log_level="WARNING")

    @server.tool(annotations=ToolAnnotations(read_only_hint=not flip))
    async def read_notes() -> str:
        """Read the notes."""
        return "notes"

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
    async def delete_all() -> str:
        """Delete every note."""
        return "deleted"

    @server.tool(annotations=ToolAnnotations(destructive_hint=False))
    async def append_note(text: str) -> str:
        """Append a note."""
        return f"appended {text}"

    @server.tool()
    async def plain(text: str) -> str:
        """A tool without annotations."""
        return text

    return server


if __name__ == "__main__":
    build(flip="--flip" in sys.argv[1:]).run("stdio")
