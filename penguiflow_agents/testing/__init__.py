"""Fakes for testing agents built on penguiflow-agents (imported on first use).

- ``ScriptedLLM``: an in-process model that plays replay-style turns (no HTTP).
- ``ScriptedApprover``: decides pending approvals by rules, through every real check.
- ``MemoryStore``: the in-memory state store.
- ``AutoApproveAuthorizer``: a browser stand-in for test OAuth servers that approve at once.
- ``penguiflow_agents.testing.mcp_server``: a fault-injecting MCP server (slow,
  flaky, crashing tools, a changing tool list) over stdio or streamable HTTP.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from penguiflow_agents.store import MemoryStore as MemoryStore
    from penguiflow_agents.testing.approver import ApproverRule as ApproverRule
    from penguiflow_agents.testing.approver import ScriptedApprover as ScriptedApprover
    from penguiflow_agents.testing.authorizer import AutoApproveAuthorizer as AutoApproveAuthorizer
    from penguiflow_agents.testing.scripted_llm import ScriptedLLM as ScriptedLLM
    from penguiflow_agents.testing.scripted_llm import ScriptedTurn as ScriptedTurn

_EXPORTS: dict[str, str] = {
    "ApproverRule": "penguiflow_agents.testing.approver",
    "AutoApproveAuthorizer": "penguiflow_agents.testing.authorizer",
    "MemoryStore": "penguiflow_agents.store",
    "ScriptedApprover": "penguiflow_agents.testing.approver",
    "ScriptedLLM": "penguiflow_agents.testing.scripted_llm",
    "ScriptedTurn": "penguiflow_agents.testing.scripted_llm",
}

__all__ = [
    "ApproverRule",
    "AutoApproveAuthorizer",
    "MemoryStore",
    "ScriptedApprover",
    "ScriptedLLM",
    "ScriptedTurn",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'penguiflow_agents.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
