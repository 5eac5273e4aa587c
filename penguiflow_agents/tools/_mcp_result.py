"""MCP call outcomes as ``ToolResult``s the planner can show the model.

- a result: the text of its content blocks is the output (non-text blocks are
  described in one bracketed line each); structured content is kept in
  ``structured`` and is the output when there is no text;
- an ``isError`` result: a ``tool_error`` whose message is that text;
- a JSON-RPC error from the server: ``invalid_arguments`` for -32602 (the
  server rejected the arguments), ``tool_error`` for any other code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mcp_types as types

from penguiflow_agents.tools._types import ToolErrorKind, ToolResult

__all__ = ["content_text", "error_result", "to_tool_result"]


def content_text(blocks: Sequence[Any]) -> str:
    """The text of a result's content blocks, one block per line."""
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, {len(block.data)} base64 characters]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource: {resource.uri}, {resource.mime_type or 'binary'}]")
        else:
            parts.append(f"[{getattr(block, 'type', 'unknown')} content]")
    return "\n".join(parts)


def to_tool_result(name: str, result: types.CallToolResult, *, latency_s: float) -> ToolResult:
    """A ``CallToolResult`` as a ``ToolResult`` (``isError`` becomes ``tool_error``)."""
    text = content_text(result.content)
    structured = result.structured_content
    if result.is_error:
        return ToolResult(
            tool=name,
            ok=False,
            output=text or None,
            structured=structured,
            error_kind=ToolErrorKind.TOOL_ERROR,
            error=text or f"tool {name!r} reported an error without a message.",
            latency_s=latency_s,
            attempts=1,
        )
    output: Any = text if text or structured is None else structured
    return ToolResult(
        tool=name, ok=True, output=output, structured=structured, latency_s=latency_s, attempts=1
    )


def error_result(
    name: str, code: int, message: str, *, source: str, latency_s: float
) -> ToolResult:
    """A JSON-RPC error answer from the server as a ``ToolResult``."""
    kind = (
        ToolErrorKind.INVALID_ARGUMENTS
        if code == types.INVALID_PARAMS
        else ToolErrorKind.TOOL_ERROR
    )
    return ToolResult.failure(
        name,
        kind,
        f"MCP server of source {source!r} refused the call with JSON-RPC error {code}: {message}",
        latency_s=latency_s,
        attempts=1,
    )
