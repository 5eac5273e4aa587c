"""A tool server's sampling request: refused by default; allowed, answered by the run's model,
counted in the run's usage and budget, audited as store events. A real stdio MCP server
(tests/tools/elicit_server.py) through the registry and the planner."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall, Usage
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.tools import ToolRegistry
from penguiflow_agents.tools._manifest import SourceManifest

SERVER = Path(__file__).resolve().parents[1] / "tools" / "elicit_server.py"
WHO = Headers(tenant="acme", principal="alice")


def _registry(**sampling: Any) -> ToolRegistry:
    registry = ToolRegistry()
    registry.add_manifest(
        SourceManifest(
            name="ask",
            transport="mcp_stdio",
            command=[sys.executable, str(SERVER)],
            path="ask.yaml",
            timeout_s=60,
            **({"sampling": sampling} if sampling else {}),
        )
    )
    return registry


class SamplingLLM:
    """The run's model: calls ask.summarize, then answers; a sampling request gets "short"."""

    model = "scripted-sampling"

    def __init__(self, first_usage: Usage | None = None) -> None:
        self.first_usage = first_usage or Usage()
        self.sampled: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if request.metadata.get("sampling_for"):
            self.sampled.append(request)
            return LLMResponse(content="short", usage=Usage(prompt_tokens=40, completion_tokens=7))
        if not any(m.get("role") == "assistant" for m in request.messages):
            call = LLMToolCall(id="c1", name="ask.summarize", arguments={"text": "a long text"})
            return LLMResponse(content=None, tool_calls=[call], usage=self.first_usage)
        return LLMResponse(content="done")


async def _run(registry: ToolRegistry, llm: SamplingLLM, **options: Any) -> tuple[Any, Any]:
    store = MemoryStore()
    async with registry:
        planner = ReactPlanner(llm=llm, registry=registry, store=store, **options)
        result = await planner.run("summarize it", headers=WHO)
    kinds = [e.kind for e in await store.list_events("acme", result.run_id)]
    return result, (kinds, store)


async def test_sampling_is_refused_by_default() -> None:
    llm = SamplingLLM()
    result, (kinds, _) = await _run(_registry(), llm)
    assert llm.sampled == []
    assert result.status == "completed"
    assert result.steps[0].result == "refused: the client does not offer sampling"
    assert "sampling_requested" not in kinds


async def test_allowed_sampling_is_answered_by_the_run_model_and_counted() -> None:
    llm = SamplingLLM()
    result, (kinds, store) = await _run(_registry(allow=True, max_tokens=50), llm)
    assert [r.max_tokens for r in llm.sampled] == [50], "capped by the manifest"
    assert llm.sampled[0].messages == [{"role": "user", "content": "Summarize: a long text"}]
    assert result.status == "completed", result.error
    assert result.steps[0].result == f"summary: short (by {llm.model})"
    assert result.usage.prompt_tokens >= 40 and result.usage.completion_tokens >= 7
    assert kinds.index("sampling_requested") < kinds.index("sampling_answered")
    events = {e.kind: e.data for e in await store.list_events("acme", result.run_id)}
    assert events["sampling_requested"]["max_tokens"] == 50, "capped by the manifest"
    assert events["sampling_answered"]["completion_tokens"] == 7
    assert "Summarize" not in str(events), "the audit holds counts, not the texts"


async def test_sampling_past_the_run_budget_is_refused() -> None:
    llm = SamplingLLM(first_usage=Usage(prompt_tokens=100))
    result, (kinds, _) = await _run(_registry(allow=True), llm, max_tokens_budget=100)
    assert llm.sampled == []
    assert "sampling_requested" not in kinds
    assert result.steps[0].outcome != "ok" or "refused" in str(result.steps[0].result)
    assert "max_tokens_budget" in str(result.steps[0].result), result.steps[0]
