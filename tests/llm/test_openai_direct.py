"""The direct OpenAI-compatible path: chosen by provider, no litellm import, litellm's prices.

The request/response behaviour shared with litellm is asserted on both paths in
test_litellm_client.py, test_litellm_stream.py and test_wire_names_on_the_wire.py;
here is what only the direct path has.
"""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from penguiflow_agents.exceptions import LLMError
from penguiflow_agents.llm import LiteLLMClient, LLMRequest
from penguiflow_agents.llm._openai import OpenAIClient
from penguiflow_agents.llm._prices import PRICE_FILE, cost_usd, load_prices

from .conftest import TIME_TOOL, openai_reply

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
USER = {"role": "user", "content": "time?"}
ROOT = Path(__file__).resolve().parents[2]


def _client(model: str = "openai/gpt-4.1-mini", **kwargs: Any) -> LiteLLMClient:
    kwargs.setdefault("api_key", "sk-test-secret-key")
    kwargs.setdefault("initial_backoff_s", 0.001)
    return LiteLLMClient(model, **kwargs)


@pytest.mark.parametrize(
    ("model", "extra", "direct"),
    [
        ("openai/gpt-4.1-mini", {}, True),
        ("gpt-4.1-mini", {}, True),  # a bare name litellm files under openai
        ("openai/my-vllm-model", {}, True),  # an OpenAI-compatible server
        ("openai/gpt-4.1-mini", {"top_p": 0.5, "seed": 1}, True),
        ("openai/gpt-4.1-mini", {"drop_params": True}, False),  # a litellm option
        ("openai/o1-pro", {}, False),  # answered by the responses API: litellm bridges it
        ("gpt-3.5-turbo-instruct", {}, False),  # a text-completion model
        ("anthropic/claude-sonnet-4-20250514", {}, False),
        ("gemini/gemini-2.5-flash", {}, False),
    ],
)
def test_the_path_is_chosen_by_provider(model: str, extra: dict[str, Any], direct: bool) -> None:
    assert (_client(model, extra=extra).direct() is not None) is direct


