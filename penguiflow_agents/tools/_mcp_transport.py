"""Transports for MCP sources: the stdio subprocess and streamable HTTP.

What the ``mcp`` SDK's transports need from a manifest, and three things the
SDK does not do for us:

- a stdio server's stderr goes to the log (structlog), line by line, instead
  of the terminal (``stdio_client(errlog=...)`` needs a real file: a pipe);
- the end of the server's output stream (the process died, the transport
  closed) is reported at once, so the source can mark the session broken;
- ``${VAR}`` values resolved at connect time are redacted from any text that
  could reach a log or an error message (see ``_redact``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import IO, Any, TextIO, cast

import httpx2
from mcp.client._transport import ReadStream, TransportStreams, WriteStream
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from penguiflow_agents._log import get_logger
from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._mcp_stdio import stdio_transport
from penguiflow_agents.tools._redact import Redactor, redact_library_logs, secret_values

__all__ = [
    "HTTP_CONNECT_TIMEOUT_S",
    "HTTP_READ_TIMEOUT_S",
    "STDERR_DRAIN_TIMEOUT_S",
    "StderrPump",
    "open_transport",
    "resolve_command",
    "stdout_line_limit",
]

log = get_logger("penguiflow_agents.tools.mcp")

# Connect/write/pool timeout of the HTTP client; a call's own limit is the registry's timeout_s.
HTTP_CONNECT_TIMEOUT_S = 30.0
# Read timeout of the HTTP client: a server may hold a response stream open this long between events.
HTTP_READ_TIMEOUT_S = 300.0
# Longest wait, after the server process ended, for its last stderr lines.
STDERR_DRAIN_TIMEOUT_S = 0.5
# Longest stderr line logged as is; longer lines are cut (a runaway server cannot flood the log).
STDERR_LINE_MAX = 4000
# Bytes of stderr buffered before a line is forced out.
STDERR_READ_LIMIT = 64 * 1024
# Last stderr lines kept to explain a server that failed or died (``StderrPump.tail``).
STDERR_TAIL_LINES = 5
# Longest stderr line kept in that tail.
STDERR_TAIL_LINE_MAX = 300
# A server's stderr lines logged per interval; the rest are counted, and summarised once the
# interval is over (and at close): a server printing 100,000 lines floods nobody's log.
STDERR_LOGGED_PER_INTERVAL = 50
STDERR_INTERVAL_S = 10.0

# Command names replaced by the running interpreter, so that ``python`` in a
# manifest is the interpreter (and virtualenv) penguiflow-agents runs in.
_PYTHON_NAMES = frozenset({"python", "python3"})


def resolve_command(command: list[str]) -> tuple[str, list[str]]:
    """Executable and arguments of an ``mcp_stdio`` command.

    A leading ``python`` or ``python3`` is replaced by ``sys.executable``, the
    interpreter penguiflow-agents runs in, so that a server installed in the
    same virtualenv is found without activating it.
    """
    exe, *args = command
    if exe in _PYTHON_NAMES and sys.executable:
        exe = sys.executable
    return exe, args


class StderrPump:
    """A pipe for a server's stderr whose lines go to the log.

    ``errlog`` is the write end, handed to the process at spawn; call
    ``spawned()`` after the spawn so that the pipe ends when the server does.
    """

    def __init__(self, source: str, redact: Redactor, tail: deque[str] | None = None) -> None:
        read_fd, write_fd = os.pipe()
        # The last lines (redacted, cut), to say why a server failed to start or died.
        self.tail: deque[str] = tail if tail is not None else deque(maxlen=STDERR_TAIL_LINES)
        self._source = source
        self._redact = redact
        self._reader_file: IO[bytes] = os.fdopen(read_fd, "rb", buffering=0)
        self.errlog: TextIO = cast(TextIO, os.fdopen(write_fd, "w", encoding="utf-8"))
        self._task: asyncio.Task[None] | None = None
        self._interval_ends = 0.0
        self._logged = 0  # lines logged in this interval
        self._unlogged = 0  # lines counted, not logged, since the last summary

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._pump(), name=f"mcp-stderr-{self._source}"
        )

    def spawned(self) -> None:
        """Drop our copy of the write end; the server holds its own."""
        self.errlog.close()

    async def aclose(self) -> None:
        """Wait briefly for the last lines, then stop reading."""
        self.errlog.close()
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), STDERR_DRAIN_TIMEOUT_S)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reader_file.close()
        self._summarise()

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STDERR_READ_LIMIT)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), self._reader_file
        )
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    raw = exc.partial
                    if raw:
                        self._emit(raw)
                    return
                except asyncio.LimitOverrunError as exc:
                    raw = await reader.readexactly(exc.consumed)
                self._emit(raw)
        finally:
            transport.close()

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line:
            return
        if len(line) > STDERR_LINE_MAX:
            line = line[:STDERR_LINE_MAX] + " [cut]"
        line = self._redact(line)
        self._log(line)
        shown = line.strip()
        if len(shown) > STDERR_TAIL_LINE_MAX:
            shown = shown[: STDERR_TAIL_LINE_MAX - 1] + "…"
        self.tail.append(shown)

    def _log(self, line: str) -> None:
        now = time.monotonic()
        if now >= self._interval_ends:
            self._summarise()
            self._interval_ends = now + STDERR_INTERVAL_S
            self._logged = 0
        if self._logged < STDERR_LOGGED_PER_INTERVAL:
            self._logged += 1
            log.info("mcp_server_stderr", source=self._source, line=line)
        else:
            self._unlogged += 1

    def _summarise(self) -> None:
        if self._unlogged:
            log.info(
                "mcp_server_stderr_summary",
                source=self._source,
                unlogged_lines=self._unlogged,
                per_interval=STDERR_LOGGED_PER_INTERVAL,
                interval_s=STDERR_INTERVAL_S,
            )
            self._unlogged = 0


class _WatchedReadStream:
    """A transport's read stream that reports its end (EOF) once."""

    __slots__ = ("_inner", "_on_eof")

    def __init__(
        self, inner: ReadStream[SessionMessage | Exception], on_eof: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._on_eof: Callable[[], None] | None = on_eof

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    def _ended(self) -> None:
        on_eof, self._on_eof = self._on_eof, None
        if on_eof is not None:
            on_eof()

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._ended()
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self._inner.__anext__()
        except StopAsyncIteration:
            self._ended()
            raise
        except Exception:
            self._ended()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        return await self._inner.__aexit__(exc_type, exc_val, exc_tb)


@asynccontextmanager
async def _watched(
    inner: AbstractAsyncContextManager[TransportStreams], on_eof: Callable[[], None]
) -> AsyncIterator[tuple[_WatchedReadStream, WriteStream[SessionMessage]]]:
    async with inner as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, on_eof), write_stream


