"""Tools: ``@tool`` functions, manifests (tools/*.yaml), sources and the registry.

    from penguiflow_agents.tools import ToolRegistry, tool

    @tool
    async def greet(name: str) -> str:
        '''Say hello.'''
        return f"hello {name}"

    registry = ToolRegistry()
    registry.add_functions(greet, source="local")      # tool "local.greet"
    result = await registry.call("local.greet", {"name": "Ada"})

``MCPToolSource`` and ``HttpToolSource`` are imported on first access, so
that importing this package loads neither the ``mcp`` SDK nor httpx.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from penguiflow_agents.tools._catalog import ToolCatalog
from penguiflow_agents.tools._configured import ConfiguredSource
from penguiflow_agents.tools._decorator import ToolDefinition, tool, tool_definition
from penguiflow_agents.tools._manifest import (
    CircuitBreakerConfig,
    RetryConfig,
    SourceManifest,
    ToolOverride,
    expand_vars,
    load_manifest,
)
from penguiflow_agents.tools._protect import BreakerState, ProtectedSource
from penguiflow_agents.tools._python import PythonToolSource
from penguiflow_agents.tools._registry import SourceStatus, ToolRegistry
from penguiflow_agents.tools._slots import LocalSlotLimiter, Slot, SlotLimiter
from penguiflow_agents.tools._types import (
    CallContext,
    ToolErrorKind,
    ToolMedia,
    ToolResult,
    ToolSource,
    ToolSpec,
    canonical_json,
    definition_hash,
    sha256_json,
)
from penguiflow_agents.tools._validate import argument_errors

if _TYPE_CHECKING:
    from penguiflow_agents.tools._http import HttpToolSource
    from penguiflow_agents.tools._slots_redis import RedisSlotLimiter

__all__ = [
    "BreakerState",
    "CallContext",
    "CircuitBreakerConfig",
    "ConfiguredSource",
    "HttpToolSource",
    "LocalSlotLimiter",
    "MCPToolSource",
    "ProtectedSource",
    "PythonToolSource",
    "RedisSlotLimiter",
    "RetryConfig",
    "Slot",
    "SlotLimiter",
    "SourceManifest",
    "SourceStatus",
    "ToolCatalog",
    "ToolDefinition",
    "ToolErrorKind",
    "ToolMedia",
    "ToolOverride",
    "ToolRegistry",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "argument_errors",
    "canonical_json",
    "definition_hash",
    "expand_vars",
    "load_manifest",
    "sha256_json",
    "tool",
    "tool_definition",
]

_LAZY = {
    "MCPToolSource": "penguiflow_agents.tools._mcp",
    "HttpToolSource": "penguiflow_agents.tools._http",
    "RedisSlotLimiter": "penguiflow_agents.tools._slots_redis",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
