"""An unexpected exception (a bug, not an ``LLMError``) fails the run with a sentence *and* leaves
its traceback in the log (issue #12 §9), for the model client here and the worker next door."""

from __future__ import annotations

from structlog.testing import capture_logs

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LLMRequest, LLMResponse
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry


def _broken(request: LLMRequest) -> LLMResponse:
    raise RuntimeError("the client has a bug")


async def test_a_model_client_bug_is_logged_with_its_traceback(
    registry: ToolRegistry, headers: Headers
) -> None:
    planner = ReactPlanner(llm=ScriptedLLM([_broken]), registry=registry)
    with capture_logs() as logs:
        result = await planner.run("hi", headers=headers)
    assert result.status == "failed"
    assert "RuntimeError: the client has a bug" in (result.error or "")
    [entry] = [e for e in logs if e["event"] == "model_client_raised"]
    assert entry["log_level"] == "error" and entry["exc_info"] is True
    assert entry["run_id"] == result.run_id
