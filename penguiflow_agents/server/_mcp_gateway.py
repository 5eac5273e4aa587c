"""The MCP gateway: ``serve`` answers MCP (streamable HTTP) at ``/mcp``.

Built on the ``mcp`` SDK's server side: a low-level ``Server`` whose
``tools/list`` and ``tools/call`` handlers are the caller's policy view and
``GatewayCalls``, behind the SDK's ``StreamableHTTPSessionManager`` (both
protocol eras: the 2026-07-28 single-exchange POSTs, and the handshake-era
sessions of older clients). ``McpEndpoint``, the ASGI app at ``/mcp``, runs
before the SDK sees a request:

1. ``Origin`` (DNS rebinding): a request that carries one must match
   ``ServerSettings.mcp_allowed_origins`` (loopback by default), else 403;
2. identity: the same ``Authorization: Bearer`` API keys and OIDC tokens as
   every route (``caller``), else 401 with ``WWW-Authenticate``; the caller
   rides in the ASGI scope to the handlers, and a handshake-era session is
   bound to the credential that opened it (the SDK answers 404 to another).

``tools/list_changed``: a client listening (``subscriptions/listen`` on
2026-07-28; the session's GET stream on older protocols, once it has listed
the tools) is told when *its* view changes: tools added, removed or
redefined by a source, or a change of its tenant's policy. The views are
compared every ``mcp_watch_s`` seconds while someone listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import structlog
from fastapi.security import HTTPAuthorizationCredentials
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._errors import ApiError, error_response
from penguiflow_agents.server._mcp_calls import GatewayCalls
from penguiflow_agents.server._state import ServerState
from penguiflow_agents.tools import ToolSpec

__all__ = ["GATEWAY_KEY", "McpEndpoint", "McpGateway", "origin_allowed"]

_log = structlog.get_logger("penguiflow_agents.server.mcp")

# ServerState.extras key of the running gateway.
GATEWAY_KEY = "mcp_gateway"
# ASGI scope key of the authenticated caller of an /mcp request.
CALLER_SCOPE_KEY = "penguiflow.caller"
# _meta key of a call result that names the approval it waited for.
APPROVAL_META_KEY = "penguiflow-agents/approval_id"
# Longest wait for the session manager to close its sessions at shutdown.
SHUTDOWN_TIMEOUT_S = 10.0
# Most clients listening for tools/list_changed at once (further listens are refused).
MAX_LISTENERS = 1024

_current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "penguiflow_mcp_caller", default=None
)


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``origin`` is one of ``allowed`` (``scheme://host:*``: that host, any port)."""
    for pattern in allowed:
        if origin == pattern:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if origin == base:
                return True
            rest = origin[len(base) :]
            if origin.startswith(base) and rest[:1] == ":" and rest[1:].isdigit():
                return True
    return False


def _caller_of(ctx: ServerRequestContext[Any, Any]) -> Caller:
    request = ctx.request
    who = request.scope.get(CALLER_SCOPE_KEY) if isinstance(request, Request) else None
    if not isinstance(who, Caller):  # pragma: no cover - McpEndpoint always sets it
        raise RuntimeError("an /mcp request reached the MCP server without a caller")
    return who


def _tool(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        description=spec.description or None,
        input_schema=dict(spec.input_schema),
        annotations=types.ToolAnnotations(idempotent_hint=spec.idempotent),
    )


