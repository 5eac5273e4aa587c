"""The stdio transport of ``mcp_stdio`` sources: our own process launch.

The ``mcp`` SDK's ``stdio_client`` starts the server in a new session, but
kills the group only when the server itself outlives its closed input; a
server that exits at once and leaves a child behind (a forked helper, a shell
pipeline) leaks it, and its process handle is private, so nothing else can
reap the group. Here:

- the server is started in its own session (its own process group, whose id
  is its pid) and the group is registered while it lives;
- on close: the input is closed, the server gets a grace period to exit, then
  the *whole group* gets SIGTERM, then SIGKILL, whether or not the server
  itself exited (so children it left behind go too);
- groups still registered when the interpreter exits (a path that skipped the
  close) are killed by an ``atexit`` hook;
- a non-JSON line on the server's stdout is noise, not a traceback: the first
  few are logged (cut, redacted), then one summary per interval with a count;
- a line longer than ``max_line_bytes`` is discarded while it is read (a
  runaway server cannot grow our memory), and counted as noise; when it was
  the answer to one of our requests (its ``id`` is in its first or last
  bytes), that request gets a JSON-RPC error saying so at once, instead of
  waiting for its timeout.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TextIO

import anyio
import anyio.lowlevel
import mcp_types as types
import structlog
from anyio.abc import Process
from mcp.client._transport import TransportStreams
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage

__all__ = [
    "FORCE_KILL_TIMEOUT_S",
    "NOISE_LOGGED_LINES",
    "NOISE_SUMMARY_INTERVAL_S",
    "TERMINATION_GRACE_S",
    "TOO_LARGE_CODE",
    "NoiseCounter",
    "kill_live_groups",
    "live_groups",
    "stdio_transport",
]

log = structlog.get_logger("penguiflow_agents.tools.mcp")

# The server's grace period to exit on its own after its input closes.
TERMINATION_GRACE_S = 2.0
# After SIGTERM to the group, how long before SIGKILL.
FORCE_KILL_TIMEOUT_S = 2.0
# Non-JSON stdout lines logged one by one; after that, one summary per interval.
NOISE_LOGGED_LINES = 3
NOISE_SUMMARY_INTERVAL_S = 10.0
# Longest piece of a noise line put in the log.
NOISE_LINE_MAX = 200
# How often a closing transport looks whether the server (group) is gone.
_POLL_S = 0.02
# Bytes read from the server's stdout at once.
_CHUNK = 65536
# Bytes kept of each end of an overlong line, to find the id of the request it answers.
_ENDS_KEPT = 256
# The JSON-RPC id near the start ({"jsonrpc":"2.0","id":3,...) or the end (...,"id":3}).
_ID_AT_START = re.compile(
    rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+|"[^"\\]*")'
)
_ID_AT_END = re.compile(rb'"id"\s*:\s*(-?\d+|"[^"\\]*")\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?\}\s*$')
# The JSON-RPC error code of an answer dropped for its size (implementation-defined range).
TOO_LARGE_CODE = -32090

_live: set[int] = set()


def live_groups() -> frozenset[int]:
    """Process group ids of stdio servers started and not yet reaped (for tests)."""
    return frozenset(_live)


def kill_live_groups() -> None:
    """SIGKILL every registered server group (the interpreter is exiting)."""
    for pgid in list(_live):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _live.discard(pgid)


atexit.register(kill_live_groups)


class NoiseCounter:
    """Counts a server's non-JSON output; logs the first lines, then summaries."""

    def __init__(self, source: str, redact: Callable[[str], str]) -> None:
        self._source = source
        self._redact = redact
        self.count = 0
        self._unreported = 0
        self._next_summary = 0.0

    def line(self, text: str) -> None:
        self.count += 1
        if self.count <= NOISE_LOGGED_LINES:
            cut = text if len(text) <= NOISE_LINE_MAX else text[:NOISE_LINE_MAX] + " [cut]"
            log.warning("mcp_server_noise", source=self._source, line=self._redact(cut))
            self._next_summary = time.monotonic() + NOISE_SUMMARY_INTERVAL_S
            return
        self._unreported += 1
        if time.monotonic() >= self._next_summary:
            self.flush()

    def flush(self) -> None:
        if self._unreported:
            log.warning(
                "mcp_server_noise_summary",
                source=self._source,
                ignored_lines=self._unreported,
                total=self.count,
            )
            self._unreported = 0
        self._next_summary = time.monotonic() + NOISE_SUMMARY_INTERVAL_S


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _poll(done: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``done()`` became true within ``timeout_s`` (looked at every ``_POLL_S``)."""
    for _ in range(max(1, int(timeout_s / _POLL_S))):
        if done():
            return True
        await anyio.sleep(_POLL_S)
    return done()


async def _stop(process: Process) -> None:
    """Close the input, give the server its grace period, then end its whole group."""
    pgid = process.pid
    with contextlib.suppress(Exception):
        await process.stdin.aclose()  # type: ignore[union-attr]
    await _poll(lambda: process.returncode is not None, TERMINATION_GRACE_S)
    # Whatever is left of the group (the server, or what it left behind) is ended now.
    for sig, wait_s in (
        (signal.SIGTERM, FORCE_KILL_TIMEOUT_S),
        (signal.SIGKILL, FORCE_KILL_TIMEOUT_S),
    ):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        if await _poll(lambda: process.returncode is not None and not _group_alive(pgid), wait_s):
            break
    _live.discard(pgid)
    for stream in (process.stdout,):
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.aclose()
    transport = getattr(getattr(process, "_process", None), "_transport", None)
    close = getattr(transport, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


@asynccontextmanager
async def stdio_transport(
    exe: str,
    args: list[str],
    *,
    env: dict[str, str] | None,
    errlog: TextIO,
    source: str,
    redact: Callable[[str], str],
    max_line_bytes: int,
) -> AsyncIterator[TransportStreams]:
    """Start the server in its own process group; streams of its JSON-RPC messages."""
    process = await anyio.open_process(
        [exe, *args],
        env=get_default_environment() | (env or {}),
        stderr=errlog,
        start_new_session=True,
    )
    _live.add(process.pid)
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    noise = NoiseCounter(source, redact)

    async def deliver(line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            return
        try:
            message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
        except ValueError:
            noise.line(text)
            return
        await read_writer.send(SessionMessage(message))

    async def dropped(head: bytes, tail: bytes, size: int) -> None:
        """An overlong line was dropped: fail the request it answered, if we can tell which."""
        noise.line(f"[a line longer than {max_line_bytes} bytes, dropped]")
        found = _ID_AT_START.match(head) or _ID_AT_END.search(tail)
        if found is None:
            return
        raw = found.group(1)
        request_id: int | str = (
            int(raw) if raw[:1] != b'"' else raw[1:-1].decode("utf-8", "replace")
        )
        error = types.JSONRPCError(
            jsonrpc="2.0",
            id=request_id,
            error=types.ErrorData(
                code=TOO_LARGE_CODE,
                message=(
                    f"the server's answer was larger than {max_line_bytes} bytes ({size} bytes "
                    f"or more) and was dropped while it was read (source {source!r}, "
                    "max_result_bytes); ask for less, or raise max_result_bytes in the manifest."
                ),
            ),
        )
        await read_writer.send(SessionMessage(error))

    async def reader() -> None:
        assert process.stdout is not None
        buffer = b""
        overlong = False
        head, tail, size = b"", b"", 0
        try:
            async with read_writer:
                async for chunk in process.stdout:
                    buffer += chunk
                    while True:
                        end = buffer.find(b"\n")
                        if end < 0:
                            if overlong:
                                size += len(buffer)
                                tail, buffer = (tail + buffer)[-_ENDS_KEPT:], b""
                            elif len(buffer) > max_line_bytes:
                                overlong, head, size = True, buffer[:_ENDS_KEPT], len(buffer)
                                tail, buffer = buffer[-_ENDS_KEPT:], b""
                            break
                        line, buffer = buffer[: end + 1], buffer[end + 1 :]
                        if overlong:
                            overlong = False
                            size += len(line)
                            await dropped(head, (tail + line)[-_ENDS_KEPT:], size)
                            continue
                        await deliver(line)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
            pass
        finally:
            noise.flush()

    async def writer() -> None:
        assert process.stdin is not None
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.stdin.send((data + "\n").encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                with anyio.CancelScope(shield=True):
                    read_stream.close()
                    write_stream.close()
                    await _stop(process)
                    for stream in (read_stream, write_stream, read_writer, write_reader):
                        await stream.aclose()
                tg.cancel_scope.cancel()
    finally:
        if process.pid in _live:  # the task group failed before the shielded stop ran
            with anyio.CancelScope(shield=True):
                await _stop(process)
