"""MCP call outcomes as ``ToolResult``s the planner can show the model.

- a result with structured content: the structured content (a JSON object)
  is the output, so the model reads it as JSON once, not as a JSON text inside
  a string; the text blocks are the server's rendering of the same data for
  older clients (the MCP specification says so), and are not repeated;
- a result without structured content: the text of its content blocks is the
  output (non-text blocks are described in one bracketed line each);
- an ``isError`` result: a ``tool_error`` whose message is that text (or the
  structured content as JSON when there is no text), secrets redacted;
- a JSON-RPC error from the server: ``invalid_arguments`` for -32602 (the
  server rejected the arguments), ``tool_error`` for any other code.

``structured`` always keeps the structured content as the server sent it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mcp_types as types

from penguiflow_agents.tools._types import ToolErrorKind, ToolResult, canonical_json

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


def to_tool_result(
    name: str,
    result: types.CallToolResult,
    *,
    latency_s: float,
    redact: Callable[[str], str] = str,
) -> ToolResult:
    """A ``CallToolResult`` as a ``ToolResult`` (``isError`` becomes ``tool_error``).

    ``redact`` cleans the text of an error message (a server may echo a header).
    """
    structured = result.structured_content
    if result.is_error:
        text = content_text(result.content)
        if not text and structured is not None:
            text = canonical_json(structured)
        return ToolResult(
            tool=name,
            ok=False,
            output=None,
            structured=structured,
            error_kind=ToolErrorKind.TOOL_ERROR,
            error=redact(text) if text else f"tool {name!r} reported an error without a message.",
            latency_s=latency_s,
            attempts=1,
        )
    output: Any = structured if structured is not None else content_text(result.content)
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