async def open_transport(
    manifest: SourceManifest,
    stack: AsyncExitStack,
    *,
    redact: Redactor,
    on_eof: Callable[[], None],
    auth: httpx2.Auth | None = None,
    stderr_tail: deque[str] | None = None,
) -> tuple[AbstractAsyncContextManager[Any], Callable[[], None]]:
    """The transport for ``manifest`` (not yet entered) and a hook to run once it is.

    ``${VAR}`` in env/headers/url is resolved here (raises MissingEnvVarError);
    helpers that must outlive the session (the stderr pump, the HTTP client)
    are registered on ``stack``. The resolved values are kept out of the
    SDK's and HTTP clients' log records from here on. ``auth`` (an
    ``mcp_http`` source's credentials, see ``penguiflow_agents.auth``) signs
    every HTTP request of the session.
    A stdio server's last
    stderr lines are kept in ``stderr_tail`` (redacted) as they arrive.
    """
    redact_library_logs(secret_values(manifest))
    if manifest.transport == "mcp_stdio":
        assert manifest.command is not None  # the manifest model requires it
        env = manifest.resolved_env()
        exe, args = resolve_command(manifest.command)
        pump = StderrPump(manifest.name, redact, stderr_tail)
        stack.push_async_callback(pump.aclose)
        pump.start()
        transport = stdio_transport(
            exe,
            args,
            env=env or None,
            errlog=pump.errlog,
            source=manifest.name,
            redact=redact,
            max_line_bytes=stdout_line_limit(manifest.max_result_bytes),
        )
        return _watched(transport, on_eof), pump.spawned
    url = manifest.resolved_url()
    assert url is not None  # the manifest model requires it
    headers = manifest.resolved_headers()
    limit = stdout_line_limit(manifest.max_result_bytes)
    http_client = httpx2.AsyncClient(
        headers=headers or None,
        auth=auth,
        timeout=httpx2.Timeout(HTTP_CONNECT_TIMEOUT_S, read=HTTP_READ_TIMEOUT_S),
        transport=BoundedTransport(limit, source=manifest.name),
    )
    await stack.enter_async_context(http_client)
    # A JSON answer is cut off by the transport while read; an SSE event by the SDK.
    streams = streamable_http_client(url, http_client=http_client, max_sse_event_size=limit)
    return _watched(streams, on_eof), _nothing


class _BoundedBody(httpx2.AsyncByteStream):
    """A response body that stops being read past ``limit`` bytes (``httpx2.StreamError``)."""

    def __init__(self, inner: Any, limit: int, source: str) -> None:
        self._inner = inner
        self._limit = limit
        self._source = source

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise httpx2.StreamError(
                    f"the server's answer is larger than {self._limit} bytes; reading stopped "
                    f"there (max_result_bytes of source {self._source!r})"
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedTransport(httpx2.AsyncBaseTransport):
    """The HTTP transport of an ``mcp_http`` source: a body that is not an event stream is read
    up to ``limit`` bytes (the same line limit as a stdio server's), then refused; the SDK
    answers the request with a parse error instead of holding a 50 MB answer in memory."""

    def __init__(self, limit: int, *, source: str) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._limit = limit
        self._source = source

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if "text/event-stream" in response.headers.get("content-type", ""):
            return response  # bounded per event by the SDK (max_sse_event_size)
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_BoundedBody(response.stream, self._limit, self._source),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def stdout_line_limit(max_result_bytes: int) -> int:
    """Longest JSON-RPC line read from a stdio server: the result limit plus the envelope's room
    (a result is JSON-escaped, and may be carried twice: as text and as structured content)."""
    return 4 * max_result_bytes + 65536


def _nothing() -> None:
    return None
