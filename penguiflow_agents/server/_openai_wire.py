"""The OpenAI chat-completions wire format, translated to and from a planner run.

Pure data, no I/O and no FastAPI (the route is in ``_openai``):

- in: ``ChatCompletionRequest`` (pydantic, tolerant: fields real clients send
  and we do not use are accepted and ignored) becomes a ``Conversation``: the
  last message, the user's, is the run's query; the messages before it are its
  history, as plain-text system/user/assistant messages (what a session holds).
  What we cannot honour is refused, not silently dropped: client-side
  ``tools``/``functions`` (our tools run server-side, under the caller's
  policy), ``n`` > 1, non-text content parts, a ``response_format`` other
  than text.
- out: a ``RunResult`` becomes a ``chat.completion`` object; planner events
  become ``chat.completion.chunk`` SSE lines (``ChunkStream``): text deltas as
  the model streams them, then a last chunk with ``finish_reason``, a usage
  chunk when ``stream_options.include_usage`` asked for it, and ``[DONE]``.

Both carry a ``penguiflow`` field: ``{"run_id", "status", "pending_approvals",
"error"}``. A paused run answers with a message that names each approval
(id, tool, who may decide) and how to decide it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from penguiflow_agents.llm._types import Usage
from penguiflow_agents.planner._types import (
    FinalAnswer,
    LLMResponded,
    PendingApproval,
    PlannerEvent,
    RunFinished,
    RunResult,
    StepStarted,
    TextChunk,
    ToolCallStarted,
)

__all__ = [
    "DEFAULT_MODEL",
    "ChatCompletionRequest",
    "ChunkStream",
    "Conversation",
    "WireError",
    "chat_completion",
    "completion_id",
    "parse_request",
    "penguiflow_field",
    "reply_text",
    "to_conversation",
]

# The model name that means "the server's --model".
DEFAULT_MODEL = "default"
# How much of a pending call's JSON arguments the pause message quotes.
_ARGUMENTS_QUOTE_CHARS = 300
# Longest question (as for POST /v1/runs and worker jobs), and longest name in the body.
MAX_QUERY_CHARS = 100_000
MAX_NAME = 256
# Content part types that carry text (Chat Completions and Responses spellings).
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


class WireError(Exception):
    """A request we refuse: ``param`` is the offending field (OpenAI's ``param``)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# -- the request -----------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class EndUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: str = Field(min_length=1, max_length=MAX_NAME)
    roles: list[str] = Field(default_factory=list, max_length=64)


class PenguiflowOptions(BaseModel):
    """Our extension of the body (``extra_body={"penguiflow": {...}}`` in the openai client)."""

    model_config = ConfigDict(extra="forbid")

    user: EndUser | None = None  # as POST /v1/runs "user": needs a key that may act for users


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions`` (the fields we read; others are ignored)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=MAX_NAME)
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=MAX_NAME)
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    # Accepted for compatibility; the server's model settings decide these.
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    penguiflow: PenguiflowOptions | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def parse_request(body: Any) -> ChatCompletionRequest:
    """Validate a decoded JSON body; ``WireError`` names the first bad field."""
    if not isinstance(body, Mapping):
        raise WireError(
            f"the request body must be a JSON object (a chat-completions request), "
            f"got {type(body).__name__}."
        )
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param_of(first.get("loc", ()))
        value = first.get("input")
        shown = "" if first.get("type") == "missing" else f" (got {_quote(value)})"
        raise WireError(
            f"{param or 'the body'}: {first.get('msg', 'is not valid')}{shown}; "
            f"see the chat-completions request format.",
            param=param,
        ) from None
    _refuse_unsupported(request)
    return request


def _param_of(loc: Sequence[Any]) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("str", "list[ContentPart]"):  # union-branch names pydantic adds
            out += f".{part}" if out else str(part)
    return out or None


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    if request.tools or request.functions:
        param = "tools" if request.tools else "functions"
        raise WireError(
            f"{param}: client-side tools are not supported; this server runs its own tools "
            f"server-side under your key's policy (GET /v1/tools lists them): send the "
            f"request without {param!r}.",
            param=param,
        )
    for param, choice in (
        ("tool_choice", request.tool_choice),
        ("function_call", request.function_call),
    ):
        if choice is not None and choice not in ("none", "auto"):
            raise WireError(
                f"{param}: {_quote(choice)} asks for a client-side tool, which this server "
                f"does not support; leave {param} out (or 'auto').",
                param=param,
            )
    if request.n is not None and request.n != 1:
        raise WireError(
            f"n: only one choice per request is supported, got n={request.n!r}.", param="n"
        )
    fmt = request.response_format
    if fmt is not None and fmt.get("type", "text") != "text":
        raise WireError(
            f"response_format: only {{'type': 'text'}} is supported, got "
            f"{_quote(fmt.get('type'))}.",
            param="response_format",
        )


