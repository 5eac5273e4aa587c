"""What the planner needs from a registry: list tools, call one by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from penguiflow_agents.tools._types import CallContext, ToolResult, ToolSpec

__all__ = ["ToolCatalog"]


@runtime_checkable
class ToolCatalog(Protocol):
    """A set of namespaced tools. ``ToolRegistry`` is the real one.

    ``call`` validates the arguments against the tool's input schema, applies
    the source's protection (semaphore, timeouts, retries, breaker) and never
    raises: an unknown name is a ``not_found`` result, bad arguments an
    ``invalid_arguments`` result naming each failing path.
    """

    async def list_tools(self) -> list[ToolSpec]: ...

    async def call(
        self, name: str, arguments: Mapping[str, Any], ctx: CallContext | None = None
    ) -> ToolResult: ...
