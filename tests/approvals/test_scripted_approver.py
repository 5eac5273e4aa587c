"""testing.approver.ScriptedApprover decides pending requests by rules, through every check."""

from __future__ import annotations

from typing import Any

import pytest

from penguiflow_agents.exceptions import ApproverNotAllowedError
from penguiflow_agents.testing.approver import ScriptedApprover


async def test_the_first_matching_rule_decides_and_unmatched_requests_stay_pending(
    env: Any,
) -> None:
    a = await env.request(call_id="a")
    approver = ScriptedApprover(
        env.store, env.policies, principal="bob", roles=["admin"], clock=env.clock
    )
    approver.reject("files.delete_*", reason="never").approve("time.*")
    assert await approver.decide_pending("acme") == []
    approver.reject("files.write_*", reason="Not today.").approve("*")
    decided = await approver.decide_pending("acme")
    assert [(r.id, r.status, r.decision.reason) for r in decided] == [
        (a.id, "rejected", "Not today.")
    ]
    assert approver.decided == decided


async def test_an_edit_rule_can_compute_the_new_arguments(env: Any) -> None:
    await env.request()
    approver = ScriptedApprover(env.store, env.policies, principal="bob", clock=env.clock)
    approver.edit("files.write_text", lambda args: {**args, "text": "safer"})
    (decided,) = await approver.decide_pending("acme", run_id="run-1")
    assert decided.decision.arguments == {**env.args, "text": "safer"}


async def test_a_when_predicate_picks_requests(env: Any) -> None:
    await env.request(call_id="a")
    approver = ScriptedApprover(env.store, env.policies, principal="bob", clock=env.clock)
    approver.approve(when=lambda r: r.call_id == "b")
    assert await approver.decide_pending("acme") == []


async def test_the_scripted_approver_is_held_to_the_approvers_rule(env: Any) -> None:
    await env.request()
    approver = ScriptedApprover(env.store, env.policies, principal="alice", clock=env.clock)
    with pytest.raises(ApproverNotAllowedError):
        await approver.approve().decide_pending("acme")
