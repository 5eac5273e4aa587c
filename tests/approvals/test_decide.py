"""Deciding approval requests: who may decide, reasons, edits, expiry, one decision only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import (
    AlreadyDecidedError,
    ApprovalError,
    ApproverNotAllowedError,
    NotFoundError,
    UserError,
)


async def decide(env: Any, approval_id: str, **kw: Any) -> Any:
    params: dict[str, Any] = {
        "tenant": "acme",
        "approval_id": approval_id,
        "principal": "bob",
        "roles": ["admin"],
        "decision": "approve",
    }
    params.update(kw)
    return await env.svc.decide(**params)


async def test_an_admin_other_than_the_requester_approves(env: Any) -> None:
    record = await env.request()
    decided = await decide(env, record.id)
    assert decided.status == "approved"
    assert decided.decision.decided_by == "bob"
    assert decided.decision.decided_roles == ["admin"]
    assert decided.decision.decided_at == env.clock.now
    events = await env.store.list_events("acme", "run-1")
    assert [e.kind for e in events] == ["approval_requested", "approval_decided"]
    assert events[1].data["decision"] == "approve" and events[1].data["decided_by"] == "bob"


async def test_a_user_approver_matches_by_principal(env: Any) -> None:
    record = await env.request()
    decided = await decide(env, record.id, principal="boss", roles=[])
    assert decided.status == "approved"


async def test_the_requester_cannot_approve_their_own_call_even_with_the_role(env: Any) -> None:
    record = await env.request()
    with pytest.raises(ApproverNotAllowedError) as info:
        await decide(env, record.id, principal="alice", roles=["admin"])
    assert "'alice'" in str(info.value) and "role:admin" in str(info.value)
    assert (await env.store.get_approval("acme", record.id)).status == "pending"


async def test_a_principal_without_a_matching_role_cannot_decide(env: Any) -> None:
    record = await env.request()
    with pytest.raises(ApproverNotAllowedError) as info:
        await decide(env, record.id, principal="carol", roles=["viewer"])
    message = str(info.value)
    assert "'carol'" in message and "role:admin, user:boss" in message
    with pytest.raises(ApproverNotAllowedError):
        await decide(env, record.id, principal="carol", roles=[], decision="reject", reason="no")


async def test_deciding_another_tenants_request_fails_exactly_like_an_unknown_id(env: Any) -> None:
    record = await env.request()
    with pytest.raises(NotFoundError) as foreign:
        await decide(env, record.id, tenant="globex", principal="gus")
    assert str(foreign.value) == str(NotFoundError("approval", record.id))
    with pytest.raises(NotFoundError) as unknown:
        await decide(env, "apr_doesnotexist", tenant="acme")
    assert str(unknown.value) == str(NotFoundError("approval", "apr_doesnotexist"))
    assert type(foreign.value) is type(unknown.value)
    assert (await env.store.get_approval("acme", record.id)).status == "pending"


async def test_a_rejection_needs_a_reason_and_keeps_it(env: Any) -> None:
    record = await env.request()
    with pytest.raises(UserError):
        await decide(env, record.id, decision="reject", reason="  ")
    decided = await decide(env, record.id, decision="reject", reason="Not on Fridays.")
    assert decided.status == "rejected"
    assert decided.decision.reason == "Not on Fridays."


async def test_a_second_decision_is_refused_saying_who_decided_what_and_when(env: Any) -> None:
    record = await env.request()
    await decide(env, record.id, principal="bob")
    with pytest.raises(AlreadyDecidedError) as info:
        await decide(env, record.id, principal="boss", roles=[], decision="reject", reason="x")
    err = info.value
    assert err.decided_by == "bob" and err.decision == "approve"
    assert "bob" in str(err) and "approve" in str(err) and "2023-11-14T22:13:20" in str(err)


async def test_of_two_concurrent_decisions_exactly_one_wins(env: Any) -> None:
    record = await env.request()
    results = await asyncio.gather(
        decide(env, record.id, principal="bob"),
        decide(env, record.id, principal="boss", roles=[], decision="reject", reason="no"),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], AlreadyDecidedError)


async def test_a_request_past_its_expiry_cannot_be_decided_and_counts_as_rejected(env: Any) -> None:
    record = await env.request()
    env.clock.now += 601
    with pytest.raises(ApprovalError) as info:
        await decide(env, record.id)
    assert "expired" in str(info.value) and "rejected" in str(info.value)
    stored = await env.store.get_approval("acme", record.id)
    assert env.svc.effective_status(stored) == "expired"
    assert stored.decision is None


async def test_an_unknown_decision_or_arguments_without_edit_is_a_usage_error(env: Any) -> None:
    record = await env.request()
    with pytest.raises(UserError):
        await decide(env, record.id, decision="maybe")
    with pytest.raises(UserError):
        await decide(env, record.id, arguments={"path": "/shared/x", "text": "y"})


async def test_an_edit_records_the_new_arguments(env: Any) -> None:
    record = await env.request()
    new = {"path": "/shared/other.txt", "text": "bye"}
    decided = await decide(env, record.id, decision="edit", arguments=new)
    assert decided.status == "approved"
    assert decided.decision.decision == "edit" and decided.decision.arguments == new
    assert decided.arguments == env.args  # the request itself is unchanged


async def test_edited_arguments_that_fail_the_schema_are_refused_listing_each_path(
    env: Any,
) -> None:
    record = await env.request()
    bad = {"path": 7, "text": "x" * 30, "mode": "w"}
    with pytest.raises(ApprovalError) as info:
        await decide(env, record.id, decision="edit", arguments=bad)
    message = str(info.value)
    assert "$.path" in message and "$.text" in message and "'mode'" in message
    assert (await env.store.get_approval("acme", record.id)).status == "pending"


async def test_an_edit_needs_an_object(env: Any) -> None:
    record = await env.request()
    with pytest.raises(UserError):
        await decide(env, record.id, decision="edit", arguments=None)


async def test_an_edit_cannot_move_the_call_under_a_rule_the_decider_may_not_approve(
    env: Any,
) -> None:
    """An admin approves /shared/ writes; an editor may not edit a write into /shared/."""
    record = await env.request(arguments={"path": "/tmp/a.txt", "text": "x"})
    assert record.approvers == ["role:editor"]
    with pytest.raises(ApproverNotAllowedError) as info:
        await decide(
            env,
            record.id,
            roles=["editor"],
            decision="edit",
            arguments={"path": "/shared/a.txt", "text": "x"},
        )
    assert "role:admin" in str(info.value)
    decided = await decide(
        env, record.id, roles=["editor"], decision="edit", arguments={"path": "/tmp/b", "text": "x"}
    )
    assert decided.status == "approved"


async def test_an_edit_is_refused_when_the_tool_is_no_longer_visible_to_the_requester(
    env: Any,
) -> None:
    from penguiflow_agents.approvals import ApprovalService
    from penguiflow_agents.policy import PolicySet

    record = await env.request()
    narrowed = PolicySet.from_documents([{"tenant": "acme", "allow": ["files.read_*"]}])
    svc = ApprovalService(env.store, narrowed, clock=env.clock)
    with pytest.raises(ApprovalError) as info:
        await svc.decide(
            tenant="acme",
            approval_id=record.id,
            principal="bob",
            roles=["admin"],
            decision="edit",
            arguments=env.args,
        )
    assert "no longer visible" in str(info.value)


async def test_the_requesters_run_roles_count_for_visibility_of_an_edit(env: Any) -> None:
    """A requester whose run carries role viewer only sees files.read_*; an edit is refused."""
    from penguiflow_agents.store import RunRecord

    await env.store.create_run(
        RunRecord(run_id="run-v", tenant="acme", principal="vic", roles=["viewer"])
    )
    record = await env.request(headers=Headers(tenant="acme", principal="vic"), run_id="run-v")
    with pytest.raises(ApprovalError):
        await decide(env, record.id, decision="edit", arguments=env.args)


async def test_the_requester_spelled_differently_still_cannot_decide(env: Any) -> None:
    """'Alice' and 'ＡＬＩＣＥ' are the requester 'alice' (NFKC + casefold); user:Boss is boss."""
    from penguiflow_agents.approvals import may_decide

    record = await env.request()
    for spelling in ("Alice", "ＡＬＩＣＥ"):
        with pytest.raises(ApproverNotAllowedError, match="requested the call"):
            await decide(env, record.id, principal=spelling, roles=["admin"])
    assert may_decide(["user:Boss"], "boss", [])
    assert may_decide(["user:boss"], "ＢＯＳＳ", [])
    assert not may_decide(["user:boss"], "boss2", [])
