"""ScriptedLLM: the in-process scripted model users test their agents with."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from penguiflow_agents.exceptions import LLMError, UserError
from penguiflow_agents.llm import LLMClient, LLMRequest, LLMResponse, TextDelta
from penguiflow_agents.testing.scripted_llm import ScriptedLLM

TOOL_TURN = {"tool_calls": [{"name": "time.get_current_time", "arguments": {"timezone": "UTC"}}]}
ANSWER_TURN = {"match": "UTC", "content": "It is morning in London."}


def _request(*messages: dict[str, object]) -> LLMRequest:
    return LLMRequest(messages=list(messages))


USER = {"role": "user", "content": "What time is it in London?"}
ASSISTANT_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1_1",
            "type": "function",
            "function": {"name": "time.get_current_time", "arguments": "{}"},
        }
    ],
}
TOOL_RESULT = {
    "role": "tool",
    "tool_call_id": "call_1_1",
    "content": '{"timezone": "UTC", "time": "09:00"}',
}


def test_scripted_llm_is_an_llm_client() -> None:
    assert isinstance(ScriptedLLM([ANSWER_TURN]), LLMClient)


async def test_turns_are_played_by_the_number_of_assistant_messages() -> None:
    llm = ScriptedLLM([TOOL_TURN, ANSWER_TURN])
    first = await llm.complete(_request(USER))
    assert first.content is None
    assert first.finish_reason == "tool_calls"
    [call] = first.tool_calls
    assert (call.id, call.name, call.arguments, call.parse_error) == (
        "call_1_1",
        "time.get_current_time",
        {"timezone": "UTC"},
        None,
    )
    second = await llm.complete(_request(USER, ASSISTANT_CALL, TOOL_RESULT))
    assert second.content == "It is morning in London."
    assert second.tool_calls == ()
    assert second.finish_reason == "stop"
    assert [len(r.messages) for r in llm.requests] == [1, 3]


async def test_a_resumed_conversation_continues_on_a_fresh_instance() -> None:
    """Stateless: a new instance given a conversation with one assistant turn plays turn 2."""
    resumed = ScriptedLLM([TOOL_TURN, ANSWER_TURN])
    response = await resumed.complete(_request(USER, ASSISTANT_CALL, TOOL_RESULT))
    assert response.content == "It is morning in London."


async def test_parallel_calls_in_one_turn_get_distinct_ids() -> None:
    llm = ScriptedLLM(
        [
            {
                "tool_calls": [
                    {"name": "time.get_current_time", "arguments": {"timezone": "UTC"}},
                    {"name": "calc.add", "arguments": {"a": 1, "b": 2}, "id": "mine"},
                ]
            }
        ]
    )
    response = await llm.complete(_request(USER))
    assert [(c.id, c.name) for c in response.tool_calls] == [
        ("call_1_1", "time.get_current_time"),
        ("mine", "calc.add"),
    ]


async def test_raw_text_arguments_that_are_not_json_come_back_with_a_parse_error() -> None:
    llm = ScriptedLLM([{"tool_calls": [{"name": "calc.add", "arguments": '{"a": 1,'}]}])
    [call] = (await llm.complete(_request(USER))).tool_calls
    assert call.arguments is None
    assert call.raw_arguments == '{"a": 1,'
    assert call.parse_error is not None and "not valid JSON" in call.parse_error


async def test_a_failing_match_raises_an_llm_error_that_quotes_pattern_and_message() -> None:
    llm = ScriptedLLM([{"match": "Paris", "content": "x"}])
    with pytest.raises(LLMError, match=r"turn 1 expects .*'Paris'.*What time is it in London"):
        await llm.complete(_request(USER))


async def test_running_past_the_end_of_the_script_raises_a_clear_llm_error() -> None:
    llm = ScriptedLLM([TOOL_TURN])
    with pytest.raises(LLMError, match=r"has 1 turn\(s\) but the model was called for turn 2"):
        await llm.complete(_request(USER, ASSISTANT_CALL, TOOL_RESULT))


async def test_function_turns_sync_and_async_receive_the_request() -> None:
    seen: list[int] = []

    def sync_turn(request: LLMRequest) -> LLMResponse:
        seen.append(len(request.messages))
        return LLMResponse(content="sync")

    async def async_turn(request: LLMRequest) -> LLMResponse:
        seen.append(len(request.messages))
        return LLMResponse(content="async")

    llm = ScriptedLLM([sync_turn, async_turn])
    assert (await llm.complete(_request(USER))).content == "sync"
    assert (await llm.complete(_request(USER, ASSISTANT_CALL, TOOL_RESULT))).content == "async"
    assert seen == [1, 3]


async def test_a_function_turn_may_raise_llm_error_to_simulate_a_provider_failure() -> None:
    def broken(request: LLMRequest) -> LLMResponse:
        raise LLMError("provider down")

    with pytest.raises(LLMError, match="provider down"):
        await ScriptedLLM([broken]).complete(_request(USER))


async def test_response_turns_are_returned_as_given() -> None:
    canned = LLMResponse(content="canned", model="m")
    assert await ScriptedLLM([canned]).complete(_request(USER)) is canned


async def test_usage_from_the_script_is_reported() -> None:
    llm = ScriptedLLM([{"content": "hi", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}])
    response = await llm.complete(_request(USER))
    assert response.usage.total_tokens == 10
    assert response.model == "scripted"


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ({"contnet": "typo"}, r"turn 1: contnet: unknown key"),
        ({"match": "UTC"}, r"turn 1: \(top level\): a turn needs `content`"),
        ({"match": "(", "content": "x"}, r"turn 1: match: '\(' is not a valid regular expression"),
        ({"tool_calls": [{"arguments": {}}]}, r"turn 1: tool_calls\.0\.name: this key is required"),
    ],
)
def test_invalid_turns_are_refused_at_construction_naming_turn_and_key(
    turn: dict[str, object], expected: str
) -> None:
    with pytest.raises(UserError, match=expected):
        ScriptedLLM([turn])


async def test_delay_past_the_request_timeout_raises_llm_error() -> None:
    llm = ScriptedLLM([{"content": "late", "delay_s": 30}])
    with pytest.raises(LLMError, match=r"timeout of 0\.01 s"):
        await llm.complete(LLMRequest(messages=[USER], timeout_s=0.01))


async def test_a_delayed_turn_can_be_cancelled() -> None:
    llm = ScriptedLLM([{"content": "late", "delay_s": 30}])
    task = asyncio.create_task(llm.complete(_request(USER)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stream_yields_text_deltas_then_the_full_response() -> None:
    llm = ScriptedLLM([{"content": "It is morning."}])
    items = [item async for item in llm.stream(_request(USER))]
    deltas = [i.text for i in items if isinstance(i, TextDelta)]
    assert "".join(deltas) == "It is morning."
    assert len(deltas) > 1
    assert isinstance(items[-1], LLMResponse) and items[-1].content == "It is morning."


def test_importing_scripted_llm_does_not_import_litellm() -> None:
    code = (
        "import sys; import penguiflow_agents.testing.scripted_llm; "
        "assert 'litellm' not in sys.modules, 'litellm was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