class _GatewayServer(Server[Any]):
    """A low-level ``Server`` that says, to handshake-era clients, that it sends list changes."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


@dataclass(slots=True)
class _Listener:
    caller: Caller
    fingerprint: str
    notify: Callable[[], Awaitable[None]]
    alive: Callable[[], bool]


class McpGateway:
    """The MCP server of one app (entered by the app's lifespan with ``running``)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.calls = GatewayCalls(state)
        from penguiflow_agents.server._app import version

        self.server = _GatewayServer(
            "penguiflow-agents",
            version=version(),
            instructions=(
                "Tools of penguiflow-agents under the caller's tenant policy. A call that needs "
                "a human approval waits for it, then runs once."
            ),
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=self._listen,
        )
        # Origin is checked by McpEndpoint (configurable, before identity); Host is not
        # checked: behind a proxy it is whatever the proxy says.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        # Handshake-era sessions, and 2026-07-28 requests that can receive notifications (a
        # progress token, subscriptions/listen): answered as SSE streams when they notify.
        self.manager = StreamableHTTPSessionManager(
            app=self.server,
            security_settings=security,
            max_request_body_size=state.settings.max_body_bytes,
        )
        # Other 2026-07-28 requests: one JSON answer, served in the request's own task (the
        # SSE path's deferral costs ~3 ms per call as the SDK client sees it).
        self.json_manager = StreamableHTTPSessionManager(
            app=self.server,
            security_settings=security,
            max_request_body_size=state.settings.max_body_bytes,
            json_response=True,
            stateless=True,
        )
        self._listeners: dict[object, _Listener] = {}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[McpGateway]:
        """The session manager runs in a task of its own: its task group is then entered and
        left in one task, however the app's lifespan is driven (entered and left in
        different tasks by some test harnesses)."""
        ready = asyncio.Event()
        stop = asyncio.Event()

        async def host() -> None:
            async with self.manager.run(), self.json_manager.run():
                ready.set()
                await stop.wait()

        hosting = asyncio.create_task(host(), name="mcp-gateway-sessions")
        started = asyncio.create_task(ready.wait())
        await asyncio.wait({hosting, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if hosting.done():
            hosting.result()  # it failed to start: say why
        watcher = asyncio.create_task(self._watch(), name="mcp-gateway-views")
        try:
            yield self
        finally:
            watcher.cancel()
            stop.set()
            done, _ = await asyncio.wait({watcher, hosting}, timeout=SHUTDOWN_TIMEOUT_S)
            if hosting not in done:
                hosting.cancel()
                await asyncio.wait({hosting}, timeout=SHUTDOWN_TIMEOUT_S)

    # -- handlers --------------------------------------------------------------------------

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        """For the SDK's ``Mcp-Param-*`` header checks: the schema of a tool the caller sees."""
        who = _current_caller.get()
        spec = self.state.registry.get(name)
        if who is None or spec is None or not self.state.policies.is_visible(name, who.headers):
            return None
        return dict(spec.input_schema)

    async def _view(self, who: Caller) -> list[ToolSpec]:
        specs = await self.state.registry.list_tools()
        return list(self.state.policies.view(specs, who.headers).tools)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        who = _caller_of(ctx)
        view = await self._view(who)
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._listen_on_session(ctx, who, view)
        return types.ListToolsResult(tools=[_tool(spec) for spec in view])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        who = _caller_of(ctx)

        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(done, total, message)

        outcome = await self.calls.call(who, params.name, params.arguments or {}, progress)
        meta = {APPROVAL_META_KEY: outcome.approval_id} if outcome.approval_id else None
        content: list[types.ContentBlock] = [types.TextContent(type="text", text=outcome.text)]
        content += [
            types.ImageContent(type="image", data=m.data, mime_type=m.mime_type)
            for m in outcome.media
        ]
        return types.CallToolResult(
            content=content,
            structured_content=outcome.structured,
            is_error=not outcome.ok,
            _meta=meta,
        )

    # -- tools/list_changed ----------------------------------------------------------------

    async def _listen(
        self,
        ctx: ServerRequestContext[Any, Any],
        params: types.SubscriptionsListenRequestParams,
    ) -> types.SubscriptionsListenResult:
        """``subscriptions/listen`` (2026-07-28): the SDK's handler over this caller's changes."""
        who = _caller_of(ctx)
        bus = InMemorySubscriptionBus()
        token = object()
        self._add_listener(
            token,
            _Listener(
                caller=who,
                fingerprint=_fingerprint(await self._view(who)),
                notify=lambda: bus.publish(ToolsListChanged()),
                alive=lambda: True,
            ),
        )
        try:
            return await ListenHandler(bus, max_subscriptions=1)(ctx, params)
        finally:
            self._listeners.pop(token, None)

    def _listen_on_session(
        self, ctx: ServerRequestContext[Any, Any], who: Caller, view: list[ToolSpec]
    ) -> None:
        """A handshake-era session that listed the tools hears of changes on its GET stream."""
        request = ctx.request
        session_id = request.headers.get("mcp-session-id") if isinstance(request, Request) else None
        if session_id is None:
            return
        key = ("session", session_id)
        session = ctx.session
        sessions = getattr(self.manager, "_server_instances", None)
        self._add_listener(
            key,
            _Listener(
                caller=who,
                fingerprint=_fingerprint(view),
                notify=session.send_tool_list_changed,
                alive=lambda: sessions is None or session_id in sessions,
            ),
        )

    def _add_listener(self, key: object, listener: _Listener) -> None:
        if key not in self._listeners and len(self._listeners) >= MAX_LISTENERS:
            self._prune()
            if len(self._listeners) >= MAX_LISTENERS:
                _log.warning("mcp.listeners_full", limit=MAX_LISTENERS)
                return
        self._listeners[key] = listener

    def _prune(self) -> None:
        for key, listener in list(self._listeners.items()):
            if not listener.alive():
                self._listeners.pop(key, None)

    async def views_changed(self) -> None:
        """Compare every listener's view now; tell those whose view changed."""
        self._prune()
        if not self._listeners:
            return
        specs = await self.state.registry.list_tools()
        policies = self.state.policies
        for key, listener in list(self._listeners.items()):
            now = _fingerprint(list(policies.view(specs, listener.caller.headers).tools))
            if now == listener.fingerprint:
                continue
            listener.fingerprint = now
            try:
                await listener.notify()
            except Exception as exc:  # a closed stream: forget the listener
                _log.debug("mcp.list_changed_undelivered", error=type(exc).__name__)
                self._listeners.pop(key, None)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.state.settings.mcp_watch_s)
            try:
                await self.views_changed()
            except Exception:
                _log.exception("mcp.view_watch_failed")


def _fingerprint(view: list[ToolSpec]) -> str:
    digest = hashlib.sha256()
    for spec in sorted(view, key=lambda s: s.name):
        digest.update(f"{spec.name}\x00{spec.definition_hash}\x00".encode())
    return digest.hexdigest()


class McpEndpoint:
    """The ASGI app at ``/mcp``: Origin, then identity, then the SDK's session manager."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app_state = getattr(scope.get("app"), "state", None)
        state = getattr(app_state, "penguiflow", None)
        gateway = state.extras.get(GATEWAY_KEY) if isinstance(state, ServerState) else None
        if not isinstance(state, ServerState) or not isinstance(gateway, McpGateway):
            response = error_response(
                503, "unavailable", "the server is starting or stopping; try again shortly."
            )
            await response(scope, receive, send)
            return
        request = Request(scope, receive)
        origin = request.headers.get("origin")
        if origin is not None and not origin_allowed(origin, state.settings.mcp_allowed_origins):
            _log.warning("mcp.origin_refused", origin=origin[:200])
            response = error_response(
                403,
                "forbidden_origin",
                f"Origin {origin[:200]!r} may not call /mcp (a browser page of another site: DNS "
                "rebinding protection); the operator can allow it with `serve --mcp-origin`.",
            )
            await response(scope, receive, send)
            return
        try:
            who = await caller(request, _credentials(request), state)
        except ApiError as exc:
            await error_response(exc.status, exc.code, exc.message, exc.headers)(
                scope, receive, send
            )
            return
        scope[CALLER_SCOPE_KEY] = who
        # The SDK binds a handshake-era session to the credential that opened it.
        scope["user"] = AuthenticatedUser(
            AccessToken(token="-", client_id=who.key_id, scopes=[], subject=who.headers.principal)
        )
        manager = gateway.manager
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if request.method == "POST" and version in MODERN_PROTOCOL_VERSIONS:
            body = await request.body()  # at most max_body_bytes (BodyLimit)
            if not _may_notify(body):
                manager = gateway.json_manager
            receive = _replaying(body, receive)
        token = _current_caller.set(who)
        try:
            await manager.handle_request(scope, receive, send)
        finally:
            _current_caller.reset(token)


def _credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())


def _may_notify(body: bytes) -> bool:
    """Whether a 2026-07-28 request can be sent notifications: it carries a progress token,
    or it is a listen (unparsable bodies go to the SDK's full path, which says what is wrong)."""
    try:
        message = json.loads(body)
    except ValueError:
        return True
    if not isinstance(message, dict):
        return True
    if message.get("method") == "subscriptions/listen":
        return True
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and meta.get("progressToken") is not None


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` that yields the already-read body first, then the client's next messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay
