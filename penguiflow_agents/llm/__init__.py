"""The model layer: the LLMClient seam, the litellm adapter and the replay model.

Importing this package never imports litellm; the adapter imports it on the
first call to a model.
"""

from __future__ import annotations

from penguiflow_agents.llm._args import parse_tool_arguments
from penguiflow_agents.llm._litellm import LiteLLMClient, ToolCalling
from penguiflow_agents.llm._names import WIRE_NAME_PATTERN, WireNames, from_wire_name, to_wire_name
from penguiflow_agents.llm._open import PROVIDER_KEY_VARIABLES, open_llm, provider_keys_set
from penguiflow_agents.llm._providers import check_model
from penguiflow_agents.llm._replay import REPLAY_MODEL_NAME, ReplayServer
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
    OutputSchema,
    StreamingLLMClient,
    TextDelta,
    Usage,
)

__all__ = [
    "PROVIDER_KEY_VARIABLES",
    "REPLAY_MODEL_NAME",
    "WIRE_NAME_PATTERN",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "LLMToolCall",
    "LiteLLMClient",
    "OutputSchema",
    "ReplayScript",
    "ReplayServer",
    "ScriptToolCall",
    "ScriptTurn",
    "ScriptUsage",
    "StreamingLLMClient",
    "TextDelta",
    "ToolCalling",
    "Usage",
    "WireNames",
    "check_model",
    "from_wire_name",
    "load_replay_script",
    "open_llm",
    "parse_tool_arguments",
    "provider_keys_set",
    "to_wire_name",
]