# -- the conversation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    """What a run takes: the question, and the plain-text messages before it."""

    query: str
    history: list[dict[str, Any]]


def to_conversation(request: ChatCompletionRequest) -> Conversation:
    """The last message (the user's) is the query; earlier ones become its history.

    Roles map to what a session holds: ``system``/``developer`` to system,
    ``user`` to user, ``assistant`` to assistant (earlier tool calls written
    out as text), ``tool``/``function`` results to a user message that says
    whose result it is. Messages with no text are left out.
    """
    messages = request.messages
    last = messages[-1]
    where = f"messages[{len(messages) - 1}]"
    if last.role != "user":
        raise WireError(
            f"{where}: the last message must be the user's question, got role {last.role!r}.",
            param=where,
        )
    query = _text(last, len(messages) - 1).strip()
    if not query:
        raise WireError(f"{where}: the user's question is empty; send some text.", param=where)
    if len(query) > MAX_QUERY_CHARS:
        raise WireError(
            f"{where}: the question has {len(query)} characters, more than the "
            f"{MAX_QUERY_CHARS} allowed; send a shorter one.",
            param=where,
        )
    history: list[dict[str, Any]] = []
    for index, message in enumerate(messages[:-1]):
        text = _text(message, index)
        role = message.role
        if role in ("system", "developer"):
            entry = {"role": "system", "content": text}
        elif role == "user":
            entry = {"role": "user", "content": text}
        elif role == "assistant":
            calls = [_describe_call(call) for call in message.tool_calls or ()]
            entry = {"role": "assistant", "content": "\n".join(p for p in [text, *calls] if p)}
        else:
            ref = message.tool_call_id or message.name or "an earlier call"
            entry = {
                "role": "user",
                "content": f"(result of tool call {ref}) {text}" if text else "",
            }
        if entry["content"].strip():
            history.append(entry)
    return Conversation(query=query, history=history)


def _text(message: ChatMessageIn, index: int) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type not in _TEXT_PARTS:
            where = f"messages[{index}].content[{j}]"
            raise WireError(
                f"{where}: only text content is supported, got a {part.type!r} part; send the "
                f"message as text.",
                param=where,
            )
        texts.append(part.text or "")
    return "".join(texts)


def _describe_call(call: Mapping[str, Any]) -> str:
    function = call.get("function")
    function = function if isinstance(function, Mapping) else {}
    name = function.get("name") or call.get("name") or "a tool"
    arguments = function.get("arguments", "")
    return f"(called {name} with {arguments})" if arguments else f"(called {name})"


# -- the response ----------------------------------------------------------------------------


def completion_id(run_id: str) -> str:
    return f"chatcmpl-{run_id}"


def penguiflow_field(result: RunResult) -> dict[str, Any]:
    """The extension field of every answer: the run behind it and what it waits for."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "pending_approvals": [p.to_dict() for p in result.pending_approvals],
        "error": result.error,
    }


def usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def reply_text(result: RunResult) -> str:
    """The assistant's message for a run: its answer, or what it waits for, or why it stopped."""
    if result.status == "completed":
        return result.answer or ""
    if result.status == "paused":
        return pause_text(result.run_id, result.pending_approvals)
    return f"The run {result.run_id} {result.status}: {result.error or 'no reason was recorded.'}"


def pause_text(run_id: str, pending: Sequence[PendingApproval]) -> str:
    lines = ["This needs a human decision before it can go on:"]
    for p in pending:
        if p.kind == "authorization":  # the user logs in to a tool source; no approver
            lines.append(
                f"- authorization {p.id}: {p.tool} needs {p.principal!r} to log in to source "
                f"{p.source!r} (POST /v1/auth/login/{p.source} gives the URL); then "
                f"POST /v1/runs/{run_id}/resume, unless the login callback resumed it."
            )
            continue
        arguments = json.dumps(p.arguments, ensure_ascii=False, sort_keys=True)
        if len(arguments) > _ARGUMENTS_QUOTE_CHARS:
            arguments = arguments[: _ARGUMENTS_QUOTE_CHARS - 3] + "..."
        who = f" by {', '.join(p.approvers)}" if p.approvers else ""
        why = f" ({p.reason})" if p.reason else ""
        lines.append(f"- approval {p.id}: {p.tool} {arguments}, to be decided{who}{why}.")
    lines.append(
        "An approver decides in the approval inbox (/inbox) or with "
        'POST /v1/approvals/{id}/decision {"decision": "approve"} (or "reject" with a '
        f'"reason"); the run {run_id} then resumes on its own, and GET /v1/runs/{run_id} '
        "shows its answer."
    )
    return "\n".join(lines)


