"""``ToolRegistry``: every tool source of the process, protected, behind one catalog.

    async with ToolRegistry.from_dir("tools") as registry:
        specs = await registry.list_tools()
        result = await registry.call("time.get_current_time", {"timezone": "UTC"})

Each source is wrapped twice (policies are wrappers): ``ConfiguredSource``
applies the manifest's include/exclude and per-tool overrides, then
``ProtectedSource`` adds the breaker, semaphore, timeouts and retries. Sources
connect lazily, on the first listing or call; a source that fails to connect
is reported down in ``status()`` and the others still list. ``call`` never
raises: unknown names, bad arguments and every failure are ``ToolResult``s.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pydantic

from penguiflow_agents._log import get_logger
from penguiflow_agents.exceptions import ManifestError, UserError
from penguiflow_agents.tools._arguments import ArgumentProblem, prepare_arguments
from penguiflow_agents.tools._configured import ConfiguredSource
from penguiflow_agents.tools._manifest import SourceManifest, load_manifest
from penguiflow_agents.tools._protect import ProtectedSource, QueueWaitHistogram
from penguiflow_agents.tools._python import PythonToolSource
from penguiflow_agents.tools._slots import LocalSlotLimiter, SlotLimiter
from penguiflow_agents.tools._types import (
    PREPARED_FOR_KEY,
    CallContext,
    EventSink,
    ToolErrorKind,
    ToolResult,
    ToolSource,
    ToolSpec,
)

__all__ = ["SourceStatus", "ToolRegistry"]

log = get_logger("penguiflow_agents.tools")

# Longest a source may take to connect and list its tools before it counts as down.
LIST_TIMEOUT_S = 30.0
# Longest one source may take to close on shutdown.
CLOSE_TIMEOUT_S = 10.0
_IN_PROCESS = "in-process"


@dataclass(slots=True, kw_only=True)
class SourceStatus:
    """How one source is doing, for ``tools list`` and health checks."""

    name: str
    transport: str  # mcp_stdio | mcp_http | http | python | in-process
    file: str | None
    up: bool | None  # None until the source was first contacted
    reason: str | None  # why it is down (never contains a secret)
    tools: int
    breaker: str  # closed | open | half_open
    in_flight: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": self.transport,
            "file": self.file,
            "up": self.up,
            "reason": self.reason,
            "tools": self.tools,
            "breaker": self.breaker,
            "in_flight": self.in_flight,
        }


@dataclass(slots=True, kw_only=True)
class _Entry:
    manifest: SourceManifest
    transport: str
    source: ProtectedSource
    specs: dict[str, ToolSpec] = field(default_factory=dict)
    up: bool | None = None
    reason: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Listed, and its listing cannot change (``@tool`` functions): not listed again.
    static: bool = False


class ToolRegistry:
    """All tool sources of a process; satisfies ``ToolCatalog``.

    ``on_event(name, payload)`` (sync or async) receives registry events,
    today ``tool.definition_changed`` with ``tool``, ``source``,
    ``previous_hash`` and ``definition_hash``.
    """

    def __init__(self, *, on_event: EventSink | None = None) -> None:
        self._entries: dict[str, _Entry] = {}
        self._hashes: dict[str, str] = {}
        self._on_event = on_event
        self._refreshes: set[asyncio.Task[None]] = set()
        self.load_errors: list[ManifestError] = []
        self.manifest_files: list[str] = []
        self.credentials: Any = None  # penguiflow_agents.auth.CredentialVault, see use_credentials
        self.authorizer: Any = None
        # Where a paused call's owner can log in later (serve's callback route); see
        # penguiflow_agents.auth._source.LoginStarter.
        self.login_starter: Any = None
        self._queue_observer: Callable[[str], QueueWaitHistogram] | None = None
        self._limiter: SlotLimiter | None = None

    # -- building ---------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | Path, *, on_event: EventSink | None = None) -> ToolRegistry:
        """Load every ``*.yaml`` manifest of ``path``.

        A bad manifest does not stop the others: its ``ManifestError`` (file,
        key, reason) is kept in ``registry.load_errors``. A missing directory
        raises ``ManifestError``.
        """
        root = Path(path)
        if not root.is_dir():
            raise ManifestError(
                str(root),
                None,
                "is not a directory of tool manifests (one <source>.yaml per tool source); "
                "create it or point to the right one",
            )
        registry = cls(on_event=on_event)
        files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
        for file in files:
            registry.manifest_files.append(str(file))
            try:
                registry.add_manifest(load_manifest(file))
            except ManifestError as exc:
                log.warning("tool_manifest.refused", file=exc.file, key=exc.key, reason=exc.reason)
                registry.load_errors.append(exc)
        return registry

    def add_manifest(self, manifest: SourceManifest) -> None:
        """Register the source a manifest declares (connected on first use)."""
        self._check_new(manifest.name, manifest.path)
        self._register(manifest, _make_source(manifest, self), manifest.transport)

    def adapter(self, name: str) -> ToolSource:
        """The source named ``name`` itself, without the registry's protection wrappers."""
        entry = self._entries.get(name)
        if entry is None:
            raise UserError(f"no tool source named {name!r}; registered: {sorted(self._entries)}")
        configured = entry.source.inner
        assert isinstance(configured, ConfiguredSource)
        inner = configured.inner
        return inner.materialize() if isinstance(inner, _LazySource) else inner

    def use_credentials(self, vault: Any, *, authorizer: Any = None) -> None:
        """Where ``mcp_http`` sources with ``auth:`` keep their tokens (a ``CredentialVault``),
        and who authorizes when a token is missing (an ``Authorizer``; None: the call
        raises ``AuthorizationRequiredError`` with the URL). Takes effect on the next connect."""
        self.credentials = vault
        self.authorizer = authorizer

    def add_source(
        self, source: ToolSource, *, manifest: SourceManifest | None = None, **settings: Any
    ) -> None:
        """Register a ready-made source under its ``name``.

        Protection comes from ``manifest`` or from ``settings`` (any manifest
        key: ``timeout_s``, ``max_concurrency``, ``retries``, ``include``, ...).
        """
        if manifest is None:
            manifest = _settings_manifest(source.name, settings)
        elif settings:
            raise UserError("pass either manifest= or protection settings, not both")
        self._check_new(manifest.name, manifest.path or None)
        self._register(manifest, source, _IN_PROCESS)

    def add_functions(
        self, *functions: Callable[..., Any], source: str = "local", **settings: Any
    ) -> None:
        """Register ``@tool`` functions as source ``source`` (tools ``source.<name>``)."""
        self.add_source(PythonToolSource(source, functions), **settings)

    def _check_new(self, name: str, file: str | None) -> None:
        existing = self._entries.get(name)
        if existing is not None:
            where = existing.manifest.path or "code"
            raise ManifestError(
                file or "<code>",
                "name",
                f"source {name!r} is already registered (from {where}); "
                "give each source its own name",
            )

    def _register(self, manifest: SourceManifest, source: ToolSource, transport: str) -> None:
        protected = ProtectedSource(
            ConfiguredSource(source, manifest), manifest, limiter=self._limiter
        )
        entry = _Entry(manifest=manifest, transport=transport, source=protected)
        self._entries[manifest.name] = entry
        self._watch_queue(manifest.name, protected)
        if hasattr(source, "on_tools_changed"):
            # A source that announces list changes (MCP notifications/tools/list_changed):
            # refresh our entry at once, so validation and hashes never use a stale spec.
            source.on_tools_changed = lambda _specs: self._schedule_refresh(entry)

    def use_limiter(self, limiter: SlotLimiter | None) -> None:
        """Where every source (also those added later) takes its slots: a ``SlotLimiter``
        such as ``RedisSlotLimiter`` to hold ``max_concurrency`` and ``rate_per_s`` across
        processes; None: one semaphore and bucket per source in this process (the default)."""
        self._limiter = limiter
        for entry in self._entries.values():
            entry.source.limiter = limiter or LocalSlotLimiter()

    def observe_queue_waits(self, observer: Callable[[str], QueueWaitHistogram] | None) -> None:
        """``observer(source)`` gives the histogram (``bounds``, ``counts``, ``sum``) that
        each call to ``source`` counts its wait for a free slot in, in seconds, in place
        (asked for every source, also those added later); None stops counting."""
        self._queue_observer = observer
        for name, entry in self._entries.items():
            self._watch_queue(name, entry.source)

    def _watch_queue(self, name: str, source: ProtectedSource) -> None:
        observer = self._queue_observer
        source.queue_waits = None if observer is None else observer(name)

    def _schedule_refresh(self, entry: _Entry) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh(entry))
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _refresh(self, entry: _Entry) -> None:
        async with entry.lock:
            await self._list_source(entry)

    # -- the catalog ------------------------------------------------------

    @property
    def sources(self) -> list[str]:
        return list(self._entries)

    async def list_tools(self) -> list[ToolSpec]:
        """Every tool of every source that is up (sources are listed concurrently).

        A source of ``@tool`` functions is listed once: its tools cannot change (the
        planner lists the catalog at every step, so this is on every run's path).
        """
        entries = list(self._entries.values())
        stale = [entry for entry in entries if not entry.static]
        if stale:
            await asyncio.gather(*(self._list_source(entry) for entry in stale))
        return [spec for entry in entries for spec in entry.specs.values()]

    async def list_sources(self, sources: list[str]) -> None:
        """List the named sources again, concurrently; each is up or down afterwards."""
        await asyncio.gather(*(self._list_source(self._entries[name]) for name in sources))

    def tools_of(self, source: str) -> list[ToolSpec]:
        """The tools of ``source`` as last listed (empty if not listed yet or down)."""
        entry = self._entries.get(source)
        return list(entry.specs.values()) if entry is not None else []

    def fingerprint(self, source: str) -> str:
        """A hash of ``source``'s manifest as loaded (``${VAR}`` references, not their
        values): a cached listing of the source is valid only under the same one."""
        manifest = self._entries[source].manifest.model_dump(mode="json")
        text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def max_concurrency(self, source: str) -> int:
        """Calls of ``source`` at once (its manifest's ``max_concurrency``); KeyError if unknown."""
        return self._entries[source].manifest.max_concurrency

    def max_attempts(self, source: str) -> int:
        """Attempts of an idempotent call of ``source`` (its manifest's ``retries.max_attempts``);
        KeyError if unknown."""
        return self._entries[source].manifest.retries.max_attempts

    def get(self, name: str) -> ToolSpec | None:
        """The spec of ``name`` as last listed (None if not seen yet)."""
        entry = self._entries.get(name.partition(".")[0])
        return entry.specs.get(name) if entry is not None else None

    def definition_hash(self, name: str) -> str | None:
        """The current definition hash of ``name`` (None if not seen yet)."""
        return self._hashes.get(name)

    async def _list_source(self, entry: _Entry) -> None:
        name = entry.manifest.name
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                specs = await entry.source.list_tools()
        except TimeoutError:
            self._mark_down(entry, f"did not list its tools within {LIST_TIMEOUT_S:g} s")
            return
        except Exception as exc:  # any adapter failure: the source is down, others go on
            self._mark_down(entry, str(exc) or type(exc).__name__)
            return
        if entry.up is not True:
            log.debug("tool_source.up", source=name, tools=len(specs))
        entry.up, entry.reason = True, None
        entry.specs = {spec.name: spec for spec in specs}
        for spec in specs:
            await self._track_hash(spec)
        configured = entry.source.inner
        entry.static = isinstance(configured, ConfiguredSource) and isinstance(
            configured.inner, PythonToolSource
        )

    def _mark_down(self, entry: _Entry, reason: str) -> None:
        if entry.up is not False or entry.reason != reason:
            log.warning("tool_source.down", source=entry.manifest.name, reason=reason)
        entry.up, entry.reason, entry.specs = False, reason, {}

    async def _track_hash(self, spec: ToolSpec) -> None:
        previous = self._hashes.get(spec.name)
        self._hashes[spec.name] = spec.definition_hash
        if previous is None or previous == spec.definition_hash:
            return
        payload = {
            "tool": spec.name,
            "source": spec.source,
            "previous_hash": previous,
            "definition_hash": spec.definition_hash,
        }
        log.warning("tool.definition_changed", **payload)
        if self._on_event is not None:
            try:
                outcome = self._on_event("tool.definition_changed", payload)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:  # an observer must not break listing
                log.exception("tool_registry.event_sink_failed")

    async def call(
        self, name: str, arguments: Mapping[str, Any], ctx: CallContext | None = None
    ) -> ToolResult:
        """Validate, normalise and call ``name`` (``source.tool``); never raises.

        ``ctx.on_event(name, payload)`` hears about this call while it runs:
        ``tool.retry`` (``tool``, ``attempt``, ``delay_s``) before a retry, and
        for MCP tools ``tool.progress`` (``tool``, ``call_id``, ``progress``,
        ``total``, ``message``) for each progress notification of the server.
        """
        start = time.monotonic()
        try:
            result = await self._call(name, arguments, ctx or CallContext())
        except Exception as exc:  # the contract: nothing escapes into the planner
            log.exception("tool_registry.call_failed", tool=name)
            result = ToolResult.failure(
                name,
                ToolErrorKind.TOOL_ERROR,
                f"calling {name!r} failed inside the registry ({type(exc).__name__}); "
                "see the log for details.",
            )
        result.tool = name
        result.latency_s = time.monotonic() - start
        return result

    async def check(self, name: str, arguments: Mapping[str, Any]) -> ToolResult | None:
        """The refusal ``call`` would return before reaching the source, or None.

        ``not_found``, ``unavailable`` (the source is down) or
        ``invalid_arguments`` (each failing path and constraint); None when the
        call would go ahead. Calls nothing: for checks before asking a human.
        """
        prepared = await self.prepare(name, arguments)
        return prepared if isinstance(prepared, ToolResult) else None

    async def prepare(self, name: str, arguments: Mapping[str, Any]) -> ToolResult | dict[str, Any]:
        """The canonical arguments ``call`` would run ``name`` with (validated, then
        normalised by the tool, e.g. a path without ``..``), or the refusal ``call`` would
        return. Calls nothing. Policies' approval rules must be matched against these, never
        against the arguments as given: ``/x/../shared/a`` is ``/shared/a`` to the tool."""
        try:
            return await self._prepare(name, arguments)
        except Exception:  # never raises, like call()
            log.exception("tool_registry.check_failed", tool=name)
            return ToolResult.failure(
                name,
                ToolErrorKind.TOOL_ERROR,
                f"checking a call of {name!r} failed inside the registry; see the log for details.",
            )

    async def _prepare(
        self, name: str, arguments: Mapping[str, Any]
    ) -> ToolResult | dict[str, Any]:
        """The canonical arguments of a call (validated, then normalised), or a refusal."""
        found = await self._find(name)
        if isinstance(found, ToolResult):
            return found
        prepared = prepare_arguments(found, arguments)
        if not isinstance(prepared, ArgumentProblem):
            return prepared
        errors = list(prepared.errors)
        result = ToolResult.failure(
            name,
            ToolErrorKind.INVALID_ARGUMENTS,
            f"invalid arguments for {name!r}: " + "; ".join(errors),
        )
        result.structured = {"errors": errors}
        return result

    async def _find(self, name: str) -> ToolSpec | ToolResult:
        """The spec of ``name`` (its source listed first if need be), or a refusal."""
        source_name, _, bare = name.partition(".")
        entry = self._entries.get(source_name)
        if entry is None or not bare:
            return _not_found(name)
        spec = entry.specs.get(name)
        if spec is None:
            async with entry.lock:
                if name not in entry.specs:
                    await self._list_source(entry)
            spec = entry.specs.get(name)
        if spec is None:
            if entry.up is False:
                return ToolResult.failure(
                    name,
                    ToolErrorKind.UNAVAILABLE,
                    f"source {source_name!r} is down: {entry.reason}",
                )
            return _not_found(name)
        return spec

    async def _call(self, name: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        source_name, _, bare = name.partition(".")
        prepared_for = ctx.extra.pop(PREPARED_FOR_KEY, None) if ctx.extra else None
        entry = self._entries.get(source_name)
        if prepared_for is not None and entry is not None and entry.specs.get(name) is prepared_for:
            # Checked by the caller against the tool's current spec: not again.
            return await entry.source.call(bare, dict(arguments), ctx)
        prepared = await self._prepare(name, arguments)
        if isinstance(prepared, ToolResult):
            return prepared
        return await self._entries[source_name].source.call(bare, prepared, ctx)

    # -- health and lifecycle ---------------------------------------------

    def status(self) -> list[SourceStatus]:
        """One line per source: up or down (with a reason), tools, breaker state."""
        return [
            SourceStatus(
                name=name,
                transport=entry.transport,
                file=entry.manifest.path or None,
                up=entry.up,
                reason=entry.reason,
                tools=len(entry.specs),
                breaker=str(entry.source.breaker.state),
                in_flight=entry.source.in_flight,
            )
            for name, entry in self._entries.items()
        ]

    async def aclose(self) -> None:
        """Close every source (each within CLOSE_TIMEOUT_S); errors are logged."""

        async def close(entry: _Entry) -> None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await entry.source.aclose()
            except Exception:
                log.exception("tool_source.close_failed", source=entry.manifest.name)

        for task in list(self._refreshes):
            task.cancel()
        await asyncio.gather(*(close(entry) for entry in self._entries.values()))

    async def __aenter__(self) -> ToolRegistry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(self.aclose())


def _not_found(name: str) -> ToolResult:
    return ToolResult.failure(
        name,
        ToolErrorKind.NOT_FOUND,
        f"there is no tool named {name!r}; use a name from the tool list (source.tool)",
    )


def _settings_manifest(name: str, settings: Mapping[str, Any]) -> SourceManifest:
    try:
        return SourceManifest.model_validate(
            {"name": name, "transport": "python", "module": _IN_PROCESS, **settings}
        )
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first["loc"]) or "settings"
        raise UserError(f"protection setting {key!r} for source {name!r}: {first['msg']}") from None


