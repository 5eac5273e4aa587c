"""The replay model end to end: script file -> 127.0.0.1 server -> litellm -> LiteLLMClient."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from penguiflow_agents.exceptions import LLMError, UserError
from penguiflow_agents.llm import (
    PROVIDER_KEY_VARIABLES,
    REPLAY_MODEL_NAME,
    LiteLLMClient,
    LLMRequest,
    LLMResponse,
    ReplayServer,
    TextDelta,
    load_replay_script,
    open_llm,
)
from penguiflow_agents.tools._types import ToolSpec

from .conftest import CALC_TOOL, TIME_TOOL

SCRIPT = """
turns:
  - tool_calls:
      - {name: time.get_current_time, arguments: {timezone: UTC}}
      - {name: calc.add, arguments: {a: 1, b: 2}}
  - match: "09:00"
    content: "It is 09:00 in UTC and 1 + 2 = 3."
"""

USER = {"role": "user", "content": "What time is it in UTC, and what is 1 + 2?"}


def _after_tools(first: LLMResponse) -> list[dict[str, Any]]:
    """The conversation after the first turn's calls ran, as a planner would build it."""
    return [
        USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.raw_arguments},
                }
                for c in first.tool_calls
            ],
        },
        {"role": "tool", "tool_call_id": first.tool_calls[1].id, "content": "3"},
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "09:00"},
    ]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "script.yaml"
    path.write_text(SCRIPT)
    return path


@pytest.fixture
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def test_a_tool_call_turn_then_a_content_turn_through_litellm(
    litellm: Any, script: Path
) -> None:
    async with open_llm(f"replay:{script}") as llm:
        assert llm.is_replay and llm.spec == f"replay:{script}"
        tools = [TIME_TOOL, CALC_TOOL]
        first = await llm.complete(LLMRequest(messages=[USER], tools=tools))
        assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
            ("call_1_1", "time.get_current_time", {"timezone": "UTC"}),
            ("call_1_2", "calc.add", {"a": 1, "b": 2}),
        ]
        assert first.model == REPLAY_MODEL_NAME
        assert first.usage.total_tokens > 0
        assert first.cost_usd == 0.0  # a test double costs nothing
        second = await llm.complete(LLMRequest(messages=_after_tools(first), tools=tools))
        assert second.content == "It is 09:00 in UTC and 1 + 2 = 3."
        assert second.tool_calls == ()


async def test_the_server_answers_with_the_wire_names_it_was_sent(script: Path) -> None:
    tools = [
        {"type": "function", "function": {"name": "time__get_current_time", "parameters": {}}},
        {"type": "function", "function": {"name": "calc__add", "parameters": {}}},
    ]
    async with ReplayServer.from_file(script) as server, httpx.AsyncClient() as http:
        reply = await http.post(
            f"{server.url}/chat/completions", json={"messages": [USER], "tools": tools}
        )
    body = reply.json()
    assert reply.headers["x-replay-model"] == "test double"
    assert body["model"] == REPLAY_MODEL_NAME
    names = [c["function"]["name"] for c in body["choices"][0]["message"]["tool_calls"]]
    assert names == ["time__get_current_time", "calc__add"]


async def test_names_needing_a_hashed_wire_form_round_trip_through_the_server(
    litellm: Any, tmp_path: Path
) -> None:
    odd = ToolSpec(
        name="files.read file", source="files", description="d", input_schema={"type": "object"}
    )
    twin = ToolSpec(
        name="files__read_file", source="x", description="d", input_schema={"type": "object"}
    )
    path = tmp_path / "s.yaml"
    path.write_text(
        "turns:\n  - tool_calls: [{name: 'files.read file'}, {name: files__read_file}]\n"
    )
    async with open_llm(f"replay:{path}") as llm:
        response = await llm.complete(LLMRequest(messages=[USER], tools=[odd, twin]))
    assert [c.name for c in response.tool_calls] == ["files.read file", "files__read_file"]


async def test_a_failing_match_fails_the_call_with_a_message_saying_so(
    litellm: Any, tmp_path: Path
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("turns:\n  - match: Paris\n    content: Bonjour\n")
    async with ReplayServer.from_file(path) as server:
        llm = LiteLLMClient(
            "openai/replay", api_base=server.url, api_key="replay", tool_calling="native"
        )
        with pytest.raises(
            LLMError, match=r"turn 1 expects the last user/tool message to match 'Paris'"
        ):
            await llm.complete(LLMRequest(messages=[USER]))
        assert server.requests_served == 1  # a script mismatch is not retried


async def test_running_past_the_end_of_the_script_fails_clearly(litellm: Any, script: Path) -> None:
    conversation = [
        USER,
        {"role": "assistant", "content": "a"},
        USER,
        {"role": "assistant", "content": "b"},
        USER,
    ]
    async with open_llm(f"replay:{script}") as llm:
        with pytest.raises(LLMError, match=r"has 2 turn\(s\) but the model was called for turn 3"):
            await llm.complete(LLMRequest(messages=conversation))


async def test_scripted_malformed_arguments_reach_the_client_as_a_parse_error(
    litellm: Any, tmp_path: Path
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("turns:\n  - tool_calls: [{name: calc.add, arguments: '{\"a\": 1,'}]\n")
    async with open_llm(f"replay:{path}") as llm:
        [call] = (await llm.complete(LLMRequest(messages=[USER], tools=[CALC_TOOL]))).tool_calls
    assert (call.name, call.arguments, call.raw_arguments) == ("calc.add", None, '{"a": 1,')
    assert call.parse_error is not None


async def test_delay_s_holds_the_answer_back(litellm: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("turns:\n  - {content: late, delay_s: 0.3}\n")
    async with open_llm(f"replay:{path}") as llm:
        started = time.perf_counter()
        assert (await llm.complete(LLMRequest(messages=[USER]))).content == "late"
    assert time.perf_counter() - started >= 0.3


async def test_concurrent_conversations_each_get_their_own_turn(litellm: Any, script: Path) -> None:
    async with open_llm(f"replay:{script}") as llm:
        first = await llm.complete(LLMRequest(messages=[USER], tools=[TIME_TOOL, CALC_TOOL]))
        later = _after_tools(first)
        results = await asyncio.gather(
            *(
                llm.complete(
                    LLMRequest(messages=[USER] if i % 2 else later, tools=[TIME_TOOL, CALC_TOOL])
                )
                for i in range(20)
            )
        )
    assert [bool(r.tool_calls) for r in results] == [bool(i % 2) for i in range(20)]


async def test_streaming_yields_text_deltas_then_the_response(litellm: Any, script: Path) -> None:
    async with open_llm(f"replay:{script}") as llm:
        items = [
            i async for i in llm.stream(LLMRequest(messages=[USER], tools=[TIME_TOOL, CALC_TOOL]))
        ]
        [first] = items
        assert isinstance(first, LLMResponse)
        assert [(c.name, c.arguments) for c in first.tool_calls] == [
            ("time.get_current_time", {"timezone": "UTC"}),
            ("calc.add", {"a": 1, "b": 2}),
        ]
        items = [
            i async for i in llm.stream(LLMRequest(messages=_after_tools(first), tools=[TIME_TOOL]))
        ]
    deltas = [i.text for i in items if isinstance(i, TextDelta)]
    final = items[-1]
    assert len(deltas) > 1 and "".join(deltas) == "It is 09:00 in UTC and 1 + 2 = 3."
    assert isinstance(final, LLMResponse) and final.content == "".join(deltas)
    assert final.usage.total_tokens > 0


async def test_the_server_stops_listening_on_exit(script: Path) -> None:
    async with ReplayServer.from_file(script) as server:
        port = server.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


async def test_no_model_and_no_provider_key_means_the_default_replay_script(
    litellm: Any, script: Path, no_provider_keys: None
) -> None:
    async with open_llm(None, default_script=script) as llm:
        assert llm.is_replay
        assert (
            await llm.complete(LLMRequest(messages=[USER], tools=[TIME_TOOL, CALC_TOOL]))
        ).tool_calls


async def test_no_model_with_a_provider_key_set_asks_for_model(
    script: Path, no_provider_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    with pytest.raises(UserError, match=r"ANTHROPIC_API_KEY.*pass --model") as caught:
        async with open_llm(None, default_script=script):
            pass
    assert "sk-ant-secret" not in str(caught.value)
    async with open_llm("replay", default_script=script) as llm:  # explicit replay still works
        assert llm.is_replay


async def test_a_litellm_model_name_gives_a_plain_client_without_a_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    async with open_llm("anthropic/claude-sonnet-4-20250514") as llm:
        assert isinstance(llm, LiteLLMClient)
        assert (llm.model, llm.is_replay, llm.api_base) == (
            "anthropic/claude-sonnet-4-20250514",
            False,
            None,
        )


async def test_a_litellm_model_without_its_api_key_is_a_user_error_naming_the_variable(
    no_provider_keys: None,
) -> None:
    with pytest.raises(UserError, match="needs ANTHROPIC_API_KEY in the environment"):
        async with open_llm("anthropic/claude-sonnet-4-20250514"):
            pass


async def test_a_missing_replay_script_is_a_replay_script_error_naming_the_file(
    tmp_path: Path,
) -> None:
    from penguiflow_agents.exceptions import ReplayScriptError

    with pytest.raises(
        ReplayScriptError, match=r"nope\.yaml: the file does not exist; check the path"
    ):
        async with open_llm(f"replay:{tmp_path / 'nope.yaml'}"):
            pass


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("turns:\n  - {content: hi, colour: red}\n", "turns.0.colour", "unknown key"),
        (
            "turns:\n  - {match: '(', content: hi}\n",
            "turns.0.match",
            "not a valid regular expression",
        ),
        ("turns: []\n", "turns", "at least 1"),
        ("{}\n", "turns", "this key is required"),
        ("turns:\n  - {match: x}\n", "turns.0", "a turn needs `content`"),
        (
            "turns:\n  - tool_calls: [{arguments: {}}]\n",
            "turns.0.tool_calls.0.name",
            "this key is required",
        ),
        (
            "turns:\n  - {content: hi, delay_s: -1}\n",
            "turns.0.delay_s",
            "greater than or equal to 0",
        ),
        ("turns: [\n", None, "not valid YAML at line"),
        ("- just a list\n", None, "top level must be a mapping"),
    ],
)
def test_invalid_scripts_are_refused_naming_file_key_and_reason(
    tmp_path: Path, text: str, key: str | None, reason: str
) -> None:
    from penguiflow_agents.exceptions import ReplayScriptError

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ReplayScriptError) as caught:
        load_replay_script(path)
    assert caught.value.file == str(path)
    assert caught.value.key == key
    assert reason in caught.value.reason
