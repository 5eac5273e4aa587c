"""Model mistakes become error observations it can repair; too many in a row fail the run."""

from __future__ import annotations

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm._types import LLMResponse
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry

from .conftest import tool_messages


async def test_unknown_tool_is_named_with_the_available_tools_and_the_model_recovers(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "math.multiply", "arguments": {"a": 2, "b": 3}}]},
            {
                "match": "not available",
                "tool_calls": [{"name": "math.add", "arguments": {"a": 2, "b": 3}}],
            },
            {"content": "5"},
        ]
    )
    result = await ReactPlanner(llm=llm, registry=registry).run("2+3", headers=headers)
    assert result.status == "completed" and result.answer == "5"
    seen = tool_messages(llm.requests[1])["call_1_1"]
    assert "'math.multiply' is not available" in seen
    assert "math.add, text.echo, text.big" in seen
    assert [s.outcome for s in result.steps] == ["not_found", "ok"]


async def test_arguments_failing_the_schema_name_the_path_and_show_the_schema(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "math.add", "arguments": {"a": 2, "b": "three"}}]},
            {"tool_calls": [{"name": "math.add", "arguments": {"a": 2, "b": 3}}]},
            {"content": "5"},
        ]
    )
    result = await ReactPlanner(llm=llm, registry=registry).run("2+3", headers=headers)
    assert result.status == "completed"
    seen = tool_messages(llm.requests[1])["call_1_1"]
    assert seen.startswith("Error (invalid_arguments)")
    assert "$.b" in seen and "'three' is not of type 'integer'" in seen
    assert '"required": ["a", "b"]' in seen
    assert result.steps[0].outcome == "invalid_arguments"


async def test_malformed_argument_json_is_quoted_back_with_the_parse_error(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "math.add", "arguments": '{"a": 2, "b": 3'}]},
            {"tool_calls": [{"name": "math.add", "arguments": {"a": 2, "b": 3}}]},
            {"content": "5"},
        ]
    )
    result = await ReactPlanner(llm=llm, registry=registry).run("2+3", headers=headers)
    assert result.status == "completed"
    seen = tool_messages(llm.requests[1])["call_1_1"]
    assert "could not be read" in seen and "not valid JSON" in seen
    assert """You sent: '{"a": 2, "b": 3'""" in seen
    # The conversation keeps what the model really sent.
    sent = llm.requests[1].messages[2]["tool_calls"][0]["function"]["arguments"]
    assert sent == '{"a": 2, "b": 3'


async def test_a_turn_with_neither_calls_nor_text_is_not_passed_off_as_an_answer(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM([LLMResponse(content="   "), {"content": "Real answer."}])
    result = await ReactPlanner(llm=llm, registry=registry).run("q", headers=headers)
    assert result.answer == "Real answer."
    assert "neither a tool call nor an answer" in llm.requests[1].messages[-1]["content"]


async def test_run_fails_after_max_consecutive_errors_with_the_last_reason(
    registry: ToolRegistry, headers: Headers
) -> None:
    bad = {"tool_calls": [{"name": "nope.tool", "arguments": {}}]}
    llm = ScriptedLLM([bad, bad, bad, {"content": "never reached"}])
    planner = ReactPlanner(llm=llm, registry=registry, max_consecutive_errors=3)
    result = await planner.run("q", headers=headers)
    assert result.status == "failed"
    assert result.answer is None
    assert "3 consecutive steps" in (result.error or "")
    assert "'nope.tool' is not available" in (result.error or "")
    assert len(llm.requests) == 3


async def test_a_successful_step_resets_the_error_count(
    registry: ToolRegistry, headers: Headers
) -> None:
    bad = {"tool_calls": [{"name": "nope.tool", "arguments": {}}]}
    good = {"tool_calls": [{"name": "text.echo", "arguments": {"text": "x"}}]}
    llm = ScriptedLLM([bad, bad, good, bad, bad, {"content": "made it"}])
    result = await ReactPlanner(llm=llm, registry=registry, max_consecutive_errors=3).run(
        "q", headers=headers
    )
    assert result.status == "completed" and result.answer == "made it"


async def test_a_step_with_one_good_call_among_bad_ones_is_not_an_error_step(
    registry: ToolRegistry, headers: Headers
) -> None:
    mixed = {
        "tool_calls": [
            {"name": "nope.tool", "arguments": {}},
            {"name": "text.echo", "arguments": {"text": "x"}},
        ]
    }
    llm = ScriptedLLM([mixed, mixed, {"content": "fine"}])
    result = await ReactPlanner(llm=llm, registry=registry, max_consecutive_errors=1).run(
        "q", headers=headers
    )
    assert result.status == "completed"
