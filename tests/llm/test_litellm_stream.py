"""LiteLLMClient.stream against a respx-mocked OpenAI SSE stream, and Retry-After on 429."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx
import respx

from penguiflow_agents.llm import LiteLLMClient, LLMRequest, LLMResponse, TextDelta

from .conftest import CALC_TOOL, TIME_TOOL, on_path, openai_reply

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
USER = {"role": "user", "content": "time and sum?"}


def _sse(*deltas: dict[str, Any], finish: str, usage: dict[str, int] | None = None) -> bytes:
    base = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4.1-mini",
    }
    events = [
        {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage:
        events.append({**base, "choices": [], "usage": usage})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"


def _client(path: str, **kwargs: Any) -> LiteLLMClient:
    client = LiteLLMClient(
        "openai/gpt-4.1-mini", api_key="sk-test-key-123", initial_backoff_s=0.001, **kwargs
    )
    return on_path(client, path)


async def test_streamed_tool_call_fragments_are_joined_and_named_canonically(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    body = _sse(
        {"role": "assistant", "content": None},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "time__get_current_time", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"timez'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'one": "UTC"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "calc__add", "arguments": '{"a": 1,'},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": ' "b": 2}'}}]},
        finish="tool_calls",
        usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
    )
    route = mock_http.post(OPENAI_URL).respond(
        content=body, headers={"content-type": "text/event-stream"}
    )
    items = [
        i
        async for i in _client(llm_path).stream(
            LLMRequest(messages=[USER], tools=[TIME_TOOL, CALC_TOOL])
        )
    ]
    [response] = items
    assert isinstance(response, LLMResponse)
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("c1", "time.get_current_time", {"timezone": "UTC"}),
        ("c2", "calc.add", {"a": 1, "b": 2}),
    ]
    assert response.usage.total_tokens == 42
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is True and [t["function"]["name"] for t in sent["tools"]] == [
        "time__get_current_time",
        "calc__add",
    ]


async def test_streamed_text_arrives_as_deltas_before_the_response(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    body = _sse(
        {"role": "assistant", "content": "It is "},
        {"content": "09:00"},
        {"content": " in UTC."},
        finish="stop",
    )
    mock_http.post(OPENAI_URL).respond(content=body, headers={"content-type": "text/event-stream"})
    items = [i async for i in _client(llm_path).stream(LLMRequest(messages=[USER]))]
    assert [i.text for i in items if isinstance(i, TextDelta)] == ["It is ", "09:00", " in UTC."]
    assert isinstance(items[-1], LLMResponse) and items[-1].content == "It is 09:00 in UTC."


async def test_a_429_before_the_stream_opens_is_retried(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    body = _sse({"role": "assistant", "content": "ok"}, finish="stop")
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(
                429, json={"error": {"message": "slow down", "type": "rate_limit_error"}}
            ),
            httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}),
        ]
    )
    items = [i async for i in _client(llm_path).stream(LLMRequest(messages=[USER]))]
    assert isinstance(items[-1], LLMResponse) and items[-1].content == "ok"
    assert route.call_count == 2


async def test_retry_after_on_a_429_is_honoured_up_to_the_backoff_cap(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(
                429,
                headers={"retry-after": "0.3"},
                json={"error": {"message": "wait", "type": "rate_limit_error"}},
            ),
            httpx.Response(200, json=openai_reply(content="ok")),
        ]
    )
    started = time.perf_counter()
    assert (await _client(llm_path).complete(LLMRequest(messages=[USER]))).content == "ok"
    assert time.perf_counter() - started >= 0.3
    assert route.call_count == 2


async def test_retry_after_as_an_http_date_is_honoured(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    """Issue #12 §9: the model client reads both forms of Retry-After (one shared parser)."""
    when = email.utils.formatdate(time.time() + 2.5, usegmt=True)  # whole seconds: 1.5-2.5 s
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(
                429,
                headers={"retry-after": when},
                json={"error": {"message": "wait", "type": "rate_limit_error"}},
            ),
            httpx.Response(200, json=openai_reply(content="ok")),
        ]
    )
    started = time.perf_counter()
    assert (await _client(llm_path).complete(LLMRequest(messages=[USER]))).content == "ok"
    assert time.perf_counter() - started >= 1.0
    assert route.call_count == 2


async def test_json_action_models_stream_the_parsed_answer_once(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    mock_http.post(OPENAI_URL).respond(json=openai_reply(content='{"answer": "It is 09:00."}'))
    items = [
        i
        async for i in _client(llm_path, tool_calling="json").stream(
            LLMRequest(messages=[USER], tools=[TIME_TOOL])
        )
    ]
    assert [type(i) for i in items] == [TextDelta, LLMResponse]
    assert isinstance(items[0], TextDelta) and items[0].text == "It is 09:00."
