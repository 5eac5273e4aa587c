"""ReactPlanner over LiteLLMClient against respx-mocked OpenAI and Anthropic endpoints.

The whole path a real provider sees: the planner's request through litellm
(tool schemas under wire names), parallel tool calls parsed and *executed*
(a real ToolRegistry), results sent back matched by call id, a 429 retried,
and malformed arguments repaired through an error observation the model sees.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LiteLLMClient
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.tools import ToolRegistry

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@pytest.fixture(scope="module")
def litellm() -> Any:
    from penguiflow_agents.llm._litellm_import import load_litellm

    return load_litellm()


@pytest.fixture
def mock_http(litellm: Any) -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture(params=["direct", "litellm"])
def llm_path(request: pytest.FixtureRequest) -> str:
    """The two paths an OpenAI model can take: direct httpx (picked by itself) or litellm."""
    return str(request.param)


def on_path(llm: LiteLLMClient, path: str) -> LiteLLMClient:
    if path == "litellm":
        llm._route = "litellm"
    else:
        assert llm.direct() is not None
    return llm


def openai_turn(calls: list[tuple[str, str, str]] | None, content: str | None = None) -> Any:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ]
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": USAGE,
    }


def anthropic_turn(calls: list[tuple[str, str, Any]] | None, content: str | None = None) -> Any:
    blocks: list[dict[str, Any]] = []
    if content:
        blocks.append({"type": "text", "text": content})
    for i, n, a in calls or []:
        blocks.append({"type": "tool_use", "id": i, "name": n, "input": a})
    return {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": blocks,
        "stop_reason": "tool_use" if calls else "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


# Per provider: model, endpoint, the first turn (two parallel calls, one with arguments that
# fail the schema), the answer turn, and how to read the tool results out of a request body.
def _openai_results(body: dict[str, Any]) -> dict[str, str]:
    return {m["tool_call_id"]: m["content"] for m in body["messages"] if m["role"] == "tool"}


def _anthropic_results(body: dict[str, Any]) -> dict[str, str]:
    out = {}
    for message in body["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block.get("type") == "tool_result":
                content = block["content"]
                text = content if isinstance(content, str) else content[0]["text"]
                out[block["tool_use_id"]] = text
    return out


PROVIDERS: dict[str, tuple[str, str, Any, Any, Callable[[dict[str, Any]], dict[str, str]]]] = {
    "openai": (
        "openai/gpt-4.1-mini",
        OPENAI_URL,
        openai_turn(
            [
                ("call_a", "math__add", '{"a": 2, "b": 3}'),
                ("call_b", "math__add", '{"a": "two", "b": 3}'),
            ]
        ),
        openai_turn(None, "2 + 3 = 5; the second call needed numbers."),
        _openai_results,
    ),
    "anthropic": (
        "anthropic/claude-sonnet-4-20250514",
        ANTHROPIC_URL,
        anthropic_turn(
            [
                ("toolu_a", "math__add", {"a": 2, "b": 3}),
                ("toolu_b", "math__add", {"a": "two", "b": 3}),
            ]
        ),
        anthropic_turn(None, "2 + 3 = 5; the second call needed numbers."),
        _anthropic_results,
    ),
}


@pytest.fixture
def registry() -> ToolRegistry:
    from penguiflow_agents.tools import tool

    @tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    reg = ToolRegistry()
    reg.add_functions(add, source="math")
    return reg


@pytest.mark.parametrize(
    ("provider", "path"), [("anthropic", "litellm"), ("openai", "direct"), ("openai", "litellm")]
)
async def test_parallel_calls_run_and_a_bad_call_is_repaired_through_an_observation(
    provider: str, path: str, mock_http: respx.MockRouter, registry: ToolRegistry
) -> None:
    model, url, first, answer, results_of = PROVIDERS[provider]
    replies = iter(
        [
            httpx.Response(429, json={"error": {"message": "slow down"}}),
            httpx.Response(200, json=first),
            httpx.Response(200, json=answer),
        ]
    )
    route = mock_http.post(url).mock(side_effect=lambda request: next(replies))
    llm = LiteLLMClient(model, api_key="sk-test-key-123456", initial_backoff_s=0.001)
    if provider == "openai":
        on_path(llm, path)
    else:
        assert llm.direct() is None  # Anthropic stays on litellm
    try:
        result = await ReactPlanner(llm=llm, registry=registry).run(
            "What is 2 + 3?", headers=Headers(tenant="acme")
        )
    finally:
        await llm.aclose()
    assert result.status == "completed", result.error
    assert result.answer == "2 + 3 = 5; the second call needed numbers."
    assert route.call_count == 3  # the 429 was retried
    first_body = json.loads(route.calls[1].request.content)
    tools = first_body["tools"]
    names = [t["function"]["name"] if "function" in t else t["name"] for t in tools]
    assert names == ["math__add"]
    schema = (
        tools[0]["function"]["parameters"] if "function" in tools[0] else tools[0]["input_schema"]
    )
    assert schema["required"] == ["a", "b"]
    # Both calls ran (concurrently; steps are listed as they finished); the results went
    # back to the model under their call ids, in the order the model sent the calls.
    by_id = {s.call_id: s for s in result.steps}
    good_id, bad_id = ("call_a", "call_b") if provider == "openai" else ("toolu_a", "toolu_b")
    assert (by_id[good_id].outcome, by_id[good_id].result) == ("ok", 5)
    assert by_id[bad_id].outcome == "invalid_arguments"
    sent = results_of(json.loads(route.calls[2].request.content))
    assert list(sent) == [good_id, bad_id]
    assert sent[good_id] == "5"
    assert sent[bad_id].startswith("Error (invalid_arguments)")
    assert "'two'" in sent[bad_id] and '"required": ["a", "b"]' in sent[bad_id]


async def test_malformed_argument_json_from_openai_is_quoted_back_and_the_retry_runs(
    mock_http: respx.MockRouter, registry: ToolRegistry, llm_path: str
) -> None:
    replies = iter(
        [
            openai_turn([("call_x", "math__add", '{"a": 2, "b": ')]),
            openai_turn([("call_y", "math__add", '{"a": 2, "b": 3}')]),
            openai_turn(None, "5"),
        ]
    )
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=lambda request: httpx.Response(200, json=next(replies))
    )
    llm = on_path(LiteLLMClient("openai/gpt-4.1-mini", api_key="sk-test-key-123456"), llm_path)
    try:
        result = await ReactPlanner(llm=llm, registry=registry).run(
            "2 + 3?", headers=Headers(tenant="acme")
        )
    finally:
        await llm.aclose()
    assert (result.status, result.answer) == ("completed", "5")
    assert [(s.call_id, s.outcome) for s in result.steps] == [
        ("call_x", "invalid_arguments"),
        ("call_y", "ok"),
    ]
    observation = _openai_results(json.loads(route.calls[1].request.content))["call_x"]
    assert "could not be read" in observation and """You sent: '{"a": 2, "b": '""" in observation
    # The broken JSON itself is not sent back to the provider (it would refuse the history).
    history = json.loads(route.calls[1].request.content)["messages"]
    [assistant] = [m for m in history if m["role"] == "assistant"]
    assert assistant["tool_calls"][0]["function"]["arguments"] == "{}"


async def test_a_json_action_model_gets_its_broken_reply_explained_and_never_as_the_answer(
    mock_http: respx.MockRouter, registry: ToolRegistry, llm_path: str
) -> None:
    """A model without native tool calling: its unreadable reply is an observation, not an answer."""
    replies = iter(
        [
            openai_turn(None, '{"tool_calls": [{"name": "math.add", "arguments": {"a": 2,'),
            openai_turn(
                None, '{"tool_calls": [{"name": "math.add", "arguments": {"a": 2, "b": 3}}]}'
            ),
            openai_turn(None, '{"answer": "2 + 3 = 5"}'),
        ]
    )
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=lambda request: httpx.Response(200, json=next(replies))
    )
    llm = on_path(
        LiteLLMClient("openai/gpt-4.1-mini", api_key="sk-test-key-123456", tool_calling="json"),
        llm_path,
    )
    try:
        result = await ReactPlanner(llm=llm, registry=registry).run(
            "2 + 3?", headers=Headers(tenant="acme")
        )
    finally:
        await llm.aclose()
    assert (result.status, result.answer) == ("completed", "2 + 3 = 5")
    assert [s.outcome for s in result.steps] == ["invalid_arguments", "ok"]
    second = json.loads(route.calls[1].request.content)["messages"]
    feedback = second[-1]["content"]
    assert "Error (invalid_action)" in feedback and "not valid JSON" in feedback
    assert "Available tools: math.add" in feedback


# -- typed final answers (ReactPlanner(output_type=...)) --------------------------------------


class _Sum(BaseModel):
    """The sum of two numbers, with a one-line explanation."""

    total: int
    explanation: str


async def test_typed_answer_sends_the_schema_as_response_format_and_is_repaired(
    mock_http: respx.MockRouter, registry: ToolRegistry, llm_path: str
) -> None:
    replies = iter(
        [
            openai_turn(None, '{"total": "five", "explanation": "2 + 3"}'),
            openai_turn(None, '{"total": 5, "explanation": "2 + 3 = 5"}'),
        ]
    )
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=lambda request: httpx.Response(200, json=next(replies))
    )
    llm = on_path(LiteLLMClient("openai/gpt-4.1-mini", api_key="sk-test-key-123456"), llm_path)
    try:
        assert await llm.supports_output_schema()
        result = await ReactPlanner(llm=llm, registry=registry, output_type=_Sum).run(
            "2 + 3?", headers=Headers(tenant="acme")
        )
    finally:
        await llm.aclose()
    assert result.status == "completed", result.error
    assert result.output == _Sum(total=5, explanation="2 + 3 = 5")
    first = json.loads(route.calls[0].request.content)
    fmt = first["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "_Sum"
    assert fmt["json_schema"]["schema"]["required"] == ["total", "explanation"]
    assert [t["function"]["name"] for t in first["tools"]] == ["math__add"]
    # The invalid answer went back to the model with what is wrong, then the schema.
    second = json.loads(route.calls[1].request.content)
    assert second["messages"][-2] == {
        "role": "assistant",
        "content": '{"total": "five", "explanation": "2 + 3"}',
    }
    told = second["messages"][-1]
    assert told["role"] == "user" and told["content"].startswith("Error (invalid_output)")
    assert "$.total: Input should be a valid integer" in told["content"]


async def test_typed_answer_through_the_final_tool_when_structured_output_is_off(
    mock_http: respx.MockRouter, registry: ToolRegistry, llm_path: str
) -> None:
    replies = iter(
        [
            openai_turn([("call_f", "final_answer", '{"total": 5}')]),
            openai_turn([("call_g", "final_answer", '{"total": 5, "explanation": "2+3"}')]),
        ]
    )
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=lambda request: httpx.Response(200, json=next(replies))
    )
    llm = on_path(
        LiteLLMClient(
            "openai/gpt-4.1-mini", api_key="sk-test-key-123456", structured_output="tool"
        ),
        llm_path,
    )
    try:
        result = await ReactPlanner(llm=llm, registry=registry, output_type=_Sum).run(
            "2 + 3?", headers=Headers(tenant="acme")
        )
    finally:
        await llm.aclose()
    assert result.status == "completed", result.error
    assert result.output == _Sum(total=5, explanation="2+3")
    first = json.loads(route.calls[0].request.content)
    assert "response_format" not in first
    final = next(t for t in first["tools"] if t["function"]["name"] == "final_answer")
    assert final["function"]["parameters"]["required"] == ["total", "explanation"]
    second = json.loads(route.calls[1].request.content)
    told = {m["tool_call_id"]: m["content"] for m in second["messages"] if m["role"] == "tool"}
    assert "$.explanation: Field required" in told["call_f"]
