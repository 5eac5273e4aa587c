"""Tool-call arguments as the model sent them: JSON text -> a mapping, or why not."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["parse_tool_arguments"]

_JSON_KINDS: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def parse_tool_arguments(
    raw: str | Mapping[str, Any] | None,
) -> tuple[dict[str, Any] | None, str | None]:
    """Parse the model's arguments text.

    Returns ``(arguments, None)`` for a JSON object (an empty or missing text
    counts as ``{}``, as several providers send it for calls without
    arguments), and ``(None, reason)`` when the text is not a JSON object.
    """
    if raw is None:
        return {}, None
    if isinstance(raw, Mapping):
        return dict(raw), None
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return (
            None,
            f"the arguments are not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
        )
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        return None, f"the arguments must be a JSON object, got a JSON {kind}"
    return value, None
