"""Typed final answers: ``ReactPlanner(output_type=Model)`` gives ``RunResult.output``.

Through the final tool (a model without native structured output) and through the
request's ``output_schema`` (one with it); a bad answer is repaired like bad tool
arguments; the typed answer survives a pause, a resume in a new planner over the
same SQLite store, and a second resume of the finished run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import SQLiteStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

from .conftest import tool_messages


class Weather(BaseModel):
    """The weather in one city."""

    city: str
    celsius: float = Field(ge=-90, le=60)
    sunny: bool


GOOD = {"city": "Oslo", "celsius": 4.5, "sunny": False}


async def test_the_final_tool_carries_the_answer_and_a_bad_one_is_repaired(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "math.add", "arguments": {"a": 2, "b": 2}}]},
            {
                "tool_calls": [
                    {"name": "final_answer", "arguments": {"city": "Oslo", "celsius": 99}}
                ]
            },
            {
                "match": "invalid_output",
                "tool_calls": [{"name": "final_answer", "arguments": GOOD}],
            },
        ]
    )
    planner = ReactPlanner(llm=llm, registry=registry, output_type=Weather)
    result = await planner.run("weather in Oslo?", headers=headers)

    assert result.status == "completed", result.error
    assert isinstance(result.output, Weather) and result.output == Weather(**GOOD)
    assert json.loads(result.answer or "") == GOOD
    # The model was offered the final tool with the model's schema, next to the registry's tools.
    offered = {s.name: s for s in llm.requests[0].tools}
    assert "math.add" in offered and offered["final_answer"].input_schema["required"] == [
        "city",
        "celsius",
        "sunny",
    ]
    assert llm.requests[0].output_schema is None
    # The bad answer came back as that call's tool message: what is wrong, and the schema.
    seen = tool_messages(llm.requests[2])["call_2_1"]
    assert seen.startswith("Error (invalid_output)")
    assert "$.celsius: Input should be less than or equal to 60" in seen
    assert "$.sunny: Field required" in seen
    assert '"required": ["city", "celsius", "sunny"]' in seen
    # The final tool is not a tool call of the trajectory.
    assert [s.tool for s in result.steps] == ["math.add"]
    assert result.to_dict()["output"] == GOOD


async def test_prose_instead_of_the_final_tool_is_asked_again_and_counts_as_an_error(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM([{"content": "It is cold in Oslo."}, {"content": "Still cold."}])
    planner = ReactPlanner(
        llm=llm, registry=registry, output_type=Weather, max_consecutive_errors=2
    )
    result = await planner.run("weather in Oslo?", headers=headers)

    assert result.status == "failed" and result.output is None
    assert "max_consecutive_errors=2" in (result.error or "")
    told = llm.requests[1].messages[-1]
    assert told["role"] == "user"
    assert "must be given by calling 'final_answer'" in told["content"]


async def test_a_model_with_native_structured_output_gets_the_schema_and_answers_json(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [
            {"content": '{"city": "Oslo", "celsius": "cold", "sunny": false}'},
            {"match": "invalid_output", "content": "```json\n" + json.dumps(GOOD) + "\n```"},
        ],
        structured_output=True,
    )
    planner = ReactPlanner(llm=llm, registry=registry, output_type=Weather)
    result = await planner.run("weather in Oslo?", headers=headers)

    assert result.status == "completed", result.error
    assert result.output == Weather(**GOOD)
    wanted = llm.requests[0].output_schema
    assert wanted is not None and wanted.name == "Weather"
    assert wanted.schema["properties"]["celsius"]["maximum"] == 60
    assert wanted.description == "The weather in one city."
    assert "final_answer" not in {s.name for s in llm.requests[0].tools}
    told = llm.requests[1].messages[-1]
    assert told["role"] == "user" and "$.celsius: Input should be a valid number" in told["content"]


async def test_final_tool_sent_with_other_calls_is_refused_and_the_others_run(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [
            {
                "tool_calls": [
                    {"name": "math.add", "arguments": {"a": 1, "b": 2}, "id": "c-add"},
                    {"name": "final_answer", "arguments": GOOD, "id": "c-final"},
                ]
            },
            {"tool_calls": [{"name": "final_answer", "arguments": GOOD}]},
        ]
    )
    result = await ReactPlanner(llm=llm, registry=registry, output_type=Weather).run(
        "x", headers=headers
    )
    assert result.status == "completed" and result.output == Weather(**GOOD)
    seen = tool_messages(llm.requests[1])
    assert seen["c-add"] == "3"
    assert "called together with other tools" in seen["c-final"]


def test_output_type_must_be_a_pydantic_model(registry: ToolRegistry) -> None:
    with pytest.raises(UserError, match="output_type must be a pydantic model class"):
        ReactPlanner(llm=ScriptedLLM([]), registry=registry, output_type=dict)  # type: ignore[arg-type]


# -- across a pause --------------------------------------------------------------------------

POLICY = {
    "tenant": "acme",
    "allow": ["files.*"],
    "approvals": [{"match": "files.write", "approvers": ["role:admin"]}],
}
ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])


@tool
async def write(path: str, text: str) -> str:
    """Write a text file."""
    return f"wrote {len(text)} characters to {path}"


def _planner(store: SQLiteStore, llm: ScriptedLLM) -> ReactPlanner:
    registry = ToolRegistry()
    registry.add_functions(write, source="files")
    return ReactPlanner(
        llm=llm,
        registry=registry,
        store=store,
        policies=PolicySet.from_documents([POLICY]),
        output_type=Weather,
    )


def _turns() -> list[Any]:
    return [
        {"tool_calls": [{"name": "files.write", "arguments": {"path": "/w", "text": "x"}}]},
        {"tool_calls": [{"name": "final_answer", "arguments": {"city": "Oslo"}}]},
        {"tool_calls": [{"name": "final_answer", "arguments": GOOD}]},
    ]


async def test_the_typed_answer_survives_a_pause_and_a_resume_in_another_planner(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    first = SQLiteStore(path)
    paused = await _planner(first, ScriptedLLM(_turns())).run("write, then weather", headers=ALICE)
    assert paused.status == "paused" and paused.output is None
    await ApprovalService(first, PolicySet.from_documents([POLICY])).decide(
        tenant="acme",
        approval_id=paused.pending_approvals[0].id,
        decision="approve",
        principal="bob",
        roles=["admin"],
    )
    await first.aclose()

    # Another planner (as in another process) over the same database resumes the run.
    second = SQLiteStore(path)
    planner = _planner(second, ScriptedLLM(_turns()))
    done = await planner.resume(paused.run_id, headers=ALICE)
    assert done.status == "completed", done.error
    assert isinstance(done.output, Weather) and done.output == Weather(**GOOD)
    # Resuming the finished run again reads the stored result: typed again.
    again = await planner.resume(paused.run_id, headers=ALICE)
    assert isinstance(again.output, Weather) and again.output == done.output
    await second.aclose()


async def test_an_empty_turn_of_a_typed_run_is_reminded_of_the_final_tool(
    registry: ToolRegistry, headers: Headers
) -> None:
    llm = ScriptedLLM(
        [{"content": ""}, {"tool_calls": [{"name": "final_answer", "arguments": GOOD}]}]
    )
    result = await ReactPlanner(llm=llm, registry=registry, output_type=Weather).run(
        "x", headers=headers
    )
    assert result.status == "completed" and result.output == Weather(**GOOD)
    (told,) = [
        m["content"]
        for m in llm.requests[1].messages
        if m["role"] == "user" and str(m["content"]).startswith("Error (empty_turn)")
    ]
    assert "give your final answer by calling 'final_answer'" in told


async def test_a_streamed_typed_run_ends_with_the_instance(
    registry: ToolRegistry, headers: Headers
) -> None:
    from penguiflow_agents.planner import FinalAnswer, RunFinished

    llm = ScriptedLLM([{"tool_calls": [{"name": "final_answer", "arguments": GOOD}]}])
    planner = ReactPlanner(llm=llm, registry=registry, output_type=Weather)
    events = [e async for e in planner.stream("x", headers=headers)]
    final = [e for e in events if isinstance(e, FinalAnswer)]
    assert [json.loads(e.answer) for e in final] == [GOOD]
    last = events[-1]
    assert isinstance(last, RunFinished) and last.result.output == Weather(**GOOD)