class _BrokenSource:
    """Stands in for a source that could not be built; always down, with a reason."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    async def list_tools(self) -> list[ToolSpec]:
        raise UserError(self.reason)

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        return ToolResult.failure(f"{self.name}.{tool}", ToolErrorKind.UNAVAILABLE, self.reason)

    async def aclose(self) -> None:
        return None


def _make_source(manifest: SourceManifest, registry: ToolRegistry) -> ToolSource:
    """The adapter for a manifest's transport (MCP imported lazily)."""
    try:
        if manifest.transport == "python":
            return PythonToolSource.from_manifest(manifest)
        if manifest.transport == "http":
            from penguiflow_agents.tools._http import HttpToolSource  # httpx: on first use

            return HttpToolSource.from_manifest(manifest)
        if manifest.transport == "a2a":
            try:
                from penguiflow_agents.tools._a2a import A2AToolSource
            except ImportError as exc:
                return _BrokenSource(
                    manifest.name,
                    f"A2A sources need the a2a extra (pip install 'penguiflow-agents[a2a]'): {exc}",
                )
            return A2AToolSource.from_manifest(manifest)
        # MCP: the SDK (~0.3-0.4 s of imports) loads when the source is first used, so a
        # command that shows cached listings never pays for it.
        return _LazySource(manifest, lambda: _mcp_source(manifest, registry))
    except Exception as exc:  # building an adapter must not stop the other sources
        return _BrokenSource(manifest.name, str(exc) or type(exc).__name__)


