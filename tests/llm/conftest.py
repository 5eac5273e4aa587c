"""Fixtures of the LLM-layer tests: litellm imported once, tool specs, canned provider replies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import respx

from penguiflow_agents.tools._types import ToolSpec


@pytest.fixture(scope="session")
def litellm() -> Any:
    """litellm, imported once for the session (its import takes seconds) and set up as the adapter does."""
    from penguiflow_agents.llm._litellm_import import load_litellm

    return load_litellm()


@pytest.fixture
def mock_http(litellm: Any) -> Iterator[respx.MockRouter]:
    """respx on every httpx client; litellm uses httpx because aiohttp is turned off."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


TIME_TOOL = ToolSpec(
    name="time.get_current_time",
    source="time",
    description="Current time in a timezone.",
    input_schema={
        "type": "object",
        "properties": {"timezone": {"type": "string"}},
        "required": ["timezone"],
    },
)
CALC_TOOL = ToolSpec(
    name="calc.add",
    source="calc",
    description="Add two numbers.",
    input_schema={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    },
)


def openai_reply(
    *,
    content: str | None = None,
    tool_calls: list[tuple[str, str, str]] | None = None,
    model: str = "gpt-4.1-mini",
) -> dict[str, Any]:
    """An OpenAI chat-completions body; tool_calls are (id, wire name, arguments text)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in tool_calls
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def anthropic_reply(*blocks: dict[str, Any], stop_reason: str = "tool_use") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": list(blocks),
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 50, "output_tokens": 10},
    }


# The two ways an OpenAI-protocol model is served: the direct httpx path (what
# ``LiteLLMClient`` picks by itself for such a model) and ``litellm.acompletion``.
LLM_PATHS = ("direct", "litellm")


@pytest.fixture(params=LLM_PATHS)
def llm_path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def on_path(client: Any, path: str) -> Any:
    """``client`` (a ``LiteLLMClient``) served by ``path``: the direct path it picked by
    itself (asserted), or litellm."""
    if path == "litellm":
        client._route = "litellm"
    else:
        assert client.direct() is not None, f"{client!r} did not pick the direct path"
    return client
