"""The demo's replay script never claims the note was saved when it was not: its last turn
branches on what became of the write (saved, rejected, refused). Played by ScriptedLLM through
a real planner, registry and policy, as the demo plays it through the replay server."""

from __future__ import annotations

from pathlib import Path

import pytest

import penguiflow_agents
from penguiflow_agents import demo_tools
from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.llm import load_replay_script
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

DEMO = Path(penguiflow_agents.__file__).parent / "demo_scripts"
ALICE = Headers(tenant="acme", principal="alice")
ADMIN = Headers(tenant="acme", principal="root", roles=["admin"])


@tool(idempotent=True)
def get_current_time(timezone: str) -> dict[str, str]:
    """The time in a timezone (a stand-in for the time MCP server)."""
    return {"timezone": timezone, "datetime": "2025-01-01T18:30:00+09:00"}


def planner(policy: dict[str, object]) -> ReactPlanner:
    registry = ToolRegistry()
    registry.add_functions(get_current_time, source="time")
    registry.add_functions(demo_tools.add_minutes, source="clock")
    registry.add_functions(demo_tools.write_file, source="files")
    script = load_replay_script(DEMO / "demo.yaml")
    return ReactPlanner(
        llm=ScriptedLLM(script.turns),
        registry=registry,
        store=MemoryStore(),
        policies=PolicySet.from_documents([policy]),
    )


GATED = {
    "tenant": "*",
    "allow": ["time.*", "clock.*", "files.*"],
    "approvals": [{"match": "files.write_file", "approvers": ["role:admin"]}],
}


@pytest.fixture(autouse=True)
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PENGUIFLOW_SANDBOX", str(tmp_path))
    return tmp_path


async def decided(decision: str, **extra: object) -> str:
    p = planner(GATED)
    result = await p.run("Move the meeting and note it.", headers=ALICE)
    assert result.status == "paused"
    assert p.store is not None and p.policies is not None
    service = ApprovalService(p.store, p.policies)
    [pending] = result.pending_approvals
    await service.decide(
        tenant="acme",
        approval_id=pending.id,
        principal=ADMIN.principal,
        roles=list(ADMIN.roles),
        decision=decision,
        **extra,
    )
    done = await p.resume(result.run_id, headers=ALICE)
    assert done.status == "completed", done.error
    assert done.answer is not None
    return done.answer


async def test_an_approved_write_is_reported_saved(sandbox: Path) -> None:
    answer = await decided("approve")
    assert "the note is saved" in answer
    assert (sandbox / "notes" / "meeting.txt").exists()


async def test_a_rejected_write_is_reported_not_saved(sandbox: Path) -> None:
    answer = await decided("reject", reason="Not now.")
    assert "I did not save the note: the write was rejected" in answer
    assert "saved in" not in answer
    assert not (sandbox / "notes" / "meeting.txt").exists()


async def test_a_write_the_policy_denies_is_reported_not_run(sandbox: Path) -> None:
    p = planner({"tenant": "*", "allow": ["time.*", "clock.*"]})
    result = await p.run("Move the meeting and note it.", headers=ALICE)
    assert result.status == "completed" and result.answer is not None
    assert "I could not save the note" in result.answer
    assert not (sandbox / "notes" / "meeting.txt").exists()
