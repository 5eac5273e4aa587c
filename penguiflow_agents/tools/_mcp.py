"""MCP tool sources (``mcp_stdio`` and ``mcp_http``) on the official ``mcp`` 2.x SDK.

One long-lived session per source, shared by every run in the process. The
session lives in a background task that owns the SDK client (the SDK is built
on anyio task groups: its contexts must be entered and left by one task);
calls from any task go through it. Callers never see an exception from
``call``: every failure is a ``ToolResult``.

- The tool list is fetched at connect, cached, and refreshed when the server
  sends ``notifications/tools/list_changed`` (or, on a 2026-07-28 connection,
  a ``subscriptions/listen`` event). A tool whose definition changes after it
  was first seen gets a new definition hash and a ``tool_definition_changed``
  log event; ``on_tools_changed`` hears about every change of the list.
- When the server process dies or the connection breaks, the calls in flight
  end at once as ``unavailable``; the next call reconnects (at once after a
  session that worked; with exponential backoff after failed attempts).
- Cancelling a call (the registry's timeout) cancels the MCP request: the SDK
  sends ``notifications/cancelled`` (or closes the request's HTTP stream).
- ``${VAR}`` in env/headers/url is resolved at connect; values never appear
  in logs or errors. A stdio server's stderr goes to the log.
- ``aclose()`` ends the session; a stdio server is stopped (stdin closed,
  then SIGTERM, then SIGKILL to its process group), so no process is left.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp import Client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import RequestParamsMeta
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from penguiflow_agents._log import get_logger
from penguiflow_agents.exceptions import PenguiflowError, ToolSourceUnavailableError, UserError
from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._mcp_elicit import ElicitFn, answer_elicitation
from penguiflow_agents.tools._mcp_hints import tool_defaults
from penguiflow_agents.tools._mcp_result import error_result, to_tool_result
from penguiflow_agents.tools._mcp_sample import SampleFn, answer_sampling
from penguiflow_agents.tools._mcp_transport import STDERR_TAIL_LINES, open_transport
from penguiflow_agents.tools._redact import Redactor, secret_values
from penguiflow_agents.tools._types import (
    CallContext,
    ToolErrorKind,
    ToolResult,
    ToolSpec,
    trace_headers,
)

__all__ = [
    "CLOSE_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "MCPToolSource",
    "MCPUnavailableError",
    "ToolsChangedCallback",
]

log = get_logger("penguiflow_agents.tools.mcp")

# Longest wait for a server to start, finish the handshake and list its tools.
CONNECT_TIMEOUT_S = 30.0
# Bound on one refresh of the tool list after a list_changed notification.
LIST_TOOLS_TIMEOUT_S = 30.0
# Longest wait for a session to wind down on aclose (the SDK's stdio shutdown
# takes up to ~6 s for a server that ignores stdin EOF and SIGTERM).
CLOSE_TIMEOUT_S = 10.0
# Wait before the first reconnect attempt after a failed one; doubles per failure.
RECONNECT_BACKOFF_INITIAL_S = 0.5
# Longest wait between reconnect attempts.
RECONNECT_BACKOFF_MAX_S = 30.0
# Wait before opening a subscriptions/listen stream again after it ended; doubles each time.
RELISTEN_BACKOFF_INITIAL_S = 0.5
# Longest wait between attempts to open the listen stream again.
RELISTEN_BACKOFF_MAX_S = 30.0
# Pages of tools/list followed before giving up on a server that never ends its listing.
MAX_TOOL_PAGES = 100

_SESSION_GONE = re.compile(r"\bsession (not found|terminated|expired)\b", re.IGNORECASE)

ProtocolMode = Literal["auto", "legacy"]
ToolsChangedCallback = Callable[[list[ToolSpec]], Awaitable[None] | None]

_CLIENT_INFO = types.Implementation(name="penguiflow-agents", version="0.1.0")


MCPUnavailableError = ToolSourceUnavailableError  # the name this module used first


class _Unavailable(Exception):
    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


@dataclass(slots=True, kw_only=True, eq=False)
class _Session:
    """One connection to the server, owned by one background task."""

    generation: int
    loop: asyncio.AbstractEventLoop
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tools_changed: asyncio.Event = field(default_factory=asyncio.Event)
    client: Client | None = None
    error: str | None = None  # why it failed to start, or why it ended
    exc: BaseException | None = None
    task: asyncio.Task[None] | None = None
    finished: bool = False
    # A stdio server's last stderr lines: shown with the error when it fails or dies.
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))

    @property
    def usable(self) -> bool:
        return self.client is not None and not self.stop.is_set()


class MCPToolSource:
    """Tools of one MCP server (``mcp_stdio`` or ``mcp_http``), namespaced ``source.tool``."""

    def __init__(
        self,
        manifest: SourceManifest,
        *,
        protocol: ProtocolMode = "auto",
        on_tools_changed: ToolsChangedCallback | None = None,
        auth: httpx2.Auth | None = None,
    ) -> None:
        if manifest.transport not in ("mcp_stdio", "mcp_http"):
            raise UserError(
                f"MCPToolSource serves transports 'mcp_stdio' and 'mcp_http', not {manifest.transport!r}; "
                "use the registry to load other sources."
            )
        self.name = manifest.name
        self.manifest = manifest
        self.on_tools_changed = on_tools_changed
        self._protocol: ProtocolMode = protocol
        self._auth = auth  # signs the HTTP requests of an mcp_http session (penguiflow_agents.auth)
        self._redact = Redactor()
        self._session: _Session | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._specs: list[ToolSpec] = []
        self._hashes: dict[str, str] = {}  # bare name -> definition hash last seen
        self._listed = False
        self._failures = 0  # consecutive failed connect attempts
        self._retry_at = 0.0
        self._closed = False
        self._askers: dict[int, ElicitFn] = {}  # in-flight calls whose caller can answer questions
        self._samplers: dict[int, SampleFn] = {}  # in-flight calls of runs whose model can answer

    @classmethod
    def from_manifest(cls, manifest: SourceManifest, **kwargs: Any) -> MCPToolSource:
        """The source a manifest with transport ``mcp_stdio`` or ``mcp_http`` describes."""
        return cls(manifest, **kwargs)

    # -- public surface ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a session is up right now."""
        return self._session is not None and self._session.usable

    @property
    def last_exception(self) -> BaseException | None:
        """What ended the last session, when it was an exception (for example a credential error)."""
        return None if self._session is None else self._session.exc

    @property
    def last_error(self) -> str | None:
        """Why the last session failed to start or ended (never contains secrets)."""
        return None if self._session is None else self._session.error

    async def list_tools(self) -> list[ToolSpec]:
        """The server's tools (filtered by include/exclude), connecting if needed.

        Raises MissingEnvVarError for an unset ``${VAR}`` and MCPUnavailableError
        when the server cannot be reached.
        """
        try:
            sess = await self._acquire()
        except _Unavailable as exc:
            if isinstance(exc.cause, PenguiflowError):
                raise exc.cause from None
            raise MCPUnavailableError(exc.message) from None
        if sess.tools_changed.is_set() and sess.client is not None:
            sess.tools_changed.clear()
            try:
                with anyio.fail_after(LIST_TOOLS_TIMEOUT_S):
                    await self._refresh_tools(sess.client)
            except Exception as exc:
                log.warning("mcp_tools_refresh_failed", source=self.name, error=self._describe(exc))
        return list(self._specs)

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        """Call ``tool`` (bare name). Never raises, except the caller's own cancellation."""
        name = f"{self.name}.{tool}"
        started = time.perf_counter()
        asker = ctx.extra.get("elicit")
        if asker is not None:
            self._askers[id(ctx)] = asker
        sampler = ctx.extra.get("sample")
        if sampler is not None:
            self._samplers[id(ctx)] = sampler
        try:
            return await self._call(name, tool, arguments, ctx, started)
        finally:
            self._askers.pop(id(ctx), None)
            self._samplers.pop(id(ctx), None)

    async def _sample(
        self, context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.ErrorData:
        # Like a question: the request belongs to a call in flight; with exactly one, it is its run's.
        samplers = list(self._samplers.values())
        sampler = samplers[0] if len(samplers) == 1 else None
        return await answer_sampling(
            self.name, params, sampler, max_tokens=self.manifest.sampling.max_tokens
        )

    async def _elicit(
        self, context: Any, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        # The question belongs to a call in flight; when exactly one caller can answer, it is theirs.
        askers = list(self._askers.values())
        person = askers[0] if len(askers) == 1 else None
        return await answer_elicitation(self.name, self.manifest.elicitation, params, person)

    async def _call(
        self, name: str, tool: str, arguments: Mapping[str, Any], ctx: CallContext, started: float
    ) -> ToolResult:
        for attempt in (1, 2):
            try:
                sess = await self._acquire()
            except _Unavailable as exc:
                return _failure(name, ToolErrorKind.UNAVAILABLE, exc.message, started)
            client = sess.client
            assert client is not None  # _acquire returns usable sessions only
            try:
                traced = trace_headers(ctx)  # W3C traceparent in _meta when the call is traced
                result = await client.call_tool(
                    tool,
                    dict(arguments),
                    progress_callback=self._progress(name, ctx),
                    meta=cast("RequestParamsMeta", traced) if traced else None,
                )
            except MCPError as exc:
                if attempt == 1 and _never_delivered(exc):
                    # The server lost our session before it saw the call: reconnect, send again.
                    self._lost(sess, "the server no longer knows this session")
                    continue
                return self._rpc_failure(sess, name, exc, started)
            except (
                anyio.ClosedResourceError,
                anyio.BrokenResourceError,
                anyio.EndOfStream,
                OSError,
            ) as exc:
                self._lost(sess, self._describe(exc))
                return _failure(name, ToolErrorKind.UNAVAILABLE, self._lost_message(exc), started)
            except Exception as exc:
                # Invalid result shape, output-schema mismatch, unexpected SDK state: the call failed.
                log.warning(
                    "mcp_call_failed", source=self.name, tool=tool, error=self._describe(exc)
                )
                return _failure(
                    name,
                    ToolErrorKind.TOOL_ERROR,
                    f"MCP server of source {self.name!r} returned a result that could not be used "
                    f"({self._describe(exc)}).",
                    started,
                )
            return to_tool_result(
                name,
                result,
                latency_s=time.perf_counter() - started,
                redact=self._redact,
                max_media_bytes=self.manifest.max_result_bytes,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """End the session and wait (bounded) for the server to stop."""
        self._closed = True
        sess = self._session
        if sess is not None:
            sess.stop.set()
            if not sess.ready.is_set() and sess.task is not None:
                sess.task.cancel()  # still connecting: nothing to wind down gracefully
        loop = asyncio.get_running_loop()
        pending = [t for t in self._tasks if not t.done() and t.get_loop() is loop]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=CLOSE_TIMEOUT_S)

    # -- session lifecycle ------------------------------------------------------------

    async def _acquire(self) -> _Session:
        loop = asyncio.get_running_loop()
        sess = self._session
        if sess is not None and sess.usable and sess.loop is loop:
            return sess
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            sess = self._session
            if sess is not None and sess.loop is not loop:
                # Left over from an event loop that is gone (asyncio.run ended): start afresh.
                sess.finished = True
                sess, self._session, self._retry_at = None, None, 0.0
            if sess is None or sess.stop.is_set() or sess.finished:
                if self._closed:
                    raise _Unavailable(f"tool source {self.name!r} is closed.")
                wait = self._retry_at - time.monotonic()
                if wait > 0 and sess is not None:
                    raise _Unavailable(
                        f"MCP server of source {self.name!r} is unavailable ({sess.error}); "
                        f"the next connection attempt is in {wait:.1f}s.",
                        sess.exc,
                    )
                sess = self._start()
        await sess.ready.wait()
        if not sess.usable:
            raise _Unavailable(
                f"MCP server of source {self.name!r} is unavailable ({sess.error or 'session ended'}).",
                sess.exc,
            )
        return sess

    def _start(self) -> _Session:
        self._generation += 1
        loop = asyncio.get_running_loop()
        sess = _Session(generation=self._generation, loop=loop)
        self._session = sess
        task = loop.create_task(self._own(sess), name=f"mcp-session-{self.name}-{sess.generation}")
        sess.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: self._settle(sess))  # also when cancelled before it ran
        return sess

    def _settle(self, sess: _Session) -> None:
        """Wake the session's waiters once its owner task is over."""
        if sess.finished:
            return
        sess.finished = True
        sess.client = None
        sess.stop.set()
        if sess.error is None:
            sess.error = "the session was cancelled before it started"
        sess.ready.set()

    async def _own(self, sess: _Session) -> None:
        """The session's owner task: connect, serve until told to stop or broken, clean up."""
        loop = asyncio.get_running_loop()
        watchdog = loop.call_later(CONNECT_TIMEOUT_S, self._connect_timed_out, sess)
        was_ready = False
        try:
            await self._serve(sess, watchdog)
        except asyncio.CancelledError:
            if sess.error is None:
                sess.error = "the session was cancelled"
        except BaseException as exc:
            sess.exc = _root_cause(exc)
            sess.error = self._describe(sess.exc)
        finally:
            watchdog.cancel()
            was_ready = sess.client is not None
            sess.client = None
            sess.finished = True
            sess.stop.set()
            if sess.error is not None and sess.stderr_tail and not self._closed:
                # The transport is closed by now, so the last lines are in (e.g. a traceback
                # ending in "ModuleNotFoundError: No module named ..."): the reason, where the
                # user looks (tools list, call errors), not only in -v logs.
                sess.error += "; its last stderr lines: " + " | ".join(sess.stderr_tail)
            self._ended(sess, was_ready)
            sess.ready.set()

    async def _serve(self, sess: _Session, watchdog: asyncio.TimerHandle) -> None:
        self._redact.update(secret_values(self.manifest))
        async with AsyncExitStack() as stack:
            transport, spawned = await open_transport(
                self.manifest,
                stack,
                redact=self._redact,
                on_eof=lambda: self._lost(sess, "the server closed the connection"),
                auth=self._auth,
                stderr_tail=sess.stderr_tail,
            )

            async def on_message(message: Any) -> None:
                if isinstance(message, types.ToolListChangedNotification):
                    sess.tools_changed.set()
                elif isinstance(message, Exception):
                    log.debug(
                        "mcp_transport_error", source=self.name, error=self._describe(message)
                    )

            client = Client(
                transport,
                mode=self._protocol,
                cache=None,
                message_handler=on_message,
                elicitation_callback=self._elicit,
                # Declared only when the manifest allows it: otherwise a server cannot ask.
                sampling_callback=self._sample if self.manifest.sampling.allow else None,
                client_info=_CLIENT_INFO,
            )
            try:
                await stack.enter_async_context(client)
            finally:
                spawned()
            await self._refresh_tools(client)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._refresher, sess, client)
                caps = client.session.server_capabilities
                if (
                    client.protocol_version in MODERN_PROTOCOL_VERSIONS
                    and caps is not None
                    and caps.tools is not None
                    and caps.tools.list_changed
                ):
                    # Subscribed before ready, so no change after connect can be missed.
                    await tg.start(self._listener, sess, client)
                watchdog.cancel()
                sess.client = client
                sess.error = None
                sess.ready.set()
                log.info(
                    "mcp_session_started",
                    source=self.name,
                    transport=self.manifest.transport,
                    protocol=client.protocol_version,
                    tools=len(self._specs),
                )
                await sess.stop.wait()
                tg.cancel_scope.cancel()

    def _connect_timed_out(self, sess: _Session) -> None:
        if not sess.ready.is_set() and sess.task is not None:
            sess.error = f"the server did not finish starting within {CONNECT_TIMEOUT_S:g}s"
            sess.task.cancel()

    def _lost(self, sess: _Session, reason: str) -> None:
        """Mark a session broken; its owner task winds it down."""
        if sess.stop.is_set():
            return
        if sess.ready.is_set():
            sess.error = reason
            log.warning("mcp_connection_lost", source=self.name, reason=reason)
        sess.stop.set()

    def _ended(self, sess: _Session, was_ready: bool) -> None:
        if self._closed:
            log.info("mcp_session_closed", source=self.name)
            return
        if was_ready:
            self._failures = 0
            self._retry_at = 0.0
            return
        self._failures += 1
        backoff = min(
            RECONNECT_BACKOFF_MAX_S, RECONNECT_BACKOFF_INITIAL_S * 2 ** (self._failures - 1)
        )
        self._retry_at = time.monotonic() + backoff
        log.warning(
            "mcp_connect_failed",
            source=self.name,
            error=sess.error,
            attempt=self._failures,
            retry_in_s=round(backoff, 2),
        )

    # -- tool list --------------------------------------------------------------------

    async def _refresher(self, sess: _Session, client: Client) -> None:
        while True:
            await sess.tools_changed.wait()
            sess.tools_changed.clear()
            try:
                with anyio.fail_after(LIST_TOOLS_TIMEOUT_S):
                    await self._refresh_tools(client)
            except Exception as exc:
                log.warning("mcp_tools_refresh_failed", source=self.name, error=self._describe(exc))

    async def _listener(
        self,
        sess: _Session,
        client: Client,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """2026-07-28 connections: list changes arrive on a subscriptions/listen stream.

        A stream that ends while the session lives (the server restarted) is
        opened again, with backoff, and the list refetched: events are not replayed.
        """
        started = False
        delay = RELISTEN_BACKOFF_INITIAL_S
        while True:
            try:
                async with client.listen(tools_list_changed=True) as sub:
                    if started:
                        sess.tools_changed.set()  # what changed while we were not listening
                    else:
                        task_status.started()
                        started = True
                    delay = RELISTEN_BACKOFF_INITIAL_S
                    async for _event in sub:
                        sess.tools_changed.set()
            except Exception as exc:
                log.debug("mcp_listen_ended", source=self.name, error=self._describe(exc))
                if isinstance(exc, MCPError) and exc.error.code == types.METHOD_NOT_FOUND:
                    break  # the server does not serve subscriptions/listen after all
            if not started:
                task_status.started()
                started = True
            await anyio.sleep(delay)
            delay = min(RELISTEN_BACKOFF_MAX_S, delay * 2)
        if not started:
            task_status.started()

    async def _refresh_tools(self, client: Client) -> None:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        specs = [self._spec(t) for t in tools if self.manifest.allows(t.name)]
        changed = False
        for spec in specs:
            previous = self._hashes.get(spec.bare_name)
            if previous is not None and previous != spec.definition_hash:
                log.warning(
                    "tool_definition_changed",
                    source=self.name,
                    tool=spec.name,
                    previous_hash=previous,
                    definition_hash=spec.definition_hash,
                )
            if previous != spec.definition_hash:
                changed = True
            self._hashes[spec.bare_name] = spec.definition_hash
        names = {s.bare_name for s in specs}
        if {s.bare_name for s in self._specs} != names:
            changed = True
        first = not self._listed
        self._specs = specs
        self._listed = True
        if changed and not first:
            log.info("mcp_tools_changed", source=self.name, tools=sorted(s.name for s in specs))
            await self._notify_tools_changed(specs)

    async def _notify_tools_changed(self, specs: list[ToolSpec]) -> None:
        callback = self.on_tools_changed
        if callback is None:
            return
        try:
            outcome = callback(list(specs))
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            log.warning("mcp_tools_changed_callback_failed", source=self.name, error=repr(exc))

    def _spec(self, tool: types.Tool) -> ToolSpec:
        override = self.manifest.override(tool.name)
        risk, idempotent = tool_defaults(self.manifest, tool)  # the hints, unless the manifest says
        timeout_s = None if override is None else override.timeout_s
        return ToolSpec(
            name=f"{self.name}.{tool.name}",
            source=self.name,
            description=tool.description or tool.title or "",
            input_schema=tool.input_schema,
            output_schema=tool.output_schema,
            risk=risk,
            idempotent=idempotent,
            timeout_s=timeout_s,
            # The server's hints (read-only, destructive, ...) are part of what was approved.
            binding={
                "annotations": (
                    tool.annotations.model_dump(mode="json", exclude_none=True)
                    if tool.annotations is not None
                    else {}
                )
            },
        ).with_hash()

    # -- calls ------------------------------------------------------------------------

    def _progress(self, name: str, ctx: CallContext) -> ProgressFnT | None:
        sink = ctx.on_event
        if sink is None:
            return None

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            payload = {
                "tool": name,
                "call_id": ctx.call_id,
                "progress": progress,
                "total": total,
                "message": message,
            }
            try:
                outcome = sink("tool.progress", payload)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                log.warning(
                    "tool_progress_sink_failed", source=self.name, tool=name, error=repr(exc)
                )

        return on_progress

    def _rpc_failure(self, sess: _Session, name: str, exc: MCPError, started: float) -> ToolResult:
        code = exc.error.code
        text = self._redact(exc.error.message)
        if code == types.CONNECTION_CLOSED:
            self._lost(sess, text)
            return _failure(name, ToolErrorKind.UNAVAILABLE, self._lost_message(exc), started)
        if code == types.REQUEST_TIMEOUT:
            return _failure(
                name,
                ToolErrorKind.TIMEOUT,
                f"MCP server of source {self.name!r} did not answer in time ({text}).",
                started,
            )
        return error_result(
            name, code, text, source=self.name, latency_s=time.perf_counter() - started
        )

    def _lost_message(self, exc: BaseException) -> str:
        return (
            f"the connection to the MCP server of source {self.name!r} was lost during the call "
            f"({self._describe(exc)}); the source reconnects on the next call."
        )

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, MCPError):
            text = exc.error.message
        else:
            text = str(exc) or type(exc).__name__
        return self._redact(text)


def _failure(name: str, kind: ToolErrorKind, message: str, started: float) -> ToolResult:
    return ToolResult.failure(
        name, kind, message, latency_s=time.perf_counter() - started, attempts=1
    )


def _never_delivered(exc: MCPError) -> bool:
    """The server no longer knows our session (it restarted): it ran nothing.

    Streamable HTTP answers 404 then; SDKs word it "Session not found" or
    "Session terminated" and differ on the code (-32600 Python, -32001 TypeScript).
    """
    return _SESSION_GONE.search(exc.error.message) is not None


def _root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (anyio task groups wrap transport errors)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
