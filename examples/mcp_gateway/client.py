"""An MCP client of ``penguiflow-agents serve``'s gateway at ``/mcp`` (the official ``mcp`` SDK).

    KEY=pfa_... python examples/mcp_gateway/client.py [URL] [TOOL ARGS_JSON]

Lists the tools the key's caller may use (its tenant's policy view), then, if a
tool is named, calls it with progress shown: a call that needs an approval
waits for the decision (``serve --mcp-approval-wait``, default 60 s) and runs
once approved; still undecided, the result names the approval, and the same
call made again after the decision runs it. URL defaults to
``http://127.0.0.1:8400/mcp``. Exit status: 0 done, 1 the call failed or is pending.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

DEFAULT_URL = "http://127.0.0.1:8400/mcp"
# Longest a call may take, its wait for an approval included.
READ_TIMEOUT_S = 600.0


async def main(url: str, tool: str | None, arguments: dict[str, object]) -> int:
    headers = {"Authorization": f"Bearer {os.environ['KEY']}"}
    async with (
        httpx2.AsyncClient(
            headers=headers, timeout=httpx2.Timeout(30, read=READ_TIMEOUT_S)
        ) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        tools = (await client.list_tools()).tools
        print(f"{len(tools)} tool(s): {', '.join(sorted(t.name for t in tools))}")
        if tool is None:
            return 0

        async def progress(done: float, total: float | None, message: str | None) -> None:
            print(f"  ... {message or done}", flush=True)

        result = await client.call_tool(tool, arguments, progress_callback=progress)
        text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
        approval = (result.meta or {}).get("penguiflow-agents/approval_id")
        print(("error: " if result.is_error else "") + text)
        if approval:
            print(f"approval: {approval}")
        return 1 if result.is_error else 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    url = argv.pop(0) if argv and argv[0].startswith("http") else DEFAULT_URL
    name = argv[0] if argv else None
    args = json.loads(argv[1]) if len(argv) > 1 else {}
    sys.exit(asyncio.run(main(url, name, args)))
