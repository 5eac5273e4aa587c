"""A run paused for an authorization says so in the OpenAI-compatible and A2A replies."""

from __future__ import annotations

from penguiflow_agents.planner import PendingApproval, RunResult
from penguiflow_agents.server._a2a import _pause_message
from penguiflow_agents.server._openai_wire import pause_text

WAIT = PendingApproval(
    id="auth_1",
    kind="authorization",
    tool="tracker.list_issues",
    arguments={},
    call_id="c1",
    source="tracker",
    principal="alice",
    url="https://auth.example/authorize?state=s",
)


def test_the_openai_reply_asks_the_user_to_log_in_not_an_approver() -> None:
    text = pause_text("run_1", [WAIT])
    assert "'alice' to log in to source 'tracker'" in text
    assert "POST /v1/auth/login/tracker" in text and "to be decided" not in text


def test_the_a2a_message_names_the_source_and_the_login_route() -> None:
    result = RunResult(status="paused", run_id="run_1", pending_approvals=[WAIT])
    text = _pause_message(result)
    assert "authorization of source tracker by alice" in text
    assert "POST /v1/auth/login/tracker" in text
