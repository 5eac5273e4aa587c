"""penguiflow-agents: let an LLM chat assistant call tools safely.

The public API. Names are imported on first use, so ``import penguiflow_agents``
is cheap and never imports litellm or the mcp SDK::

    from penguiflow_agents import Headers, ReactPlanner, ToolRegistry, PolicySet, open_store
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from penguiflow_agents._identity import (
        Headers,
    )
    from penguiflow_agents.approvals import (
        ApprovalService,
    )
    from penguiflow_agents.exceptions import (
        AlreadyDecidedError,
        ApprovalError,
        ApproverNotAllowedError,
        ConfigError,
        ConflictError,
        LLMError,
        ManifestError,
        MissingEnvVarError,
        NotFoundError,
        PenguiflowError,
        PolicyError,
        ReplayScriptError,
        RunPaused,
        StoreError,
        UserError,
    )
    from penguiflow_agents.llm import (
        LiteLLMClient,
        LLMClient,
        LLMRequest,
        LLMResponse,
        LLMToolCall,
        Usage,
        open_llm,
    )
    from penguiflow_agents.planner import (
        PlannerEvent,
        ReactPlanner,
        RunResult,
        Step,
        planner_node,
    )
    from penguiflow_agents.policy import (
        ApprovalRule,
        PolicySet,
        ToolView,
    )
    from penguiflow_agents.runtime import (
        Context,
        FinalAnswer,
        Flow,
        FlowError,
        FlowErrorCode,
        FlowEvent,
        FlowEventKind,
        MapItemError,
        Message,
        Node,
        NodePolicy,
        StreamChunk,
        configure_logging,
        create,
        join_k,
        log_flow_events,
        map_concurrent,
        predicate_router,
        subflow,
        table_router,
        union_router,
    )
    from penguiflow_agents.store import (
        ApprovalDecision,
        ApprovalRecord,
        MemoryStore,
        PostgresStore,
        RunRecord,
        SQLiteStore,
        StateStore,
        StoredEvent,
        open_store,
    )
    from penguiflow_agents.tools import (
        CallContext,
        SourceManifest,
        ToolCatalog,
        ToolErrorKind,
        ToolRegistry,
        ToolResult,
        ToolSource,
        ToolSpec,
        load_manifest,
        tool,
    )

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AlreadyDecidedError": "penguiflow_agents.exceptions",
    "ApprovalError": "penguiflow_agents.exceptions",
    "ApproverNotAllowedError": "penguiflow_agents.exceptions",
    "ConfigError": "penguiflow_agents.exceptions",
    "ConflictError": "penguiflow_agents.exceptions",
    "LLMError": "penguiflow_agents.exceptions",
    "ManifestError": "penguiflow_agents.exceptions",
    "MissingEnvVarError": "penguiflow_agents.exceptions",
    "NotFoundError": "penguiflow_agents.exceptions",
    "PenguiflowError": "penguiflow_agents.exceptions",
    "PolicyError": "penguiflow_agents.exceptions",
    "ReplayScriptError": "penguiflow_agents.exceptions",
    "RunPaused": "penguiflow_agents.exceptions",
    "StoreError": "penguiflow_agents.exceptions",
    "UserError": "penguiflow_agents.exceptions",
    "Headers": "penguiflow_agents._identity",
    "Context": "penguiflow_agents.runtime",
    "FinalAnswer": "penguiflow_agents.runtime",
    "Flow": "penguiflow_agents.runtime",
    "FlowError": "penguiflow_agents.runtime",
    "FlowErrorCode": "penguiflow_agents.runtime",
    "FlowEvent": "penguiflow_agents.runtime",
    "FlowEventKind": "penguiflow_agents.runtime",
    "MapItemError": "penguiflow_agents.runtime",
    "Message": "penguiflow_agents.runtime",
    "Node": "penguiflow_agents.runtime",
    "NodePolicy": "penguiflow_agents.runtime",
    "StreamChunk": "penguiflow_agents.runtime",
    "configure_logging": "penguiflow_agents.runtime",
    "create": "penguiflow_agents.runtime",
    "join_k": "penguiflow_agents.runtime",
    "log_flow_events": "penguiflow_agents.runtime",
    "map_concurrent": "penguiflow_agents.runtime",
    "predicate_router": "penguiflow_agents.runtime",
    "subflow": "penguiflow_agents.runtime",
    "table_router": "penguiflow_agents.runtime",
    "union_router": "penguiflow_agents.runtime",
    "CallContext": "penguiflow_agents.tools",
    "SourceManifest": "penguiflow_agents.tools",
    "ToolCatalog": "penguiflow_agents.tools",
    "ToolErrorKind": "penguiflow_agents.tools",
    "ToolRegistry": "penguiflow_agents.tools",
    "ToolResult": "penguiflow_agents.tools",
    "ToolSource": "penguiflow_agents.tools",
    "ToolSpec": "penguiflow_agents.tools",
    "load_manifest": "penguiflow_agents.tools",
    "tool": "penguiflow_agents.tools",
    "LLMClient": "penguiflow_agents.llm",
    "LLMRequest": "penguiflow_agents.llm",
    "LLMResponse": "penguiflow_agents.llm",
    "LLMToolCall": "penguiflow_agents.llm",
    "LiteLLMClient": "penguiflow_agents.llm",
    "Usage": "penguiflow_agents.llm",
    "open_llm": "penguiflow_agents.llm",
    "ApprovalDecision": "penguiflow_agents.store",
    "ApprovalRecord": "penguiflow_agents.store",
    "MemoryStore": "penguiflow_agents.store",
    "PostgresStore": "penguiflow_agents.store",
    "RunRecord": "penguiflow_agents.store",
    "SQLiteStore": "penguiflow_agents.store",
    "StateStore": "penguiflow_agents.store",
    "StoredEvent": "penguiflow_agents.store",
    "open_store": "penguiflow_agents.store",
    "ApprovalRule": "penguiflow_agents.policy",
    "PolicySet": "penguiflow_agents.policy",
    "ToolView": "penguiflow_agents.policy",
    "ApprovalService": "penguiflow_agents.approvals",
    "PlannerEvent": "penguiflow_agents.planner",
    "ReactPlanner": "penguiflow_agents.planner",
    "RunResult": "penguiflow_agents.planner",
    "Step": "penguiflow_agents.planner",
    "planner_node": "penguiflow_agents.planner",
}

__all__ = [
    "AlreadyDecidedError",
    "ApprovalDecision",
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalRule",
    "ApprovalService",
    "ApproverNotAllowedError",
    "CallContext",
    "ConfigError",
    "ConflictError",
    "Context",
    "FinalAnswer",
    "Flow",
    "FlowError",
    "FlowErrorCode",
    "FlowEvent",
    "FlowEventKind",
    "Headers",
    "LLMClient",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "LLMToolCall",
    "LiteLLMClient",
    "ManifestError",
    "MapItemError",
    "MemoryStore",
    "Message",
    "MissingEnvVarError",
    "Node",
    "NodePolicy",
    "NotFoundError",
    "PenguiflowError",
    "PlannerEvent",
    "PolicyError",
    "PolicySet",
    "PostgresStore",
    "ReactPlanner",
    "ReplayScriptError",
    "RunPaused",
    "RunRecord",
    "RunResult",
    "SQLiteStore",
    "SourceManifest",
    "StateStore",
    "Step",
    "StoreError",
    "StoredEvent",
    "StreamChunk",
    "ToolCatalog",
    "ToolErrorKind",
    "ToolRegistry",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "ToolView",
    "Usage",
    "UserError",
    "configure_logging",
    "create",
    "join_k",
    "load_manifest",
    "log_flow_events",
    "map_concurrent",
    "open_llm",
    "open_store",
    "planner_node",
    "predicate_router",
    "subflow",
    "table_router",
    "tool",
    "union_router",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'penguiflow_agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
