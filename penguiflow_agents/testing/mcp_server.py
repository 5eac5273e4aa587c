"""A fault-injecting MCP server for tests, built on the ``mcp`` SDK's server side.

Run it over stdio (what an ``mcp_stdio`` manifest starts)::

    python -m penguiflow_agents.testing.mcp_server --transport stdio

(``--linger-s S``: the server outlives the end of its input by ``S`` seconds,
like a server that is slow to exit, which only a signal stops sooner), or over
streamable HTTP on a free 127.0.0.1 port (``--port 0`` picks one); the first
line on stdout is ``READY <url>`` once the server accepts connections::

    python -m penguiflow_agents.testing.mcp_server --transport http --port 0

Tools (all state is per process, shared by every session of the process):

- ``echo(text)`` and ``add(a, b)`` (structured result): trivial calls;
- ``text_only(text)``: echoes the text as a text block only (no structured content);
- ``image(caption, count=1, pad_bytes=0, mime_type="image/png")``: the caption as text, then
  ``count`` image blocks (a 1x1 PNG, or that many bytes more of data with ``pad_bytes``);
- ``slow(seconds, steps=0)``: sleeps, reporting ``steps`` progress notifications;
- ``flaky(key, fail_times, hang_s=0)``: fails the first ``fail_times`` calls per
  key (a tool error, or a hang of ``hang_s`` for a caller's timeout to end);
- ``fail(message, protocol=False)``: a tool error, or a JSON-RPC error with ``protocol``;
- ``crash()``: the server process exits at once, mid-call (``os._exit``);
- ``getenv(name)``: a variable of the server's environment (or null);
- ``request_meta()``: the ``_meta`` the request carried (a traced caller's ``traceparent``);
- ``write_stderr(text)``: writes one line to the server's stderr;
- ``change_tools()``: changes ``echo``'s description, adds ``added_<n>``, and
  announces it with ``notifications/tools/list_changed``;
- ``stats()`` / ``reset_stats()``: calls per tool, calls in flight and the most
  ever seen in flight, flaky counters, and how many calls were cancelled.

``build_server()`` returns the ``MCPServer`` for in-process use;
``stdio_command()`` is the command line of a stdio server (for a manifest's
``command``), and ``running_http_server()`` starts an HTTP server process and
stops it on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types import ImageContent

__all__ = [
    "PIXEL_PNG",
    "SERVER_NAME",
    "HttpServerProcess",
    "ServerStats",
    "build_server",
    "main",
    "running_http_server",
    "stdio_command",
]

SERVER_NAME = "penguiflow-test"
# A 1x1 red PNG: what the ``image`` tool returns.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
# Exit status of the process when the ``crash`` tool runs.
CRASH_EXIT_CODE = 17
# JSON-RPC error code of ``fail(protocol=True)``: in the implementation-defined
# server range, clear of the codes the SDK itself uses (-32000, -32001, -32020, -32022).
PROTOCOL_ERROR_CODE = -32099
# Longest wait for an HTTP server process to print its READY line (its mcp SDK import alone
# has taken 40+ s on the shared, loaded 2-core test machine).
READY_TIMEOUT_S = 90.0
# How long the HTTP server lets open streams finish after SIGTERM before closing them.
GRACEFUL_SHUTDOWN_S = 1
# Longest wait for an HTTP server process to exit after SIGTERM (then SIGKILL).
STOP_TIMEOUT_S = 5.0


@dataclass(slots=True, kw_only=True)
class ServerStats:
    """What the server has seen, for tests to assert on."""

    calls: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0
    flaky: Counter[str] = field(default_factory=Counter)
    tools_version: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "executable": sys.executable,
            "calls": dict(self.calls),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "cancelled": self.cancelled,
            "flaky": dict(self.flaky),
            "tools_version": self.tools_version,
        }


def build_server(stats: ServerStats | None = None) -> MCPServer:
    """The test server, with its tools registered; ``stats`` records what it sees."""
    st = stats if stats is not None else ServerStats()
    server: MCPServer = MCPServer(SERVER_NAME, version="1.0", log_level="WARNING")

    @asynccontextmanager
    async def tracked(tool: str) -> AsyncIterator[None]:
        st.calls[tool] += 1
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            yield
        except anyio.get_cancelled_exc_class():
            st.cancelled += 1
            raise
        finally:
            st.in_flight -= 1

    def echo_tool(description: str) -> Callable[..., Any]:
        async def echo(text: str) -> str:
            async with tracked("echo"):
                return text

        echo.__doc__ = description
        return echo

    server.add_tool(echo_tool("Echo the text back."), name="echo")

    @server.tool(structured_output=False)
    async def text_only(text: str) -> str:
        """Echo the text back as a text block only, without structured content."""
        async with tracked("text_only"):
            return text

    @server.tool(structured_output=False)
    async def image(
        caption: str, count: int = 1, pad_bytes: int = 0, mime_type: str = "image/png"
    ) -> list[Any]:
        """Return the caption and `count` small images (image content blocks)."""
        async with tracked("image"):
            data = base64.b64encode(PIXEL_PNG + b"\0" * pad_bytes).decode()
            blocks: list[Any] = [caption]
            blocks += [ImageContent(type="image", data=data, mime_type=mime_type)] * count
            return blocks

    @server.tool()
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        async with tracked("add"):
            return a + b

    @server.tool()
    async def slow(seconds: float, ctx: Context, steps: int = 0) -> str:
        """Sleep for ``seconds``, reporting ``steps`` progress notifications on the way."""
        async with tracked("slow"):
            for i in range(steps):
                await anyio.sleep(seconds / steps)
                await ctx.report_progress(i + 1, steps, f"step {i + 1} of {steps}")
            if steps == 0:
                await anyio.sleep(seconds)
            return f"slept {seconds}s"

    @server.tool()
    async def flaky(key: str, fail_times: int, hang_s: float = 0) -> str:
        """Fail the first ``fail_times`` calls for ``key``, then succeed.

        A failing call returns a tool error, or with ``hang_s`` > 0 hangs that
        long first (so that the caller's timeout, a retryable failure, ends it).
        """
        async with tracked("flaky"):
            st.flaky[key] += 1
            n = st.flaky[key]
            if n <= fail_times:
                if hang_s > 0:
                    await anyio.sleep(hang_s)
                raise ToolError(f"flaky failure {n} of {fail_times} for key {key!r}")
            return f"ok after {n} calls"

    @server.tool()
    async def fail(message: str, protocol: bool = False) -> str:
        """Fail with a tool error, or with a JSON-RPC error when ``protocol`` is true."""
        async with tracked("fail"):
            if protocol:
                raise MCPError(code=PROTOCOL_ERROR_CODE, message=message)
            raise ToolError(message)

    @server.tool()
    async def crash() -> str:
        """Kill the server process mid-call."""
        st.calls["crash"] += 1
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)

    @server.tool()
    async def request_meta(ctx: Context) -> dict[str, Any]:
        """The ``_meta`` of this very request (e.g. the caller's W3C ``traceparent``)."""
        meta = ctx.request_context.meta
        return dict(meta) if meta else {}

    @server.tool()
    async def getenv(name: str) -> str | None:
        """Return the server process's environment variable ``name`` (null when unset)."""
        async with tracked("getenv"):
            return os.environ.get(name)

    @server.tool()
    async def write_stderr(text: str) -> str:
        """Write ``text`` as one line to the server's stderr."""
        async with tracked("write_stderr"):
            print(text, file=sys.stderr, flush=True)
            return "written"

    @server.tool()
    async def change_tools(ctx: Context) -> int:
        """Change echo's description and add a tool, then announce the new tool list."""
        async with tracked("change_tools"):
            st.tools_version += 1
            n = st.tools_version
            server.remove_tool("echo")
            server.add_tool(echo_tool(f"Echo the text back (version {n})."), name="echo")

            async def added(x: int) -> int:
                return x * n

            server.add_tool(added, name=f"added_{n}", description=f"Multiply x by {n}.")
            await _announce_tools_changed(ctx)
            return n

    async def stats_tool() -> dict[str, Any]:
        """What the server has seen: calls, in flight (now and max), cancellations."""
        return st.snapshot()

    server.add_tool(stats_tool, name="stats")

    @server.tool()
    async def reset_stats() -> str:
        """Forget calls, the in-flight maximum, cancellations and flaky counters."""
        st.calls.clear()
        st.flaky.clear()
        st.max_in_flight = st.in_flight
        st.cancelled = 0
        return "reset"

    return server


async def _announce_tools_changed(ctx: Context) -> None:
    """Tell clients of both protocol eras that the tool list changed."""
    # 2026-07-28 clients listen with subscriptions/listen (the server's bus).
    await ctx.notify_tools_changed()
    # Handshake-era clients get notifications/tools/list_changed on their session.
    session = ctx.request_context.session
    send = getattr(session, "send_tool_list_changed", None)
    if send is not None:
        try:
            await send()
        except (MCPError, RuntimeError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # a modern connection has no standing channel: the bus covers it


async def _run_stdio(server: MCPServer, linger_s: float = 0.0) -> None:
    low = server._lowlevel_server
    options = low.create_initialization_options(NotificationOptions(tools_changed=True))
    async with stdio_server() as (read_stream, write_stream):
        await low.run(read_stream, write_stream, options)
    if linger_s > 0:  # the client closed our stdin: a well-behaved server exits now
        print(f"input closed; lingering {linger_s:g}s", file=sys.stderr, flush=True)
        await anyio.sleep(linger_s)


async def _run_http(server: MCPServer, host: str, port: int, oauth: bool = False) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without, a response body waits ~40 ms
    # behind its headers (Nagle's algorithm meeting the client's delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    app = server.streamable_http_app(host=host)
    if oauth:
        from penguiflow_agents.testing.oauth_server import protect

        app = protect(app, f"http://{host}:{bound}")
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S
    )
    uv = uvicorn.Server(config)
    serving = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.01)
    print(f"READY http://{host}:{bound}/mcp", flush=True)
    await serving


def stdio_command(python: str | None = None) -> list[str]:
    """The command that runs this server over stdio (for an ``mcp_stdio`` manifest)."""
    return [
        python or sys.executable,
        "-m",
        "penguiflow_agents.testing.mcp_server",
        "--transport",
        "stdio",
    ]


@dataclass(slots=True, kw_only=True)
class HttpServerProcess:
    """A test server serving streamable HTTP in a child process."""

    process: subprocess.Popen[bytes]
    url: str
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """Kill the server at once (SIGKILL) and reap it."""
        self.process.kill()
        self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def running_http_server(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    ready_timeout_s: float = READY_TIMEOUT_S,
    oauth: bool = False,
    log_path: Path | None = None,
) -> Iterator[HttpServerProcess]:
    """Start the server over streamable HTTP (``port=0``: a free port); stop it on exit.

    ``oauth``: behind the test authorization server (``testing.oauth_server``).
    ``log_path``: the server's stderr (its warnings and tracebacks) goes to that file
    (by default nowhere).
    """
    cmd = [sys.executable, "-m", "penguiflow_agents.testing.mcp_server", "--transport", "http"]
    cmd += ["--host", host, "--port", str(port)] + (["--oauth"] if oauth else [])
    with contextlib.ExitStack() as files:
        err: Any = files.enter_context(log_path.open("ab")) if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
    server: HttpServerProcess | None = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + ready_timeout_s
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            readable, _, _ = select.select([proc.stdout], [], [], max(left, 0))
            if not readable:
                raise TimeoutError(
                    f"the MCP test server did not get ready within {ready_timeout_s}s ({cmd!r})"
                )
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError(
                    f"the MCP test server exited before it was ready (status {proc.wait()})"
                )
            line += chunk
        url = line.decode().split()[1]
        server = HttpServerProcess(
            process=proc, url=url, port=int(url.rsplit(":", 1)[1].split("/")[0])
        )
        yield server
    finally:
        if server is None:
            server = HttpServerProcess(process=proc, url="", port=port)
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m penguiflow_agents.testing.mcp_server",
        description="Fault-injecting MCP server for tests (slow, flaky, crashing tools).",
    )
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="HTTP port; 0 picks a free one")
    parser.add_argument(
        "--linger-s",
        type=float,
        default=0.0,
        metavar="S",
        help="stdio: keep running S seconds after stdin closed (a server slow to exit)",
    )
    parser.add_argument(
        "--oauth",
        action="store_true",
        help="http: require OAuth tokens from a test authorization server on the same origin",
    )
    args = parser.parse_args(argv)
    print(
        f"{SERVER_NAME} MCP server starting (pid {os.getpid()}, {args.transport})",
        file=sys.stderr,
        flush=True,
    )
    server = build_server()
    try:
        if args.transport == "stdio":
            anyio.run(_run_stdio, server, args.linger_s)
        else:
            asyncio.run(_run_http(server, args.host, args.port, args.oauth))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
