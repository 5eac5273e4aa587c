"""MCP call outcomes as ``ToolResult``s the planner can show the model.

- a result with structured content: the structured content (a JSON object)
  is the output, so the model reads it as JSON once, not as a JSON text inside
  a string; the text blocks are the server's rendering of the same data for
  older clients (the MCP specification says so), and are not repeated;
- a result without structured content: the text of its content blocks is the
  output (non-text blocks are described in one bracketed line each);
- image blocks (PNG, JPEG, GIF, WebP) become ``ToolResult.media``, which the
  planner shows to the model as image content, up to ``max_media_bytes`` per
  call (the source's ``max_result_bytes``); the text says which images are
  attached and which were left out, and why;
- an ``isError`` result: a ``tool_error`` whose message is that text (or the
  structured content as JSON when there is no text), secrets redacted;
- a JSON-RPC error from the server: ``invalid_arguments`` for -32602 (the
  server rejected the arguments), ``tool_error`` for any other code.

``structured`` always keeps the structured content as the server sent it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

import mcp_types as types

from penguiflow_agents.tools._types import (
    IMAGE_TYPES,
    ToolErrorKind,
    ToolMedia,
    ToolResult,
    canonical_json,
)

__all__ = ["IMAGE_TYPES", "content_media", "content_text", "error_result", "to_tool_result"]


def content_media(
    blocks: Sequence[Any], max_bytes: int
) -> tuple[tuple[ToolMedia, ...], dict[int, str]]:
    """The images of a result to show the model (at most ``max_bytes`` decoded, in all),
    and for each image block (by index) the line that stands for it in the text."""
    media: list[ToolMedia] = []
    lines: dict[int, str] = {}
    used = 0
    for index, block in enumerate(blocks):
        if not isinstance(block, types.ImageContent):
            continue
        mime = block.mime_type.lower()
        size = len(block.data) * 3 // 4
        if mime not in IMAGE_TYPES:
            lines[index] = (
                f"[image: {mime}, {size} bytes, not shown: models read only PNG, JPEG, GIF and WebP]"
            )
            continue
        try:
            base64.b64decode(block.data, validate=True)
        except (binascii.Error, ValueError):
            lines[index] = f"[image: {mime}, not shown: its data is not valid base64]"
            continue
        if used + size > max_bytes:
            lines[index] = (
                f"[image: {mime}, {size} bytes, not shown: the call's images exceed the source's "
                f"max_result_bytes of {max_bytes}]"
            )
            continue
        used += size
        media.append(ToolMedia(mime_type=mime, data=block.data))
        lines[index] = f"[image {len(media)}: {mime}, {size} bytes, attached as an image]"
    return tuple(media), lines


def content_text(blocks: Sequence[Any], images: dict[int, str] | None = None) -> str:
    """The text of a result's content blocks, one block per line (``images``: the line of
    each image block by index, when the images are shown to the model)."""
    parts: list[str] = []
    for index, block in enumerate(blocks):
        if images is not None and index in images:
            parts.append(images[index])
        elif isinstance(block, types.TextContent):
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
    max_media_bytes: int = 0,
) -> ToolResult:
    """A ``CallToolResult`` as a ``ToolResult`` (``isError`` becomes ``tool_error``).

    ``redact`` cleans the text of an error message (a server may echo a header).
    ``max_media_bytes``: images up to that many bytes (decoded, per call) go to
    ``media``; 0 keeps none (each is described in the text only).
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
    media: tuple[ToolMedia, ...] = ()
    lines: dict[int, str] | None = None
    if max_media_bytes > 0:
        media, lines = content_media(result.content, max_media_bytes)
    output: Any = structured if structured is not None else content_text(result.content, lines)
    return ToolResult(
        tool=name,
        ok=True,
        output=output,
        structured=structured,
        latency_s=latency_s,
        attempts=1,
        media=media,
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