def test_the_price_table_is_read_from_litellms_json_without_importing_it() -> None:
    code = textwrap.dedent(
        """
        import sys
        from penguiflow_agents.llm._prices import load_prices, model_info
        table = load_prices()
        assert model_info("openai/gpt-4.1-mini")["input_cost_per_token"] > 0
        assert all(v["litellm_provider"] == "openai" for k, v in table.items() if k != "openai/replay")
        assert "litellm" not in sys.modules, "litellm was imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("model", ["gpt-4.1-mini", "gpt-4o", "o3", "gpt-4o-mini"])
@pytest.mark.parametrize(("prompt", "completion", "cached"), [(1000, 200, 0), (5000, 50, 4096)])
def test_costs_match_litellms_own(
    litellm: Any, model: str, prompt: int, completion: int, cached: int
) -> None:
    usage = litellm.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details={"cached_tokens": cached},
    )
    theirs = litellm.completion_cost(
        completion_response=litellm.ModelResponse(model=model, usage=usage), model=model
    )
    ours = cost_usd(load_prices()[model], prompt, completion, cached)
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert PRICE_FILE.endswith(".json")


async def test_usage_and_cost_of_a_reply_with_cached_tokens(mock_http: respx.MockRouter) -> None:
    reply = openai_reply(content="hi")
    reply["usage"]["prompt_tokens_details"] = {"cached_tokens": 60}
    mock_http.post(OPENAI_URL).respond(json=reply)
    response = await _client().complete(LLMRequest(messages=[USER]))
    info = load_prices()["gpt-4.1-mini"]
    expected = (
        40 * info["input_cost_per_token"]
        + 60 * info["cache_read_input_token_cost"]
        + 20 * info["output_cost_per_token"]
    )
    assert response.cost_usd == pytest.approx(expected)
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (100, 20)


@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms", "retry-after-date"])
async def test_retry_after_in_seconds_milliseconds_or_as_a_date_is_honoured(
    mock_http: respx.MockRouter, header: str
) -> None:
    if header == "retry-after":
        headers = {"retry-after": "0.3"}
    elif header == "retry-after-ms":
        headers = {"retry-after-ms": "300"}
    else:  # an HTTP date has whole seconds: 2 s ahead waits at least 1 s
        headers = {"retry-after": email.utils.formatdate(time.time() + 2, usegmt=True)}
    route = mock_http.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(429, headers=headers, json={"error": {"message": "wait"}}),
            httpx.Response(200, json=openai_reply(content="ok")),
        ]
    )
    started = time.perf_counter()
    client = _client(max_backoff_s=5.0)
    assert client.direct() is not None
    assert (await client.complete(LLMRequest(messages=[USER]))).content == "ok"
    assert time.perf_counter() - started >= (1.0 if header == "retry-after-date" else 0.3)
    assert route.call_count == 2


async def test_requests_with_different_time_limits_reuse_one_connection(
    mock_http: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[httpx.AsyncClient] = []
    real = httpx.AsyncClient

    def counting(*args: Any, **kwargs: Any) -> httpx.AsyncClient:
        client = real(*args, **kwargs)
        built.append(client)
        return client

    monkeypatch.setattr(httpx, "AsyncClient", counting)
    route = mock_http.post(OPENAI_URL).respond(json=openai_reply(content="ok"))
    client = _client()
    for remaining in (50.0, 49.5, 12.25, 3.0):
        response = await client.complete(LLMRequest(messages=[USER], timeout_s=remaining))
        assert response.content == "ok"
    assert route.call_count == 4 and len(built) == 1
    await client.aclose()
    assert built[0].is_closed


async def test_a_reasoning_model_gets_max_completion_tokens_and_extra_parameters_are_sent(
    mock_http: respx.MockRouter,
) -> None:
    route = mock_http.post(OPENAI_URL).respond(json=openai_reply(content="ok", model="o3"))
    client = _client("openai/o3", extra={"reasoning_effort": "low", "extra_body": {"x": 1}})
    await client.complete(LLMRequest(messages=[USER], max_tokens=64, tools=[TIME_TOOL]))
    body = json.loads(route.calls.last.request.content)
    assert body["model"] == "o3" and body["max_completion_tokens"] == 64
    assert "max_tokens" not in body
    assert (body["reasoning_effort"], body["x"]) == ("low", 1)
    # A temperature other than 1 on a reasoning model: litellm decides (refuses or drops it).
    direct = client.direct()
    assert direct is not None
    assert not direct.accepts(LLMRequest(messages=[USER], temperature=0.2))
    assert direct.accepts(LLMRequest(messages=[USER], temperature=1))


async def test_a_body_that_is_not_json_is_a_clear_error(mock_http: respx.MockRouter) -> None:
    mock_http.post(OPENAI_URL).respond(200, text="<html>proxy login</html>")
    with pytest.raises(LLMError, match="a body that is not JSON; check api_base"):
        await _client().complete(LLMRequest(messages=[USER]))


def test_extra_with_a_litellm_option_is_refused_by_the_direct_client() -> None:
    with pytest.raises(Exception, match="drop_params, not OpenAI chat-completions parameters"):
        OpenAIClient("openai/gpt-4.1-mini", extra={"drop_params": True})


def test_a_planner_turn_on_the_replay_model_and_openai_never_imports_litellm(
    tmp_path: Path,
) -> None:
    """Through ``open_llm`` as the CLI does: the replay model over loopback, then an OpenAI
    model name (with a key set) whose client is built; litellm stays out of the process."""
    script = tmp_path / "s.yaml"
    script.write_text(
        "turns:\n  - tool_calls: [{name: kv.lookup, arguments: {key: a}}]\n  - content: done\n"
    )
    code = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from penguiflow_agents._identity import Headers
        from penguiflow_agents.llm import LLMRequest, TextDelta, open_llm
        from penguiflow_agents.planner import ReactPlanner
        from penguiflow_agents.tools import ToolRegistry, tool

        @tool
        async def lookup(key: str) -> str:
            "Look a key up."
            return "v-" + key

        async def main():
            registry = ToolRegistry()
            registry.add_functions(lookup, source="kv")
            async with open_llm("replay:{script}") as llm:
                result = await ReactPlanner(llm=llm, registry=registry).run(
                    "q", headers=Headers(tenant="t"))
                assert (result.status, result.answer) == ("completed", "done"), result
            async with open_llm("replay:{script}") as llm:
                items = [i async for i in llm.stream(LLMRequest(messages=[{{"role": "user", "content": "q"}}]))]
                assert items[-1].tool_calls[0].name == "kv.lookup", items
            os.environ["OPENAI_API_KEY"] = "sk-test"
            async with open_llm("openai/gpt-4.1-mini") as llm:
                assert llm.direct() is not None and llm.native_tool_calling
            assert "litellm" not in sys.modules, "litellm was imported"

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)
