"""LiteLLMClient through litellm.acompletion against respx-mocked OpenAI and Anthropic endpoints."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import respx

from penguiflow_agents.exceptions import LLMError, UserError
from penguiflow_agents.llm import LiteLLMClient, LLMRequest

from .conftest import CALC_TOOL, TIME_TOOL, anthropic_reply, on_path, openai_reply

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "What time is it in UTC, and what is 1 + 2?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "time.get_current_time", "arguments": '{"timezone": "UTC"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "content": "09:00", "metadata": {"run": "internal"}},
]


def _client(
    model: str = "openai/gpt-4.1-mini", *, path: str | None = None, **kwargs: Any
) -> LiteLLMClient:
    """A client; with ``path`` (an OpenAI model), served by that path (see ``on_path``)."""
    kwargs.setdefault("api_key", "sk-test-secret-key")
    kwargs.setdefault("initial_backoff_s", 0.001)
    kwargs.setdefault("max_backoff_s", 0.01)
    client = LiteLLMClient(model, **kwargs)
    return on_path(client, path) if path is not None else client


def _request(**kwargs: Any) -> LLMRequest:
    return LLMRequest(messages=CONVERSATION, tools=[TIME_TOOL, CALC_TOOL], **kwargs)


def _sent(route: respx.Route) -> dict[str, Any]:
    return json.loads(route.calls.last.request.content)


async def test_openai_request_carries_tool_schemas_and_history_under_wire_names(
    mock_http: respx.MockRouter,
    llm_path: str,
) -> None:
    route = mock_http.post(OPENAI_URL).respond(json=openai_reply(content="done"))
    await _client(path=llm_path).complete(_request(max_tokens=50, temperature=0.0))
    body = _sent(route)
    assert [t["function"]["name"] for t in body["tools"]] == ["time__get_current_time", "calc__add"]
    assert body["tools"][0]["function"]["parameters"] == dict(TIME_TOOL.input_schema)
    assert body["tools"][0]["function"]["description"] == TIME_TOOL.description
    assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "time__get_current_time"
    assert "metadata" not in body["messages"][3]
    assert (body["max_tokens"], body["temperature"]) == (50, 0.0)
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test-secret-key"


async def test_openai_parallel_tool_calls_come_back_with_canonical_names_usage_and_cost(
    mock_http: respx.MockRouter,
    llm_path: str,
) -> None:
    mock_http.post(OPENAI_URL).respond(
        json=openai_reply(
            tool_calls=[
                ("call_a", "time__get_current_time", '{"timezone": "Europe/London"}'),
                ("call_b", "calc__add", '{"a": 1, "b": 2}'),
            ]
        )
    )
    response = await _client(path=llm_path).complete(_request())
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_a", "time.get_current_time", {"timezone": "Europe/London"}),
        ("call_b", "calc.add", {"a": 1, "b": 2}),
    ]
    assert response.content is None
    assert response.finish_reason == "tool_calls"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (100, 20)
    assert response.cost_usd is not None and response.cost_usd > 0


async def test_anthropic_messages_endpoint_gets_wire_names_and_parallel_tool_use_is_parsed(
    mock_http: respx.MockRouter,
) -> None:
    route = mock_http.post(ANTHROPIC_URL).respond(
        json=anthropic_reply(
            {"type": "text", "text": "Checking both."},
            {
                "type": "tool_use",
                "id": "tu_1",
                "name": "time__get_current_time",
                "input": {"timezone": "UTC"},
            },
            {"type": "tool_use", "id": "tu_2", "name": "calc__add", "input": {"a": 1, "b": 2}},
        )
    )
    response = await _client("anthropic/claude-sonnet-4-20250514").complete(_request())
    body = _sent(route)
    assert sorted(t["name"] for t in body["tools"]) == ["calc__add", "time__get_current_time"]
    assert (
        body["messages"][1]["content"][0]["name"] == "time__get_current_time"
    )  # assistant tool_use
    assert body["system"][0]["text"] == "You are helpful."
    assert route.calls.last.request.headers["x-api-key"] == "sk-test-secret-key"
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("tu_1", "time.get_current_time", {"timezone": "UTC"}),
        ("tu_2", "calc.add", {"a": 1, "b": 2}),
    ]
    assert response.content == "Checking both."
    assert response.usage.total_tokens == 60


async def test_anthropic_429_then_success_is_retried(mock_http: respx.MockRouter) -> None:
    route = mock_http.post(ANTHROPIC_URL).mock(
        side_effect=[
            httpx.Response(
                429,
                json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            ),
            httpx.Response(
                200, json=anthropic_reply({"type": "text", "text": "ok"}, stop_reason="end_turn")
            ),
        ]
    )
    response = await _client("anthropic/claude-sonnet-4-20250514").complete(_request())
    assert response.content == "ok"
    assert route.call_count == 2


async def test_openai_429_then_success_is_retried(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(
                429, json={"error": {"message": "rate limited", "type": "rate_limit_error"}}
            ),
            httpx.Response(
                429, json={"error": {"message": "rate limited", "type": "rate_limit_error"}}
            ),
            httpx.Response(200, json=openai_reply(content="finally")),
        ]
    )
    response = await _client(path=llm_path).complete(_request())
    assert response.content == "finally"
    assert route.call_count == 3


async def test_connection_errors_are_retried(mock_http: respx.MockRouter, llm_path: str) -> None:
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(200, json=openai_reply(content="up")),
        ]
    )
    assert (await _client(path=llm_path).complete(_request())).content == "up"
    assert route.call_count == 2


async def test_500_on_every_attempt_raises_llm_error_after_the_retries(
    mock_http: respx.MockRouter,
    llm_path: str,
) -> None:
    route = mock_http.post(OPENAI_URL).respond(
        500, json={"error": {"message": "boom", "type": "server_error"}}
    )
    with pytest.raises(
        LLMError, match=r"'openai/gpt-4.1-mini' failed after 3 attempt\(s\) \(HTTP 500\)"
    ):
        await _client(path=llm_path, max_retries=2).complete(_request())
    assert route.call_count == 3


async def test_a_bad_request_is_not_retried(mock_http: respx.MockRouter, llm_path: str) -> None:
    route = mock_http.post(OPENAI_URL).respond(
        400, json={"error": {"message": "tools[0] is invalid", "type": "invalid_request_error"}}
    )
    with pytest.raises(
        LLMError, match=r"after 1 attempt\(s\) \(HTTP 400\): tools\[0\] is invalid; check"
    ):
        await _client(path=llm_path).complete(_request())
    assert route.call_count == 1


async def test_the_api_key_never_appears_in_an_error(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    mock_http.post(OPENAI_URL).respond(
        401,
        json={
            "error": {
                "message": "Incorrect API key provided: sk-test-secret-key",
                "type": "invalid_request_error",
            }
        },
    )
    with pytest.raises(LLMError) as caught:
        await _client(path=llm_path).complete(_request())
    assert "sk-test-secret-key" not in str(caught.value)


async def test_a_provider_timeout_is_an_llm_error_saying_so(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    route = mock_http.post(OPENAI_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(LLMError, match=r"did not answer within 2 s"):
        await _client(path=llm_path).complete(_request(timeout_s=2))
    assert route.call_count == 1


async def test_malformed_arguments_come_back_as_none_with_parse_error_and_raw_text(
    mock_http: respx.MockRouter,
    llm_path: str,
) -> None:
    mock_http.post(OPENAI_URL).respond(
        json=openai_reply(tool_calls=[("call_x", "calc__add", '{"a": 1, "b": ')])
    )
    [call] = (await _client(path=llm_path).complete(_request())).tool_calls
    assert call.name == "calc.add"
    assert call.arguments is None
    assert call.raw_arguments == '{"a": 1, "b": '
    assert call.parse_error is not None and "not valid JSON" in call.parse_error


async def test_malformed_arguments_in_the_history_are_sent_as_an_empty_object(
    mock_http: respx.MockRouter,
    llm_path: str,
) -> None:
    """Providers that parse the history (Anthropic) must not choke on the model's own broken JSON."""
    route = mock_http.post(OPENAI_URL).respond(json=openai_reply(content="ok"))
    history = [
        {"role": "user", "content": "add"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c",
                    "type": "function",
                    "function": {"name": "calc.add", "arguments": "{bad"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "error: malformed JSON"},
    ]
    await _client(path=llm_path).complete(LLMRequest(messages=history, tools=[CALC_TOOL]))
    assert _sent(route)["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{}"


async def test_an_unpriced_model_reports_no_cost(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    mock_http.post("http://127.0.0.1:9/v1/chat/completions").respond(
        json=openai_reply(content="hi", model="my-local-model")
    )
    client = _client("openai/my-local-model", path=llm_path, api_base="http://127.0.0.1:9/v1")
    response = await client.complete(_request())
    assert response.content == "hi"
    assert response.cost_usd is None
    assert client.native_tool_calling  # unknown to litellm: assume an OpenAI-compatible server


async def test_json_actions_describe_tools_in_the_prompt_and_parse_calls(
    mock_http: respx.MockRouter,
    llm_path: str,
) -> None:
    reply = {
        "tool_calls": [
            {"name": "calc.add", "arguments": {"a": 1, "b": 2}},
            {"name": "time.get_current_time"},
        ]
    }
    route = mock_http.post(OPENAI_URL).respond(
        json=openai_reply(content="```json\n" + json.dumps(reply) + "\n```")
    )
    response = await _client(path=llm_path, tool_calling="json").complete(_request())
    body = _sent(route)
    assert "tools" not in body
    system = body["messages"][0]["content"]
    assert system.startswith("You are helpful.") and "- calc.add: Add two numbers." in system
    assert json.loads(body["messages"][2]["content"]) == {
        "tool_calls": [{"name": "time.get_current_time", "arguments": {"timezone": "UTC"}}]
    }
    assert body["messages"][3] == {
        "role": "user",
        "content": "Result of tool call call_0 (time.get_current_time):\n09:00",
    }
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_2_1", "calc.add", {"a": 1, "b": 2}),
        ("call_2_2", "time.get_current_time", {}),
    ]


@pytest.mark.parametrize(
    ("text", "content", "error"),
    [
        ('{"answer": "It is 09:00."}', "It is 09:00.", None),
        ("It is nine o'clock.", "It is nine o'clock.", None),
        ('{"tool_calls": [{"name": "calc.add", "arguments": {"a": 1,}}]}', None, "not valid JSON"),
        ('{"say": "hi"}', None, "neither `tool_calls` nor `answer`"),
    ],
)
async def test_json_action_replies_become_an_answer_or_an_error_observation(
    mock_http: respx.MockRouter, llm_path: str, text: str, content: str | None, error: str | None
) -> None:
    mock_http.post(OPENAI_URL).respond(json=openai_reply(content=text))
    response = await _client(path=llm_path, tool_calling="json").complete(_request())
    assert response.content == content
    if error is None:
        assert response.tool_calls == ()
    else:
        [call] = response.tool_calls
        assert call.name == "invalid_json_action" and call.arguments is None
        assert call.parse_error is not None and error in call.parse_error


def test_auto_tool_calling_falls_back_to_json_only_for_models_litellm_knows_lack_it(
    litellm: Any,
) -> None:
    assert _client("ollama/llama2").native_tool_calling is False
    assert _client("openai/gpt-4.1-mini").native_tool_calling is True


def test_bad_constructor_arguments_are_user_errors() -> None:
    with pytest.raises(UserError, match="tool_calling is 'xml'"):
        LiteLLMClient("openai/gpt-4.1-mini", tool_calling="xml")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="needs a model name"):
        LiteLLMClient("")


def test_importing_the_llm_package_does_not_import_litellm() -> None:
    code = "import sys, penguiflow_agents.llm; assert 'litellm' not in sys.modules, 'litellm was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_requests_with_different_time_limits_reuse_one_openai_client(
    mock_http: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run passes its remaining time on every call: that must not build a client per call."""
    import openai

    built: list[Any] = []

    class Counting(openai.AsyncOpenAI):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            built.append(self)

    monkeypatch.setattr(openai, "AsyncOpenAI", Counting)
    route = mock_http.post(OPENAI_URL).respond(json=openai_reply(content="ok"))
    client = _client(path="litellm")
    for remaining in (50.0, 49.5, 12.25, 3.0):
        assert (await client.complete(_request(timeout_s=remaining))).content == "ok"
    assert route.call_count == 4
    assert len(built) == 1
    await client.aclose()
    assert built[0].is_closed()


async def test_a_request_is_cut_at_its_own_time_limit_when_below_the_clients(
    mock_http: respx.MockRouter,
    llm_path: str,
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=openai_reply(content="late"))

    mock_http.post(OPENAI_URL).mock(side_effect=slow)
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"did not answer within 0.3 s"):
        await _client(path=llm_path, timeout_s=60).complete(_request(timeout_s=0.3))
    assert time.monotonic() - started < 10


async def test_a_registered_litellm_callback_still_sees_every_call(
    mock_http: respx.MockRouter, litellm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litellm's per-call logging is skipped only while nobody registered a callback."""
    from litellm.integrations.custom_logger import CustomLogger

    seen = asyncio.Event()

    class Recorder(CustomLogger):  # type: ignore[misc]
        async def async_log_success_event(self, *args: Any, **kwargs: Any) -> None:
            seen.set()

    from penguiflow_agents.llm._litellm_fast import _CALLBACK_LISTS

    for name in _CALLBACK_LISTS:  # litellm copies callbacks into its other lists: restore all
        monkeypatch.setattr(litellm, name, list(getattr(litellm, name, None) or []))
    monkeypatch.setattr(litellm, "callbacks", [Recorder()])
    mock_http.post(OPENAI_URL).respond(json=openai_reply(content="ok"))
    await _client().complete(_request())
    await asyncio.wait_for(seen.wait(), timeout=10)


async def test_a_missing_api_key_fails_at_once_naming_the_variable(
    mock_http: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, llm_path: str
) -> None:
    """Not retried as a provider outage: nothing is sent, and the error says what to set."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    route = mock_http.post(OPENAI_URL).respond(json=openai_reply(content="never"))
    client = on_path(LiteLLMClient("openai/gpt-4.1-mini", max_retries=3), llm_path)
    with pytest.raises(LLMError, match="needs OPENAI_API_KEY in the environment"):
        await client.complete(_request())
    assert route.call_count == 0
