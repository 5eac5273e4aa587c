"""The model layer: the LLMClient seam, the litellm adapter and the replay model.

Importing this package never imports litellm; the adapter imports it on the
first call to a model.
"""

from __future__ import annotations

from penguiflow_agents.llm._args import parse_tool_arguments
from penguiflow_agents.llm._litellm import LiteLLMClient, ToolCalling
from penguiflow_agents.llm._names import WIRE_NAME_PATTERN, WireNames, from_wire_name, to_wire_name
from penguiflow_agents.llm._script import (
    ReplayScript,
    ScriptToolCall,
    ScriptTurn,
    ScriptUsage,
    load_replay_script,
)
from penguiflow_agents.llm._types import (
    LLMClient,
    LLMRequest,
    LLMResponse,
    LLMToolCall,
    StreamingLLMClient,
    TextDelta,
    Usage,
)

__all__ = [
    "WIRE_NAME_PATTERN",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "LLMToolCall",
    "LiteLLMClient",
    "ReplayScript",
    "ScriptToolCall",
    "ScriptTurn",
    "ScriptUsage",
    "StreamingLLMClient",
    "TextDelta",
    "ToolCalling",
    "Usage",
    "WireNames",
    "from_wire_name",
    "load_replay_script",
    "parse_tool_arguments",
    "to_wire_name",
]
