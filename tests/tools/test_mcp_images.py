"""MCP image results reach a multimodal model as image content (issue #13, item 19).

A real MCP server process (our test server over stdio) returns ``ImageContent``;
the planner runs over ``LiteLLMClient`` with the provider's HTTP endpoint mocked
by respx, and the tests read the request bodies litellm sent: the images go in a
user message of ``image_url`` data parts after the tool results (OpenAI), which
litellm turns into base64 image blocks for Anthropic. The tool message, the
trajectory and the event log describe the image in one line, never its bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.llm import LiteLLMClient
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore, SQLiteStore
from penguiflow_agents.testing.mcp_server import PIXEL_PNG
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry
from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._mcp import MCPToolSource
from penguiflow_agents.tools._types import CallContext

pytestmark = pytest.mark.asyncio(loop_scope="module")

STDIO_COMMAND = ["python", "-m", "penguiflow_agents.testing.mcp_server"]
PIXEL_B64 = base64.b64encode(PIXEL_PNG).decode()
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def _manifest(**extra: Any) -> SourceManifest:
    return SourceManifest(
        name="fx", transport="mcp_stdio", command=STDIO_COMMAND, path="fx.yaml", **extra
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registry() -> AsyncIterator[ToolRegistry]:
    reg = ToolRegistry()
    reg.add_manifest(_manifest())
    async with reg:
        yield reg


@pytest.fixture
def mock_http() -> Iterator[respx.MockRouter]:
    from penguiflow_agents.llm._litellm_import import load_litellm

    load_litellm()
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


def _openai(calls: list[tuple[str, str, str]] | None, content: str | None = None) -> Any:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ]
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": USAGE,
    }


def _anthropic(calls: list[tuple[str, str, Any]] | None, content: str | None = None) -> Any:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    blocks += [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in calls or []]
    return {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": blocks,
        "stop_reason": "tool_use" if calls else "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


async def _run(
    registry: ToolRegistry,
    mock_http: respx.MockRouter,
    model: str,
    url: str,
    turns: list[Any],
    path: str | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """One planner run; ``path`` holds an OpenAI model on the direct path (which it picks by
    itself, asserted) or on litellm."""
    replies = iter(turns)
    route = mock_http.post(url).mock(
        side_effect=lambda request: httpx.Response(200, json=next(replies))
    )
    llm = LiteLLMClient(model, api_key="sk-test-key-123456")
    if path == "litellm":
        llm._route = "litellm"
    elif path == "direct":
        assert llm.direct() is not None
    store = MemoryStore()
    try:
        planner = ReactPlanner(llm=llm, registry=registry, store=store)
        result = await planner.run("Show me the picture.", headers=Headers(tenant="acme"))
    finally:
        await llm.aclose()
    bodies = [json.loads(call.request.content) for call in route.calls]
    return result, bodies


async def _no_image_bytes_stored(store: MemoryStore, run_id: str) -> None:
    events = await store.list_events("acme", run_id)
    assert events, "the run recorded its events"
    assert PIXEL_B64 not in json.dumps([e.data for e in events], default=str)


@pytest.mark.parametrize("path", ["direct", "litellm"])
async def test_an_mcp_image_reaches_an_openai_model_as_an_image_url_part(
    registry: ToolRegistry, mock_http: respx.MockRouter, path: str
) -> None:
    turns = [
        _openai([("call_i", "fx__image", '{"caption": "a red pixel"}')]),
        _openai(None, "It is a single red pixel."),
    ]
    result, bodies = await _run(registry, mock_http, "openai/gpt-4.1-mini", OPENAI_URL, turns, path)
    assert result.status == "completed", result.error
    messages = bodies[1]["messages"]
    tool = next(m for m in messages if m["role"] == "tool")
    assert tool["tool_call_id"] == "call_i"
    assert "a red pixel" in tool["content"]
    assert "[image 1: image/png" in tool["content"] and "attached as an image" in tool["content"]
    assert PIXEL_B64 not in tool["content"]
    # Right after the tool results: one user message with the image as a data URL.
    after = messages[messages.index(tool) + 1]
    assert after["role"] == "user"
    assert after["content"][0]["type"] == "text" and "call_i" in after["content"][0]["text"]
    assert after["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PIXEL_B64}"},
    }
    # The trajectory keeps the description, not the bytes.
    assert PIXEL_B64 not in json.dumps(result.to_dict())


async def test_the_event_log_of_a_streamed_run_holds_no_image_bytes(
    registry: ToolRegistry,
) -> None:
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "fx.image", "arguments": {"caption": "red"}}]},
            {"content": "A red pixel."},
        ]
    )
    store = MemoryStore()
    planner = ReactPlanner(llm=llm, registry=registry, store=store, record_events=True)
    events = [e async for e in planner.stream("Show me.", headers=Headers(tenant="acme"))]
    run_id = events[-1].result.run_id  # type: ignore[union-attr]
    assert events[-1].result.status == "completed"  # type: ignore[union-attr]
    shown = llm.requests[1].messages[-1]
    assert shown["role"] == "user" and shown["content"][1]["type"] == "image_url"
    await _no_image_bytes_stored(store, run_id)


async def test_litellm_maps_the_image_to_an_anthropic_image_block(
    registry: ToolRegistry, mock_http: respx.MockRouter
) -> None:
    turns = [
        _anthropic([("toolu_i", "fx__image", {"caption": "a red pixel"})]),
        _anthropic(None, "A red pixel."),
    ]
    result, bodies = await _run(
        registry, mock_http, "anthropic/claude-sonnet-4-20250514", ANTHROPIC_URL, turns
    )
    assert result.status == "completed", result.error
    blocks = [
        block
        for message in bodies[1]["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
    ]
    images = [b for b in blocks if b.get("type") == "image"]
    assert images == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PIXEL_B64},
        }
    ]


@pytest.mark.parametrize("path", ["direct", "litellm"])
async def test_a_model_without_vision_is_told_of_the_image_in_words(
    registry: ToolRegistry, mock_http: respx.MockRouter, path: str
) -> None:
    turns = [
        _openai([("call_i", "fx__image", '{"caption": "a red pixel"}')]),
        _openai(None, "I cannot see it."),
    ]
    result, bodies = await _run(
        registry, mock_http, "openai/gpt-3.5-turbo", OPENAI_URL, turns, path
    )
    assert result.status == "completed", result.error
    text = json.dumps(bodies[1]["messages"])
    assert "image_url" not in text and PIXEL_B64 not in text
    assert "this model does not read images" in text


async def test_images_past_max_result_bytes_are_described_not_sent() -> None:
    source = MCPToolSource(_manifest(max_result_bytes=5000))
    try:
        result = await source.call(
            "image", {"caption": "three", "count": 3, "pad_bytes": 2000}, CallContext()
        )
        svg = await source.call(
            "image", {"caption": "svg", "mime_type": "image/svg+xml"}, CallContext()
        )
    finally:
        await source.aclose()
    assert result.ok, result
    assert len(result.media) == 2  # about 2,070 bytes each: the third would pass 5,000
    lines = str(result.output).splitlines()
    assert lines[0] == "three"
    assert lines[1].startswith("[image 1: image/png") and lines[2].startswith("[image 2:")
    assert "not shown: the call's images exceed the source's max_result_bytes of 5000" in lines[3]
    assert "base64" not in json.dumps(result.to_dict()) and "media" not in result.to_dict()
    assert svg.ok and svg.media == ()
    assert "image/svg+xml" in str(svg.output) and "not shown" in str(svg.output)


async def test_an_image_of_a_step_that_paused_reaches_the_model_after_the_resume(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    policy = {
        "tenant": "acme",
        "allow": ["fx.*"],
        "approvals": [{"match": "fx.echo", "approvers": ["role:admin"]}],
    }
    turns: list[Any] = [
        {
            "tool_calls": [
                {"name": "fx.image", "arguments": {"caption": "red"}, "id": "c-img"},
                {"name": "fx.echo", "arguments": {"text": "hi"}, "id": "c-echo"},
            ]
        },
        {"content": "Done."},
    ]
    alice = Headers(tenant="acme", principal="alice")
    store = SQLiteStore(tmp_path / "runs.db")
    policies = PolicySet.from_documents([policy])
    try:
        first = ReactPlanner(
            llm=ScriptedLLM(turns), registry=registry, store=store, policies=policies
        )
        paused = await first.run("Show me.", headers=alice)
        assert paused.status == "paused"
        record = await store.get_run("acme", paused.run_id)
        assert record.state["media"]["c-img"][1]["type"] == "image_url"  # kept, bounded
        await ApprovalService(store, policies).decide(
            tenant="acme",
            approval_id=paused.pending_approvals[0].id,
            decision="approve",
            principal="bob",
            roles=["admin"],
        )
        llm = ScriptedLLM(turns)
        second = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
        done = await second.resume(paused.run_id, headers=alice)
    finally:
        await store.aclose()
    assert done.status == "completed", done.error
    messages = llm.requests[-1].messages
    assert [m["role"] for m in messages[-4:]] == ["assistant", "tool", "tool", "user"]
    assert messages[-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PIXEL_B64}"},
    }


async def test_a_runs_images_are_capped_by_max_image_bytes(registry: ToolRegistry) -> None:
    """Past ``max_image_bytes`` (whole run), a result's images are described, not attached:
    the conversation (stored at every checkpoint, sent every turn) stays bounded."""
    turns: list[Any] = [
        {"tool_calls": [{"name": "fx.image", "arguments": {"caption": "one"}, "id": "c1"}]},
        {"tool_calls": [{"name": "fx.image", "arguments": {"caption": "two"}, "id": "c2"}]},
        {"content": "Seen."},
    ]
    llm = ScriptedLLM(turns)
    size = len(PIXEL_PNG)  # one image fits, a second does not
    planner = ReactPlanner(llm=llm, registry=registry, max_image_bytes=size + size // 2)
    result = await planner.run("Show me two.", headers=Headers(tenant="acme"))
    assert result.status == "completed", result.error
    messages = llm.requests[-1].messages
    images = [
        part
        for m in messages
        if m["role"] == "user" and isinstance(m["content"], list)
        for part in m["content"]
        if part["type"] == "image_url"
    ]
    assert len(images) == 1  # the first call's
    second = next(m for m in messages if m.get("tool_call_id") == "c2")
    assert "were not attached" in second["content"] and "max_image_bytes" in second["content"]
