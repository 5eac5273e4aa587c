"""An MCP server whose tools answer big: ``big(n)`` returns ``n`` bytes of text and
``big_json(n)`` a structured object about ``n`` bytes large (for the max_result_bytes tests);
``env_progress(name)`` echoes an environment variable in a progress message and its result.

stdio by default; ``--http [--json]`` serves streamable HTTP on a free port of 127.0.0.1 (SSE
answers, or JSON ones) and prints ``READY <url>`` when it listens."""

from __future__ import annotations

import os

import anyio
from mcp.server.mcpserver import Context, MCPServer
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


@server.tool(structured_output=False)
async def env_progress(name: str, ctx: Context) -> str:
    """Report the variable ``name`` in a progress message, then return it."""
    value = os.environ.get(name, "")
    await ctx.report_progress(1, 2, f"working with {value}")
    return f"done with {value}"


async def _main() -> None:
    low = server._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        await low.run(read_stream, write_stream, low.create_initialization_options())


async def _http(json_response: bool) -> None:
    import asyncio
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    app = server.streamable_http_app(host="127.0.0.1", json_response=json_response)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.01)
    print(f"READY http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    await serving


if __name__ == "__main__":
    import sys

    if "--http" in sys.argv:
        import asyncio

        asyncio.run(_http("--json" in sys.argv))
    else:
        anyio.run(_main)
