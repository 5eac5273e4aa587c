"""The chat-completions translation: what a request becomes, what a run's result becomes.

The shapes are checked with the ``openai`` package's own models, so a field
the SDK needs (or types differently) fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from penguiflow_agents.llm._types import Usage
from penguiflow_agents.planner import (
    FinalAnswer,
    LLMResponded,
    PendingApproval,
    RunFinished,
    RunResult,
    StepStarted,
    TextChunk,
)
from penguiflow_agents.server._openai_wire import (
    ChunkStream,
    WireError,
    chat_completion,
    parse_request,
    to_conversation,
)


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "default", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_fields_real_clients_send_are_accepted_and_unknown_ones_ignored() -> None:
    request = parse_request(
        _body(
            temperature=0.2,
            top_p=1,
            user="end-user-7",
            stream=True,
            stream_options={"include_usage": True},
            tool_choice="auto",
            parallel_tool_calls=True,
            seed=3,
            metadata={"a": "b"},
            response_format={"type": "text"},
            frequency_penalty=0,
        )
    )
    assert request.stream and request.include_usage and request.user == "end-user-7"


def test_the_conversation_before_the_last_user_message_becomes_plain_text_history() -> None:
    request = parse_request(
        {
            "model": "default",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What time "},
                        {"type": "text", "text": "is it?"},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "clock", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "09:30"},
                {"role": "assistant", "content": "It is 09:30."},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "  And in Tokyo?  "},
            ],
        }
    )
    conversation = to_conversation(request)
    assert conversation.query == "And in Tokyo?"
    assert conversation.history == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": "(called clock with {})"},
        {"role": "user", "content": "(result of tool call c1) 09:30"},
        {"role": "assistant", "content": "It is 09:30."},
    ]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (
            _body(tools=[{"type": "function", "function": {"name": "f"}}]),
            "tools",
            "client-side tools",
        ),
        (_body(functions=[{"name": "f"}]), "functions", "client-side tools"),
        (_body(tool_choice="required"), "tool_choice", "client-side tool"),
        (_body(n=2), "n", "n=2"),
        (_body(response_format={"type": "json_object"}), "response_format", "'json_object'"),
        ({"model": "default", "messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "Field required"),
        (
            {"model": "default", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "'robot'",
        ),
        (
            {"model": "default", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "5",
        ),
        (_body(stream="maybe"), "stream", "'maybe'"),
    ],
)
def test_a_request_we_cannot_honour_is_refused_naming_the_field(
    body: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(WireError) as caught:
        parse_request(body)
    assert caught.value.param == param
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("messages", "param", "words"),
    [
        (
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
            "messages[1]",
            "role 'assistant'",
        ),
        ([{"role": "user", "content": "   "}], "messages[0]", "empty"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x"}}],
                }
            ],
            "messages[0].content[0]",
            "'image_url' part",
        ),
    ],
)
def test_a_conversation_that_does_not_end_in_a_text_question_is_refused(
    messages: list[dict[str, Any]], param: str, words: str
) -> None:
    with pytest.raises(WireError) as caught:
        to_conversation(parse_request({"model": "default", "messages": messages}))
    assert caught.value.param == param
    assert words in caught.value.message


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(WireError, match="must be a JSON object"):
        parse_request(["model"])


_PENDING = PendingApproval(
    id="apr_1",
    tool="files.write_file",
    arguments={"path": "/shared/x.txt", "content": "y" * 1000},
    approvers=["role:admin"],
    reason="Writes to the shared drive",
)


def test_a_completed_run_is_a_chat_completion_the_sdk_parses() -> None:
    result = RunResult(
        status="completed",
        run_id="r1",
        answer="It is 11:00.",
        usage=Usage(prompt_tokens=7, completion_tokens=3),
    )
    body = chat_completion(result, model="default", created=1)
    parsed = ChatCompletion.model_validate(body)
    assert parsed.id == "chatcmpl-r1"
    assert parsed.choices[0].message.content == "It is 11:00."
    assert parsed.usage is not None and parsed.usage.total_tokens == 10
    assert body["penguiflow"] == {
        "run_id": "r1",
        "status": "completed",
        "pending_approvals": [],
        "error": None,
    }


def test_a_paused_run_answers_with_a_message_naming_the_approval_and_how_to_decide() -> None:
    result = RunResult(status="paused", run_id="r2", pending_approvals=[_PENDING])
    body = chat_completion(result, model="default", created=1)
    text = ChatCompletion.model_validate(body).choices[0].message.content
    assert text is not None
    assert "apr_1" in text and "files.write_file" in text and "role:admin" in text
    assert "/v1/approvals/{id}/decision" in text and "/inbox" in text and "r2" in text
    assert "Writes to the shared drive" in text
    assert "y" * 400 not in text  # long arguments are cut
    assert body["penguiflow"]["pending_approvals"][0]["id"] == "apr_1"


def test_a_failed_run_says_why() -> None:
    result = RunResult(status="failed", run_id="r3", error="the model failed: boom")
    text = chat_completion(result, model="m", created=1)["choices"][0]["message"]["content"]
    assert text == "The run r3 failed: the model failed: boom"


def _chunks(lines: list[str]) -> tuple[list[ChatCompletionChunk], list[str]]:
    chunks, other = [], []
    for line in "".join(lines).split("\n\n"):
        if line.startswith("data: {"):
            chunks.append(ChatCompletionChunk.model_validate(json.loads(line[6:])))
        elif line:
            other.append(line)
    return chunks, other


def test_streamed_text_goes_out_as_deltas_and_the_stream_ends_with_usage_and_done() -> None:
    stream = ChunkStream(run_id="r4", model="default", created=1, include_usage=True)
    result = RunResult(
        status="completed",
        run_id="r4",
        answer="It is 11:00.",
        usage=Usage(prompt_tokens=5, completion_tokens=2),
    )
    lines = stream.start()
    for event in [
        StepStarted(run_id="r4", step=1),
        TextChunk(run_id="r4", text="Let me look. "),
        LLMResponded(
            run_id="r4",
            step=1,
            content="Let me look.",
            tool_calls=(("c1", "clock.now"),),
            usage=Usage(),
            latency_s=0,
        ),
        StepStarted(run_id="r4", step=2),
        TextChunk(run_id="r4", text="It is "),
        TextChunk(run_id="r4", text="11:00."),
        FinalAnswer(run_id="r4", answer="It is 11:00."),
        RunFinished(result=result),
    ]:
        lines += stream.on_event(event)
    chunks, other = _chunks(lines)
    assert other == ["data: [DONE]"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me look. \n\nIt is 11:00."  # the answer is not sent twice
    assert chunks[0].choices[0].delta.role == "assistant"
    last = chunks[-2]
    assert last.choices[0].finish_reason == "stop"
    assert (last.model_extra or {})["penguiflow"]["status"] == "completed"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7
    assert stream.finished


def test_a_model_that_does_not_stream_gets_its_answer_as_one_delta_and_no_usage_unasked() -> None:
    stream = ChunkStream(run_id="r5", model="default", created=1, include_usage=False)
    result = RunResult(status="completed", run_id="r5", answer="Done.")
    lines = stream.start() + stream.on_entry("step_started", {"step": 1}) + stream.finish(result)
    chunks, _ = _chunks(lines)
    assert [c.choices[0].delta.content for c in chunks] == ["", "Done.", None]
    assert all(c.usage is None for c in chunks)


def test_a_paused_stream_ends_with_the_approval_message() -> None:
    stream = ChunkStream(run_id="r6", model="default", created=1, include_usage=False)
    lines = stream.start() + stream.on_entry("tool_call_started", {"tool": "files.write_file"})
    lines += stream.finish(RunResult(status="paused", run_id="r6", pending_approvals=[_PENDING]))
    chunks, other = _chunks(lines)
    assert other == [": calling files.write_file", "data: [DONE]"]
    assert "approval apr_1" in (chunks[1].choices[0].delta.content or "")
    assert (chunks[-1].model_extra or {})["penguiflow"]["pending_approvals"][0][
        "tool"
    ] == "files.write_file"
