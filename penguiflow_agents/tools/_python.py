"""The ``python`` tool source: ``@tool`` functions of a module, or given directly."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.tools._decorator import ArgumentsRejected, ToolDefinition, tool_definition
from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._types import CallContext, ToolErrorKind, ToolResult, ToolSpec

__all__ = ["PythonToolSource"]


class PythonToolSource:
    """Tools from Python functions decorated with ``@tool``.

    ``PythonToolSource("local", [fn1, fn2])`` or, for a manifest with
    ``module: myapp.tools``, every ``@tool`` function found in that module
    (imported lazily, on first use). Sync functions run in a worker thread.

    A function that raises ``TimeoutError`` or ``ConnectionError`` yields a
    ``timeout`` / ``unavailable`` result (retryable for idempotent tools); any
    other exception a ``tool_error`` result with the exception's message.
    """

    def __init__(
        self,
        name: str,
        functions: Iterable[Callable[..., Any]] = (),
        *,
        module: str | None = None,
    ) -> None:
        self.name = name
        self._module = module
        self._defs: dict[str, ToolDefinition] = {}
        self._specs: list[ToolSpec] | None = None
        for fn in functions:
            self._add(fn)
        if module is None:
            self._specs = self._build_specs()

    @classmethod
    def from_manifest(cls, manifest: SourceManifest) -> PythonToolSource:
        return cls(manifest.name, module=manifest.module)

    def _add(self, fn: Callable[..., Any]) -> None:
        definition = tool_definition(fn)
        if definition is None:
            raise UserError(f"{fn!r} is not a tool; decorate it with @tool first")
        existing = self._defs.get(definition.name)
        if existing is not None and existing.fn is not fn:
            raise UserError(
                f"two tools are named {definition.name!r} in source {self.name!r}; "
                "rename one with @tool(name=...)"
            )
        self._defs[definition.name] = definition

    def _build_specs(self) -> list[ToolSpec]:
        return [d.spec(self.name) for d in self._defs.values()]

    def _load(self) -> list[ToolSpec]:
        if self._specs is not None:
            return self._specs
        assert self._module is not None
        try:
            mod = importlib.import_module(self._module)
        except Exception as exc:  # an import runs arbitrary code: translate everything
            raise UserError(
                f"cannot import tool module {self._module!r} ({type(exc).__name__}: {exc}); "
                "check the manifest's 'module' and that the package is installed"
            ) from None
        for value in list(vars(mod).values()):
            if tool_definition(value) is not None:
                self._add(value)
        self._specs = self._build_specs()
        return self._specs

    async def list_tools(self) -> list[ToolSpec]:
        return list(self._load())

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        qualified = f"{self.name}.{tool}"
        try:
            self._load()
        except UserError as exc:
            return ToolResult.failure(qualified, ToolErrorKind.UNAVAILABLE, str(exc), attempts=1)
        definition = self._defs.get(tool)
        if definition is None:
            return ToolResult.failure(
                qualified,
                ToolErrorKind.NOT_FOUND,
                f"source {self.name!r} has no tool {tool!r}",
            )
        try:
            value = await definition.invoke(arguments, ctx)
        except ArgumentsRejected as exc:
            return ToolResult.failure(
                qualified,
                ToolErrorKind.INVALID_ARGUMENTS,
                "invalid arguments: " + "; ".join(exc.errors),
                attempts=1,
            )
        except TimeoutError as exc:
            return ToolResult.failure(
                qualified, ToolErrorKind.TIMEOUT, _describe(exc, "timed out"), attempts=1
            )
        except ConnectionError as exc:
            return ToolResult.failure(
                qualified,
                ToolErrorKind.UNAVAILABLE,
                _describe(exc, "lost its connection"),
                attempts=1,
            )
        except Exception as exc:
            return ToolResult.failure(
                qualified, ToolErrorKind.TOOL_ERROR, _describe(exc, "failed"), attempts=1
            )
        structured = value if isinstance(value, (dict, list)) else None
        return ToolResult.success(qualified, value, structured=structured)

    async def aclose(self) -> None:
        return None


def _describe(exc: BaseException, what: str) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else f"the tool {what} ({type(exc).__name__})"
