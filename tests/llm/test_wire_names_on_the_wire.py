"""Tool names a provider would reject never reach one: asserted on the HTTP request bodies.

Names with dots, spaces, slashes, non-ASCII letters, over 64 characters, and
sets whose provider-safe forms collide, go through the real litellm code path
to respx-mocked OpenAI and Anthropic endpoints and to the replay model's real
127.0.0.1 server. Every name in the request body (the tool list and the
conversation's earlier calls) must match ``^[a-zA-Z0-9_-]{1,64}$`` and be
unique, and the model's calls must come back under the canonical names.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from penguiflow_agents.llm import LiteLLMClient, LLMRequest, ReplayServer
from penguiflow_agents.tools._types import ToolSpec

from .conftest import anthropic_reply, on_path, openai_reply

PROVIDER_SAFE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"

# A name whose short hashed form is exactly the plain form of another name of the set.
_ODD = "x!"
_ITS_TWIN = "x." + hashlib.sha256(_ODD.encode()).hexdigest()[:8]
HOSTILE = [
    "time.get_current_time",
    "a.b",
    "a__b",  # its dotted twin "a.b" has the plain form a__b
    "src." + "a" * 80,
    "src." + "a" * 79 + "b",  # the same first 64 characters as the one above
    "météo.prévision du jour",
    "files.read file",
    "files/read:file",
    _ODD,
    _ITS_TWIN,
]


def spec(name: str) -> ToolSpec:
    return ToolSpec(
        name=name,
        source="s",
        description=f"tool {name}",
        input_schema={"type": "object", "properties": {"i": {"type": "integer"}}},
    )


def history() -> list[dict[str, Any]]:
    """A conversation in which the model already called every tool once (canonical names)."""
    calls = [
        {"id": f"h{k}", "type": "function", "function": {"name": n, "arguments": "{}"}}
        for k, n in enumerate(HOSTILE)
    ]
    return [
        {"role": "user", "content": "call them all"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": f"h{k}", "content": "ok"} for k in range(len(HOSTILE))),
    ]


def assert_provider_safe(names: list[str]) -> None:
    assert len(names) == len(HOSTILE), names
    assert all(PROVIDER_SAFE.match(n) for n in names), [
        n for n in names if not PROVIDER_SAFE.match(n)
    ]
    assert len(set(names)) == len(names), names


def request() -> LLMRequest:
    return LLMRequest(messages=history(), tools=[spec(n) for n in HOSTILE])


async def test_the_replay_model_gets_provider_safe_names_and_answers_under_the_right_ones(
    litellm: Any, tmp_path: Path, llm_path: str
) -> None:
    turn = {"tool_calls": [{"name": n, "arguments": {"i": k}} for k, n in enumerate(HOSTILE)]}
    script = tmp_path / "s.yaml"
    script.write_text(json.dumps({"turns": [turn, turn]}))  # JSON is YAML
    async with ReplayServer.from_file(script) as server:
        with respx.mock(assert_all_called=False) as router:
            route = router.route(host="127.0.0.1").pass_through()
            llm = on_path(
                LiteLLMClient(
                    "openai/replay", api_base=server.url, api_key="replay", is_replay=True
                ),
                llm_path,
            )
            try:
                response = await llm.complete(request())
            finally:
                await llm.aclose()
    body = json.loads(route.calls.last.request.content)
    sent = [t["function"]["name"] for t in body["tools"]]
    assert_provider_safe(sent)
    earlier = [c["function"]["name"] for c in body["messages"][1]["tool_calls"]]
    assert earlier == sent  # the history uses the same mapping as the tool list
    # The server (like a provider) saw wire names only; the calls come back canonical.
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        (n, {"i": k}) for k, n in enumerate(HOSTILE)
    ]


async def test_openai_gets_provider_safe_names_and_its_calls_map_back(
    mock_http: respx.MockRouter, llm_path: str
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        offered = [t["function"]["name"] for t in json.loads(request.content)["tools"]]
        calls = [(f"c{k}", wire, json.dumps({"i": k})) for k, wire in enumerate(offered)]
        return httpx.Response(200, json=openai_reply(tool_calls=calls))

    route = mock_http.post(OPENAI_URL).mock(side_effect=echo)
    client = on_path(LiteLLMClient("openai/gpt-4.1-mini", api_key="sk-test-key-123456"), llm_path)
    try:
        response = await client.complete(request())
    finally:
        await client.aclose()
    body = json.loads(route.calls.last.request.content)
    assert_provider_safe([t["function"]["name"] for t in body["tools"]])
    assert_provider_safe([c["function"]["name"] for c in body["messages"][1]["tool_calls"]])
    assert [c.name for c in response.tool_calls] == HOSTILE


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-20250514"])
async def test_anthropic_gets_provider_safe_names_and_its_tool_use_maps_back(
    mock_http: respx.MockRouter, model: str
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        offered = [t["name"] for t in json.loads(request.content)["tools"]]
        blocks = [
            {"type": "tool_use", "id": f"tu{k}", "name": wire, "input": {"i": k}}
            for k, wire in enumerate(offered)
        ]
        return httpx.Response(200, json=anthropic_reply(*blocks))

    route = mock_http.post(ANTHROPIC_URL).mock(side_effect=echo)
    response = await LiteLLMClient(model, api_key="sk-test-key-123456").complete(request())
    body = json.loads(route.calls.last.request.content)
    assert_provider_safe([t["name"] for t in body["tools"]])
    earlier = [b["name"] for b in body["messages"][1]["content"] if b.get("type") == "tool_use"]
    assert_provider_safe(earlier)
    assert [c.name for c in response.tool_calls] == HOSTILE