def chat_completion(result: RunResult, *, model: str, created: int) -> dict[str, Any]:
    """The ``chat.completion`` object for a run that ended or paused."""
    return {
        "id": completion_id(result.run_id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply_text(result), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_dict(result.usage),
        "penguiflow": penguiflow_field(result),
    }


def sse_data(payload: Mapping[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


class ChunkStream:
    """Planner events in, ``chat.completion.chunk`` SSE text out (one run, one choice).

    ``start()`` first (the assistant role), then ``on_event`` for each planner
    event; the ``RunFinished`` event closes the stream (last chunk, usage when
    asked, ``[DONE]``). Text the model streams goes out as it comes; a model
    that does not stream gets its final answer as one delta. Text of a turn
    that went on to call tools is kept, separated from what follows by a blank
    line. ``error()`` ends a stream the run broke off.
    """

    def __init__(self, *, run_id: str, model: str, created: int, include_usage: bool) -> None:
        self._id = completion_id(run_id)
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._step_text = False  # text streamed in the current model turn
        self._separate = False  # text went out before tool calls: start the next with a break
        self.finished = False

    def _chunk(self, delta: Mapping[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}
            ],
        }
        chunk.update(extra)
        return sse_data(chunk)

    def _content(self, text: str) -> str:
        if self._separate:
            text = "\n\n" + text
            self._separate = False
        return self._chunk({"content": text})

    def start(self) -> list[str]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def on_entry(self, kind: str, data: Mapping[str, Any]) -> list[str]:
        """Lines for one entry of the run's event log (``kind`` as in the SSE events).

        ``paused`` and ``run_finished`` give nothing here: the caller loads the
        run's result and calls ``finish``.
        """
        if kind == "step_started":
            self._step_text = False
        elif kind == "text_delta":
            text = data.get("text")
            if isinstance(text, str) and text:
                self._step_text = True
                return [self._content(text)]
        elif kind == "llm_response":
            if data.get("tool_calls") and self._step_text:
                self._separate = True
        elif kind == "tool_call_started":
            # An SSE comment: clients skip it, curl shows progress, proxies see traffic.
            return [f": calling {data.get('tool')}\n\n"]
        elif kind == "final_answer":
            answer = data.get("answer")
            if not self._step_text and isinstance(answer, str) and answer:
                self._step_text = True
                return [self._content(answer)]
        return []

    def on_event(self, event: PlannerEvent) -> list[str]:
        """Lines for one planner event (a run streamed in this process)."""
        if isinstance(event, StepStarted):
            return self.on_entry("step_started", {})
        if isinstance(event, TextChunk):
            return self.on_entry("text_delta", {"text": event.text})
        if isinstance(event, LLMResponded):
            return self.on_entry("llm_response", {"tool_calls": list(event.tool_calls)})
        if isinstance(event, ToolCallStarted):
            return self.on_entry("tool_call_started", {"tool": event.tool})
        if isinstance(event, FinalAnswer):
            return self.on_entry("final_answer", {"answer": event.answer})
        if isinstance(event, RunFinished):
            return self.finish(event.result)
        return []

    def finish(self, result: RunResult) -> list[str]:
        """The closing lines for a run that ended or paused."""
        out = []
        if result.status != "completed":
            out.append(self._content(reply_text(result)))
        elif not self._step_text and result.answer:  # a source that sent no FinalAnswer
            out.append(self._content(result.answer))
        out.append(self._chunk({}, "stop", penguiflow=penguiflow_field(result)))
        if self._include_usage:
            out.append(
                sse_data(
                    {
                        "id": self._id,
                        "object": "chat.completion.chunk",
                        "created": self._created,
                        "model": self._model,
                        "system_fingerprint": None,
                        "choices": [],
                        "usage": usage_dict(result.usage),
                    }
                )
            )
        out.append(sse_data("[DONE]"))
        self.finished = True
        return out

    def error(self, body: Mapping[str, Any]) -> list[str]:
        """An error object mid-stream (OpenAI clients raise it), then the end."""
        self.finished = True
        return [sse_data(body), sse_data("[DONE]")]
