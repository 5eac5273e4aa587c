"""Tool calling for models without native function calling: JSON actions.

The tools are described in the system prompt and the model answers one JSON
object, ``{"tool_calls": [{"name": ..., "arguments": {...}}]}`` or
``{"answer": "..."}``, which is parsed into the same ``LLMResponse`` a
native tool call gives. Names stay canonical here (they are plain text).
Earlier tool calls and results in the conversation are rewritten as that JSON
and as user messages, since such models know no ``tool`` role.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from penguiflow_agents.llm._args import parse_tool_arguments
from penguiflow_agents.llm._types import ChatMessage, LLMToolCall
from penguiflow_agents.tools._types import ToolSpec

__all__ = ["INVALID_ACTION_NAME", "json_action_messages", "parse_json_action"]

# The tool name reported when the reply is not a valid JSON action; no tool has
# it, so the planner answers with an error observation that shows the reason.
INVALID_ACTION_NAME = "invalid_json_action"

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)

_INSTRUCTIONS = """\
You can use tools. Reply with exactly one JSON object and nothing else:
- to call one or more tools: {"tool_calls": [{"name": "<tool name>", "arguments": {...}}]}
- to give the final answer: {"answer": "<your answer>"}
Tool results come back in the next user message.

Tools (name, description, JSON Schema of the arguments):"""


def _tools_prompt(tools: Sequence[ToolSpec]) -> str:
    lines = [_INSTRUCTIONS]
    for spec in tools:
        schema = json.dumps(dict(spec.input_schema), separators=(",", ":"), sort_keys=True)
        lines.append(f"- {spec.name}: {spec.description.strip()}\n  arguments: {schema}")
    return "\n".join(lines)


def _arguments_value(raw: Any) -> Any:
    if isinstance(raw, str):
        args, _ = parse_tool_arguments(raw)
        return args if args is not None else raw
    return raw


def json_action_messages(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
) -> list[ChatMessage]:
    """The conversation rewritten for a model that answers JSON actions."""
    prompt = _tools_prompt(tools)
    out: list[ChatMessage] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name
    for message in messages:
        role = message.get("role")
        if role == "system":
            out.append(
                {
                    "role": "system",
                    "content": f"{message.get('content') or ''}\n\n{prompt}".lstrip(),
                }
            )
            prompt = ""
        elif role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function", {})
                names[str(call.get("id"))] = str(function.get("name"))
                calls.append(
                    {
                        "name": function.get("name"),
                        "arguments": _arguments_value(function.get("arguments")),
                    }
                )
            out.append(
                {
                    "role": "assistant",
                    "content": json.dumps({"tool_calls": calls}, ensure_ascii=False),
                }
            )
        elif role == "assistant":
            content = message.get("content") or ""
            out.append(
                {
                    "role": "assistant",
                    "content": json.dumps({"answer": content}, ensure_ascii=False),
                }
            )
        elif role == "tool":
            call_id = str(message.get("tool_call_id"))
            name = message.get("name") or names.get(call_id, call_id)
            out.append(
                {
                    "role": "user",
                    "content": f"Result of tool call {call_id} ({name}):\n{message.get('content')}",
                }
            )
        else:
            out.append({"role": role, "content": message.get("content")})
    if prompt:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def _invalid(call_id: str, raw: str, reason: str) -> tuple[str | None, list[LLMToolCall]]:
    error = (
        f"{reason}; reply with one JSON object, "
        '{"tool_calls": [{"name": ..., "arguments": {...}}]} or {"answer": "..."}'
    )
    return None, [
        LLMToolCall(
            id=call_id,
            name=INVALID_ACTION_NAME,
            arguments=None,
            raw_arguments=raw,
            parse_error=error,
        )
    ]


def _load_object(text: str) -> Any:
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            raise
        return json.loads(text[start : end + 1])


def parse_json_action(text: str | None, *, turn: int) -> tuple[str | None, list[LLMToolCall]]:
    """Parse the model's reply into (content, tool calls); ``turn`` (1-based) makes call ids.

    A reply without any JSON object is taken as the answer in prose; a reply
    with broken JSON or a wrong shape becomes one call of the non-existent
    tool ``invalid_json_action`` whose ``parse_error`` says what is wrong.
    """
    raw = (text or "").strip()
    if "{" not in raw:
        return raw, []
    first_id = f"call_{turn}_1"
    try:
        value = _load_object(raw)
    except json.JSONDecodeError as exc:
        return _invalid(first_id, raw, f"the reply is not valid JSON ({exc.msg})")
    if not isinstance(value, Mapping):
        return _invalid(first_id, raw, "the reply is not a JSON object")
    if "tool_calls" in value:
        entries = value["tool_calls"]
        if not isinstance(entries, list) or not entries:
            return _invalid(first_id, raw, "`tool_calls` must be a non-empty list")
        calls: list[LLMToolCall] = []
        for i, entry in enumerate(entries):
            call_id = f"call_{turn}_{i + 1}"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                return _invalid(call_id, raw, f"tool call {i + 1} needs a string `name`")
            arguments = entry.get("arguments", {})
            raw_args = (
                arguments
                if isinstance(arguments, str)
                else json.dumps(arguments, ensure_ascii=False)
            )
            args: dict[str, Any] | None = None
            error: str | None = "the arguments must be a JSON object"
            if isinstance(arguments, str | Mapping):
                args, error = parse_tool_arguments(arguments)
            calls.append(
                LLMToolCall(
                    id=call_id,
                    name=entry["name"],
                    arguments=args,
                    raw_arguments=raw_args,
                    parse_error=error,
                )
            )
        return None, calls
    if "answer" in value:
        answer = value["answer"]
        return (answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)), []
    return _invalid(first_id, raw, "the JSON object has neither `tool_calls` nor `answer`")
