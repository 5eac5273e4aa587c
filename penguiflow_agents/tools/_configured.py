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

__all__ = ["ConfiguredSource"]

# Bare names whose include/exclude verdict is remembered (callers may send any name).
_MAX_REMEMBERED = 4096


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
                specs.append(self._configure(spec, bare))
        return specs

    def _configure(self, spec: ToolSpec, bare: str) -> ToolSpec:
        name = f"{self.name}.{bare}"
        if spec.name != name or not spec.definition_hash:
            spec = dataclasses.replace(spec, name=name, source=self.name).with_hash()
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
        if idempotent != spec.idempotent:
            changes["idempotent"] = idempotent
        return dataclasses.replace(spec, **changes) if changes else spec

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
