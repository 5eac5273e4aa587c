"""An ``mcp_http`` source with ``auth:``: one MCP session per credential owner.

An MCP server binds a session to the user of its token, so sources whose
tokens belong to principals (``token_owner: principal``) or tenants keep one
``MCPToolSource`` per owner, created on first use (at most
``MAX_OWNER_SESSIONS``; the least recently used is closed beyond that).
Machine credentials (``bearer``, ``client_credentials``) belong to the
platform: one session serves every caller.

A call whose owner has no usable token (never authorized, refresh refused)
fails with ``AuthorizationRequiredError`` carrying the authorization URL,
before anything reaches the server: the planner pauses the run on it.
The tool list is the one last seen by any owner (kept sealed in the vault), so
callers who have not authorized yet still see the tools they may authorize.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from penguiflow_agents.auth._oauth import Authorizer, build_auth
from penguiflow_agents.auth._vault import CredentialVault, Owner
from penguiflow_agents.exceptions import (
    AuthorizationRequiredError,
    PenguiflowError,
    ToolSourceUnavailableError,
)
from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._mcp import MCPToolSource, ToolsChangedCallback
from penguiflow_agents.tools._types import CallContext, ToolErrorKind, ToolResult, ToolSpec

__all__ = ["MAX_OWNER_SESSIONS", "PLATFORM", "AuthorizedMCPSource"]

log = structlog.get_logger("penguiflow_agents.auth")

# ``(source, owner) -> URL`` of a login the process will complete (None: none to offer).
LoginStarter = Callable[["AuthorizedMCPSource", Owner], Awaitable[str | None]]

# Open sessions kept per source (one per owner); the least recently used closes beyond this.
MAX_OWNER_SESSIONS = 64
PLATFORM = Owner("*", "*")  # the owner of machine credentials and of the shared tool list


class AuthorizedMCPSource:
    """Tools of one authenticated MCP server; sessions per credential owner."""

    def __init__(
        self,
        manifest: SourceManifest,
        *,
        vault: CredentialVault | Callable[[], CredentialVault | None] | None,
        authorizer: Authorizer | Callable[[], Authorizer | None] | None = None,
        protocol: Any = "auto",
        login_starter: Callable[[], LoginStarter | None] | None = None,
    ) -> None:
        assert manifest.auth is not None
        self.name = manifest.name
        self.manifest = manifest
        self.on_tools_changed: ToolsChangedCallback | None = None
        self._authorizer = authorizer
        self._vault = vault
        self._protocol = protocol
        self._login_starter = login_starter
        self._sessions: OrderedDict[Owner, MCPToolSource] = OrderedDict()
        self._specs: list[ToolSpec] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def machine(self) -> bool:
        """Whether the credentials belong to the platform rather than to callers."""
        assert self.manifest.auth is not None
        return self.manifest.auth.type != "oauth"

    @property
    def vault(self) -> CredentialVault | None:
        return self._vault() if callable(self._vault) else self._vault

    @property
    def authorizer(self) -> Authorizer | None:
        """Who authorizes when a token is missing; None: calls raise AuthorizationRequiredError."""
        found = self._authorizer
        if found is None or hasattr(found, "authorize"):
            return found  # type: ignore[return-value]
        return found()  # type: ignore[operator,no-any-return]

    def owner_of(self, ctx: CallContext | None) -> Owner:
        assert self.manifest.auth is not None
        if self.machine:
            return PLATFORM
        return Owner.of(self.manifest.auth, None if ctx is None else ctx.headers)

    def session(self, owner: Owner, authorizer: Authorizer | None = None) -> MCPToolSource:
        """The owner's session (created, not yet connected, on first use)."""
        existing = self._sessions.get(owner)
        if existing is not None and authorizer is None:
            self._sessions.move_to_end(owner)
            return existing
        source = self._connection(owner, authorizer or self.authorizer)
        if existing is not None:
            self._close_later(existing)
        self._sessions[owner] = source
        self._sessions.move_to_end(owner)
        while len(self._sessions) > MAX_OWNER_SESSIONS:
            _, oldest = self._sessions.popitem(last=False)
            self._close_later(oldest)
        return source

    def _connection(self, owner: Owner, authorizer: Authorizer | None) -> MCPToolSource:
        """A new, unconnected session of ``owner`` (not kept in ``_sessions``)."""
        assert self.manifest.auth is not None
        url = self.manifest.resolved_url()
        assert url is not None  # the manifest model requires it for mcp_http
        auth = build_auth(
            self.name,
            url,
            self.manifest.auth.resolved(file=self.manifest.path),
            owner=owner,
            vault=self.vault,
            authorizer=authorizer,
        )
        source = MCPToolSource(self.manifest, protocol=self._protocol, auth=auth)
        source.on_tools_changed = self._changed
        return source

    async def list_tools(self) -> list[ToolSpec]:
        """The tools, through any owner's live session, else the list last seen."""
        for source in reversed(self._sessions.values()):
            if source.connected:
                return await self._listed(source)
        if self.machine:
            return await self._listed(self.session(PLATFORM))
        if self._specs is None:
            self._specs = await self._stored_specs()
        if self._specs is None:
            raise ToolSourceUnavailableError(
                f"no one has authorized source {self.name!r} yet, so its tools are unknown; "
                f"run `penguiflow-agents auth login {self.name}`."
            )
        return list(self._specs)

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        owner = self.owner_of(ctx)
        source = self.session(owner)
        if not source.connected:
            try:
                await self._listed(source)
            except AuthorizationRequiredError as exc:
                self._forget(owner, source)
                raise await self._with_live_login(owner, exc) from None
            except PenguiflowError:
                pass  # the call reports the failure as a result
        result = await source.call(tool, arguments, ctx)
        if not result.ok and result.error_kind == ToolErrorKind.UNAVAILABLE:
            needed = _authorization_cause(source)
            if needed is not None:
                self._forget(owner, source)
                raise await self._with_live_login(owner, needed) from None
        return result

    async def _with_live_login(
        self, owner: Owner, needed: AuthorizationRequiredError
    ) -> AuthorizationRequiredError:
        """The pause's URL: the run's own grant ends with its call, so its URL leads nowhere.
        Where a process can finish a login later (``serve``'s callback route), it starts one
        for the owner and the pause names that login's URL instead."""
        starter = self._login_starter() if self._login_starter is not None else None
        if starter is None:
            return needed
        try:
            url = await starter(self, owner)
        except Exception as exc:  # the pause still stands, with the run's own URL
            log.warning("auth.live_login_failed", source=self.name, error=str(exc))
            return needed
        if url is None:
            return needed
        return AuthorizationRequiredError(
            needed.source,
            tenant=needed.tenant,
            principal=needed.principal,
            url=url,
            reason=needed.reason,
        )

    def _forget(self, owner: Owner, source: MCPToolSource) -> None:
        """Drop a session that needs authorization: once the owner authorizes (in any
        process), the next call connects afresh instead of waiting out a reconnect backoff."""
        if self._sessions.get(owner) is source:
            del self._sessions[owner]
            self._close_later(source)

    async def authorize(self, owner: Owner, authorizer: Authorizer) -> list[ToolSpec]:
        """Connect as ``owner`` with a person at hand (``auth login``); returns the tools."""
        # A session of its own, never one the owner's calls use: while a person takes their
        # time (a login started for a paused run waits minutes), calls pause, never wait.
        source = self._connection(owner, authorizer)
        try:
            return await self._listed(source)
        finally:
            await source.aclose()

    async def aclose(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.aclose() for s in sessions), return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # -- internals ------------------------------------------------------------------

    async def _listed(self, source: MCPToolSource) -> list[ToolSpec]:
        try:
            specs = await source.list_tools()
        except ToolSourceUnavailableError:
            needed = _authorization_cause(source)
            if needed is not None:
                raise needed from None
            raise
        if not self.machine and [s.to_dict() for s in specs] != [
            s.to_dict() for s in self._specs or []
        ]:
            self._specs = specs
            await self._store_specs(specs)
        return specs

    async def _changed(self, specs: list[ToolSpec]) -> None:
        self._specs = list(specs)
        await self._store_specs(specs)
        callback = self.on_tools_changed
        if callback is not None:
            outcome = callback(list(specs))
            if asyncio.iscoroutine(outcome):
                await outcome

    async def _stored_specs(self) -> list[ToolSpec] | None:
        vault = self.vault
        if vault is None:
            return None
        data = await vault.get(self.name, PLATFORM, "tools")
        if data is None:
            return None
        return [_spec_from(d) for d in data["tools"]]

    async def _store_specs(self, specs: list[ToolSpec]) -> None:
        vault = self.vault
        if vault is None:
            return
        try:
            await vault.put(self.name, PLATFORM, "tools", {"tools": [_spec_to(s) for s in specs]})
        except PenguiflowError as exc:
            log.warning("mcp_tools_not_stored", source=self.name, error=str(exc))

    def _close_later(self, source: MCPToolSource) -> None:
        task = asyncio.get_running_loop().create_task(source.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _authorization_cause(source: MCPToolSource) -> AuthorizationRequiredError | None:
    exc = source.last_exception
    return exc if isinstance(exc, AuthorizationRequiredError) else None


def _spec_to(spec: ToolSpec) -> dict[str, Any]:
    return {
        **spec.to_dict(),
        "output_schema": None if spec.output_schema is None else dict(spec.output_schema),
        "timeout_s": spec.timeout_s,
    }


def _spec_from(data: Mapping[str, Any]) -> ToolSpec:
    return ToolSpec(
        name=data["name"],
        source=data["source"],
        description=data["description"],
        input_schema=data["input_schema"],
        output_schema=data.get("output_schema"),
        risk=data["risk"],
        idempotent=data["idempotent"],
        timeout_s=data.get("timeout_s"),
        definition_hash=data["definition_hash"],
    )