def _mcp_source(manifest: SourceManifest, registry: ToolRegistry) -> ToolSource:
    try:
        from penguiflow_agents.tools._mcp import MCPToolSource  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        return _BrokenSource(
            manifest.name, f"MCP sources are not available in this installation ({exc})"
        )
    if manifest.auth is not None:
        from penguiflow_agents.auth._source import AuthorizedMCPSource

        return AuthorizedMCPSource(
            manifest,
            vault=lambda: registry.credentials,
            authorizer=lambda: registry.authorizer,
            login_starter=lambda: registry.login_starter,
        )
    source: ToolSource = MCPToolSource.from_manifest(manifest)
    return source


class _LazySource:
    """A source built on first use (listing, a call, or any attribute of the adapter).

    Until then nothing of its transport is imported or started; closing a source never
    built is a no-op. A failure to build is a broken source (the others go on).
    """

    def __init__(self, manifest: SourceManifest, build: Callable[[], ToolSource]) -> None:
        self._manifest = manifest
        self._build = build
        self._built: ToolSource | None = None
        self._on_tools_changed: Callable[[Any], None] | None = None

    @property
    def on_tools_changed(self) -> Callable[[Any], None] | None:
        return self._on_tools_changed

    @on_tools_changed.setter
    def on_tools_changed(self, callback: Callable[[Any], None] | None) -> None:
        self._on_tools_changed = callback
        if self._built is not None and hasattr(self._built, "on_tools_changed"):
            self._built.on_tools_changed = callback

    def materialize(self) -> ToolSource:
        if self._built is None:
            try:
                built = self._build()
            except Exception as exc:
                built = _BrokenSource(self._manifest.name, str(exc) or type(exc).__name__)
            if self._on_tools_changed is not None and hasattr(built, "on_tools_changed"):
                built.on_tools_changed = self._on_tools_changed
            self._built = built
        return self._built

    async def list_tools(self) -> list[ToolSpec]:
        return await self.materialize().list_tools()

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        return await self.materialize().call(tool, arguments, ctx)

    async def aclose(self) -> None:
        if self._built is not None:
            await self._built.aclose()

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class lacks: those of the adapter itself.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)
