"""The texts the planner puts in front of the model: system prompt and observations.

Every observation says what went wrong and what the model can do instead, so
that a model can repair its own mistakes (unknown tool, bad arguments,
malformed JSON) within ``max_consecutive_errors`` turns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "empty_turn",
    "invalid_action",
    "invalid_arguments",
    "malformed_arguments",
    "not_available",
    "render_output",
    "tool_failed",
    "truncate",
    "unknown_outcome",
]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant that can call tools. Call a tool when you need facts or "
    "actions you cannot produce yourself; you may call several tools at once when they do not "
    "depend on each other. Use only the tools you are given, with arguments that match their "
    "schemas. A tool result that starts with 'Error' explains what went wrong: fix the call or "
    "choose another tool. When you have what you need, answer the user directly in plain text."
)

# How much of a malformed arguments text is quoted back to the model.
_RAW_QUOTE_CHARS = 500


def _names(available: Sequence[str]) -> str:
    return ", ".join(available) if available else "none (answer without tools)"


def render_output(output: Any) -> str:
    """A tool's output as the text the model reads."""
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False, default=str)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying so when it was cut."""
    if len(text) <= limit:
        return text
    return (
        f"{text[:limit]}\n[truncated: the result has {len(text)} characters; only the first "
        f"{limit} are shown. Ask for a narrower result if you need the rest.]"
    )


def not_available(name: str, available: Sequence[str]) -> str:
    """Same text for an unknown tool and a tool the caller may not see (no probing)."""
    return (
        f"Error (not_found): tool {name!r} is not available. Available tools: {_names(available)}."
    )


def malformed_arguments(name: str, reason: str, raw: str, schema: Mapping[str, Any] | None) -> str:
    quoted = raw if len(raw) <= _RAW_QUOTE_CHARS else raw[:_RAW_QUOTE_CHARS] + "..."
    text = (
        f"Error (invalid_arguments): the arguments of your call to {name!r} could not be read: "
        f"{reason}. You sent: {quoted!r}. Send the arguments as one JSON object"
    )
    if schema is not None:
        text += f" matching this schema: {json.dumps(schema, ensure_ascii=False, sort_keys=True)}"
    return text + "."


def invalid_arguments(name: str, problem: str, schema: Mapping[str, Any]) -> str:
    return (
        f"Error (invalid_arguments): {problem.rstrip('.')}. Call {name!r} again with arguments "
        f"matching its schema: {json.dumps(schema, ensure_ascii=False, sort_keys=True)}."
    )


def tool_failed(kind: str, message: str | None) -> str:
    return f"Error ({kind}): {message or 'the tool failed without saying why'}"


def empty_turn(available: Sequence[str], answer: str = "answer the user in plain text") -> str:
    """``answer``: how a final answer is given (typed runs: a JSON object, or the final tool)."""
    return (
        "Error (empty_turn): your last reply had neither a tool call nor an answer. Either call "
        f"one of the available tools ({_names(available)}) or {answer}."
    )


def unknown_outcome(name: str, *, approved: bool = False) -> str:
    """A call begun by a process that died mid-call, not run again (the tool is not idempotent)."""
    what = "the approved call" if approved else "the call"
    return (
        f"Error (unknown_outcome): {what} of {name!r} was started earlier by a process that "
        "stopped before it finished, so whether it took effect is unknown. It was not run again "
        "because the tool is not idempotent; check its effect before calling it again."
    )


def invalid_action(reason: str, raw: str, available: Sequence[str]) -> str:
    """A JSON-action reply that is neither a valid tool call nor an answer."""
    quoted = raw if len(raw) <= _RAW_QUOTE_CHARS else raw[:_RAW_QUOTE_CHARS] + "..."
    return (
        f"Error (invalid_action): your reply could not be read as an action: {reason}. "
        f"You sent: {quoted!r}. Available tools: {_names(available)}."
    )


def too_many_calls(name: str, asked: int, cap: int) -> str:
    return (
        f"Error (too_many_calls): the call of {name!r} was not run: your last turn asked for "
        f"{asked} tool calls and at most {cap} run per turn. Ask again in a later turn only for "
        "the calls you still need."
    )


def too_many_approvals(name: str, scope: str, cap: int) -> str:
    return (
        f"Error (too_many_approvals): the call of {name!r} was not run: {scope} already has "
        f"{cap} approval requests waiting for a human. Wait for those decisions before asking "
        "for more gated calls."
    )
