"""A wrapper source that applies a manifest's include/exclude and per-tool overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._types import (
    CallContext,
    ToolErrorKind,
    ToolResult,
    ToolSource,
    ToolSpec,
)

__all__ = ["ConfiguredSource", "manifest_binding"]

# Bare names whose include/exclude verdict is remembered (callers may send any name).
_MAX_REMEMBERED = 4096


def manifest_binding(manifest: SourceManifest, bare: str) -> dict[str, Any]:
    """What a manifest says about *where and how* a tool is called: part of its hash.

    Values are taken as written in the file, so ``${VAR}`` stays a name and a
    secret's value never enters the hash; headers and environment variables
    count by name only.
    """
    binding: dict[str, Any] = {"transport": manifest.transport}
    if manifest.transport == "http":
        endpoint = manifest.override(bare)
        binding.update(
            url=manifest.url,
            header_names=sorted(h.lower() for h in manifest.headers),
            method=endpoint.method if endpoint is not None else None,
            path=endpoint.path if endpoint is not None else None,
            query=sorted(endpoint.query) if endpoint is not None else [],
            body="json",  # arguments not in the path or query form the JSON body
        )
    elif manifest.transport == "mcp_stdio":
        binding.update(command=list(manifest.command or []), env_names=sorted(manifest.env))
    elif manifest.transport in ("mcp_http", "a2a"):
        binding.update(url=manifest.url, header_names=sorted(h.lower() for h in manifest.headers))
    # python: the @tool function's own binding (module and function) is kept as is.
    return binding


class ConfiguredSource:
    """Filters the tools of ``inner`` and applies ``risk``/``idempotent``/``timeout_s``.

    Include/exclude regexes full-match the bare tool name. A call to a tool
    the filters drop is ``not_found``, as if the source did not have it.
    Specs come out namespaced ``source.tool`` with a definition hash.
    """

    def __init__(self, inner: ToolSource, manifest: SourceManifest) -> None:
        self.inner = inner
        self.manifest = manifest
        self.name = manifest.name
        self._allowed: dict[str, bool] = {}  # include/exclude verdict per bare name
        # bare name -> (the inner spec, our spec): the same inner spec gives the same object,
        # so hashes are computed once and identity-keyed caches downstream keep hitting.
        self._configured: dict[str, tuple[ToolSpec, ToolSpec]] = {}

    def _allows(self, bare: str) -> bool:
        verdict = self._allowed.get(bare)
        if verdict is None:
            if len(self._allowed) >= _MAX_REMEMBERED:
                self._allowed.clear()
            verdict = self._allowed[bare] = self.manifest.allows(bare)
        return verdict

    async def list_tools(self) -> list[ToolSpec]:
        specs = []
        for spec in await self.inner.list_tools():
            bare = spec.bare_name if spec.name.startswith(f"{self.name}.") else spec.name
            if self._allows(bare):
                hit = self._configured.get(bare)
                if hit is None or hit[0] is not spec:
                    if len(self._configured) >= _MAX_REMEMBERED:
                        self._configured.clear()
                    hit = self._configured[bare] = (spec, self._configure(spec, bare))
                specs.append(hit[1])
        return specs

    def _configure(self, spec: ToolSpec, bare: str) -> ToolSpec:
        name = f"{self.name}.{bare}"
        override = self.manifest.override(bare)
        idempotent = spec.idempotent
        if "idempotent" in self.manifest.model_fields_set:
            idempotent = self.manifest.idempotent
        changes: dict[str, Any] = {}
        if override is not None:
            if override.risk is not None:
                changes["risk"] = override.risk
            if override.idempotent is not None:
                idempotent = override.idempotent
            if override.timeout_s is not None:
                changes["timeout_s"] = override.timeout_s
        changes["idempotent"] = idempotent
        binding = {**spec.binding, **manifest_binding(self.manifest, bare)}
        # The hash is taken last, over the definition as the registry exposes it.
        return dataclasses.replace(
            spec, name=name, source=self.name, binding=binding, **changes
        ).with_hash()

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        if not self._allows(tool):
            return ToolResult.failure(
                f"{self.name}.{tool}",
                ToolErrorKind.NOT_FOUND,
                f"tool {tool!r} of source {self.name!r} is excluded by its manifest "
                f"({self.manifest.path or 'include/exclude'})",
            )
        return await self.inner.call(tool, arguments, ctx)

    async def aclose(self) -> None:
        await self.inner.aclose()
