"""The model seam: one request in, one response out.

The conversation is a list of OpenAI chat-completions message dicts using the
*canonical dotted* tool names (``time.get_current_time``). Adapters translate
names to whatever the provider accepts (wire names) and back, so nothing
outside an adapter ever sees a wire name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.tools._types import ToolSpec

__all__ = [
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "LLMToolCall",
    "OutputSchema",
    "TextDelta",
    "Usage",
    "check_client_options",
]

ChatMessage = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMToolCall:
    """A tool call the model asked for.

    ``arguments`` is the parsed JSON object, or ``None`` when the model sent
    text that is not a JSON object; then ``parse_error`` says why and
    ``raw_arguments`` keeps what it sent (the planner shows it back).
    """

    id: str
    name: str  # canonical dotted name (or whatever unknown name the model used)
    arguments: Mapping[str, Any] | None
    raw_arguments: str = ""
    parse_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMResponse:
    content: str | None
    tool_calls: Sequence[LLMToolCall] = ()
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    model: str = ""
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSchema:
    """The JSON schema the final answer must match (``ReactPlanner(output_type=...)``),
    for a client that constrains answers natively (OpenAI's ``response_format``)."""

    name: str  # matches ^[a-zA-Z0-9_-]{1,64}$
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMRequest:
    messages: Sequence[ChatMessage]
    tools: Sequence[ToolSpec] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    timeout_s: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)  # run_id, tenant: never sent
    # Only set for a client whose ``supports_output_schema()`` said yes.
    output_schema: OutputSchema | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    """A piece of streamed answer text."""

    text: str


@runtime_checkable
class LLMClient(Protocol):
    """Anything that can answer a chat-completions request with tool calling."""

    model: str

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


@runtime_checkable
class StreamingLLMClient(LLMClient, Protocol):
    """An LLM client that can also stream: text deltas, then the full response last."""

    def stream(self, request: LLMRequest) -> AsyncIterator[TextDelta | LLMResponse]: ...


def check_client_options(
    client: str,
    model: str,
    *,
    tool_calling: str,
    structured_output: str,
    timeout_s: float,
    max_retries: int,
) -> None:
    """The constructor checks both model clients share (UserError naming the value)."""
    if not model:
        raise UserError(f"{client} needs a model name such as 'openai/gpt-4.1-mini'.")
    if tool_calling not in ("auto", "native", "json"):
        raise UserError(f"tool_calling is {tool_calling!r}; use 'auto', 'native' or 'json'.")
    if structured_output not in ("auto", "native", "tool"):
        raise UserError(
            f"structured_output is {structured_output!r}; use 'auto', 'native' or 'tool'."
        )
    if timeout_s <= 0 or max_retries < 0:
        raise UserError(
            f"timeout_s must be > 0 and max_retries >= 0 (got {timeout_s!r}, {max_retries!r})."
        )
