"""Replay scripts: the model's turns in order (the format is fixed in DESIGN.md).

```yaml
turns:
  - tool_calls:
      - {name: time.get_current_time, arguments: {timezone: UTC}}
  - match: "UTC"
    content: "It is morning in London."
```

A turn may instead branch on how the conversation went: ``branches`` is a
list of turns, and the first whose ``match`` fits the last user/tool message
(or that has no ``match``: the default) is played::

    - branches:
        - match: '"bytes":'                 # the write ran
          content: "The note is saved."
        - match: "^Error \\(rejected\\)"
          content: "I did not save the note: the write was rejected."
        - content: "I could not save the note."

Both the replay model server and the in-process ``ScriptedLLM`` read turns of
this shape. Turns are picked by position: the n-th model call of a
conversation (n = assistant messages already in it) gets the n-th turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from penguiflow_agents._yaml import read_yaml_file
from penguiflow_agents.exceptions import ReplayScriptError
from penguiflow_agents.llm._args import parse_tool_arguments
from penguiflow_agents.llm._types import ChatMessage, LLMResponse, LLMToolCall, Usage

__all__ = [
    "ReplayScript",
    "ScriptToolCall",
    "ScriptTurn",
    "ScriptUsage",
    "choose_turn",
    "describe_validation_error",
    "last_user_or_tool_text",
    "load_replay_script",
    "match_failure",
    "past_end_message",
    "turn_index",
]

# How much of a message a match-failure error quotes.
_QUOTE_CHARS = 200


class ScriptToolCall(BaseModel):
    """One tool call of a turn, with the canonical dotted tool name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    # A mapping, or raw text sent as is (to script malformed JSON on purpose).
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    id: str | None = None


class ScriptUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class ScriptTurn(BaseModel):
    """One assistant turn: content, tool calls, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str | None = None  # regex searched in the last user/tool message
    # Alternatives: the first whose match fits (or with no match) is played instead.
    branches: list[ScriptTurn] | None = None
    content: str | None = None
    tool_calls: list[ScriptToolCall] | None = None
    delay_s: float = Field(default=0.0, ge=0.0, le=600.0)  # added latency (benchmarks, deadlines)
    usage: ScriptUsage | None = None

    @field_validator("match")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _says_something(self) -> ScriptTurn:
        if self.branches is not None:
            if not self.branches:
                raise ValueError("`branches` needs at least one turn")
            if self.content is not None or self.tool_calls or self.match is not None:
                raise ValueError(
                    "a turn with `branches` has no `match`, `content` or `tool_calls` of its own; "
                    "put them in its branches"
                )
            return self
        if self.content is None and not self.tool_calls:
            raise ValueError(
                "a turn needs `content`, at least one entry in `tool_calls`, or `branches`"
            )
        return self

    def call_id(self, turn: int, index: int) -> str:
        """The id of the ``index``-th call of this turn (turn is 0-based)."""
        call = (self.tool_calls or [])[index]
        return call.id or f"call_{turn + 1}_{index + 1}"

    def to_response(self, turn: int, *, model: str) -> LLMResponse:
        """This turn as the response an adapter would return (canonical names)."""
        calls: list[LLMToolCall] = []
        for i, call in enumerate(self.tool_calls or []):
            raw = call.arguments if isinstance(call.arguments, str) else ""
            args, error = parse_tool_arguments(call.arguments)
            calls.append(
                LLMToolCall(
                    id=self.call_id(turn, i),
                    name=call.name,
                    arguments=args,
                    raw_arguments=raw,
                    parse_error=error,
                )
            )
        usage = Usage(**self.usage.model_dump()) if self.usage else Usage()
        return LLMResponse(
            content=self.content,
            tool_calls=tuple(calls),
            usage=usage,
            model=model,
            finish_reason="tool_calls" if calls else "stop",
        )


class ReplayScript(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    turns: list[ScriptTurn] = Field(min_length=1)


def choose_turn(turn: ScriptTurn, index: int, text: str) -> ScriptTurn | str:
    """The turn to play at ``index`` (0-based) after the message ``text``: ``turn`` itself
    when its ``match`` fits, else the first fitting branch; or why none fits (a sentence)."""
    if turn.branches is None:
        if turn.match is not None and re.search(turn.match, text) is None:
            return match_failure(index, turn.match, text)
        return turn
    for branch in turn.branches:
        if branch.match is None or re.search(branch.match, text) is not None:
            return choose_turn(branch, index, text)
    patterns = ", ".join(repr(b.match) for b in turn.branches)
    quoted = text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."
    return (
        f"replay script turn {index + 1}: no branch matches the last user/tool message "
        f"{quoted!r} (branches: {patterns}); add a branch without `match` as the default."
    )


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """The first error of ``exc`` as (dotted key, reason sentence)."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    reason = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        reason = "unknown key; a turn has match, content, tool_calls, branches, delay_s and usage"
    elif first["type"] == "missing":
        reason = "this key is required"
    return key, reason


def load_replay_script(path: str | Path) -> ReplayScript:
    """Read and validate a replay script; a bad one raises ``ReplayScriptError``."""
    file = str(path)
    data = read_yaml_file(path, ReplayScriptError)
    if not isinstance(data, Mapping):
        raise ReplayScriptError(
            file,
            None,
            f"the top level must be a mapping with a `turns` list, got {type(data).__name__}",
        )
    try:
        return ReplayScript.model_validate(data)
    except ValidationError as exc:
        key, reason = describe_validation_error(exc)
        raise ReplayScriptError(file, key, reason) from None


def turn_index(messages: Sequence[ChatMessage]) -> int:
    """0-based index of the turn to play: the assistant messages already in the conversation."""
    return sum(1 for m in messages if m.get("role") == "assistant")


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
        return "".join(str(p) for p in parts)
    return str(content)


def last_user_or_tool_text(messages: Sequence[ChatMessage]) -> str:
    """Text of the last user or tool message ("" when there is none)."""
    for message in reversed(messages):
        if message.get("role") in ("user", "tool"):
            return _text_of(message.get("content"))
    return ""


def match_failure(turn: int, pattern: str, text: str) -> str:
    """The error sentence for a turn whose ``match`` fails (turn is 0-based)."""
    quoted = text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."
    return (
        f"replay script turn {turn + 1} expects the last user/tool message to match {pattern!r}, "
        f"but it is {quoted!r}; the conversation went another way than the script (fix the "
        f"script's `match` or the question)."
    )


def past_end_message(turn: int, total: int) -> str:
    """The error sentence for a call past the script's last turn (turn is 0-based)."""
    return (
        f"replay script has {total} turn(s) but the model was called for turn {turn + 1}; "
        f"add turns to the script (or end it with a `content` turn)."
    )
