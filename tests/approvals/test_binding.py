"""check_binding: an approved call runs only if nothing it was bound to has changed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.policy import PolicySet


async def approved(env: Any, **kw: Any) -> Any:
    record = await env.request()
    return await env.svc.decide(
        tenant="acme",
        approval_id=record.id,
        principal="bob",
        roles=["admin"],
        decision="approve",
        **kw,
    )


async def test_an_intact_approved_call_may_run(env: Any) -> None:
    record = await approved(env)
    assert (
        env.svc.check_binding(record, spec=env.spec, arguments=env.args, headers=env.alice) is None
    )


async def test_a_changed_tool_definition_voids_the_approval(env: Any) -> None:
    record = await approved(env)
    changed = replace(env.spec, description="Write a text file, now with append.").with_hash()
    reason = env.svc.check_binding(record, spec=changed, arguments=env.args, headers=env.alice)
    assert reason is not None and "definition" in reason and "changed" in reason


async def test_changed_arguments_void_the_approval(env: Any) -> None:
    record = await approved(env)
    other = {**env.args, "text": "something else"}
    reason = env.svc.check_binding(record, spec=env.spec, arguments=other, headers=env.alice)
    assert reason is not None and "arguments differ" in reason


async def test_an_edited_approval_binds_the_edited_arguments_only(env: Any) -> None:
    record = await env.request()
    new = {"path": "/shared/x.txt", "text": "edited"}
    decided = await env.svc.decide(
        tenant="acme",
        approval_id=record.id,
        principal="bob",
        roles=["admin"],
        decision="edit",
        arguments=new,
    )
    assert env.svc.check_binding(decided, spec=env.spec, arguments=new, headers=env.alice) is None
    assert env.svc.check_binding(decided, spec=env.spec, arguments=env.args, headers=env.alice)


async def test_a_tool_no_longer_visible_to_the_requester_voids_the_approval(env: Any) -> None:
    record = await approved(env)
    viewer = Headers(tenant="acme", principal="alice", roles=["viewer"])
    reason = env.svc.check_binding(record, spec=env.spec, arguments=env.args, headers=viewer)
    assert reason is not None and "no longer available" in reason


async def test_a_changed_policy_version_voids_the_approval(env: Any) -> None:
    record = await approved(env)
    edited = PolicySet.from_documents([{"tenant": "acme", "allow": ["files.*"], "deny": ["x.*"]}])
    svc = ApprovalService(env.store, edited, clock=env.clock)
    reason = svc.check_binding(record, spec=env.spec, arguments=env.args, headers=env.alice)
    assert reason is not None and "policy changed" in reason


async def test_another_tenants_policy_edit_does_not_void_the_approval(env: Any) -> None:
    record = await approved(env)
    acme, globex = env.docs
    edited = PolicySet.from_documents([acme, {**globex, "deny": ["files.write_*"]}])
    svc = ApprovalService(env.store, edited, clock=env.clock)
    assert svc.check_binding(record, spec=env.spec, arguments=env.args, headers=env.alice) is None


async def test_an_unregistered_tool_voids_the_approval(env: Any) -> None:
    record = await approved(env)
    reason = env.svc.check_binding(record, spec=None, arguments=env.args, headers=env.alice)
    assert reason is not None and "no longer registered" in reason


async def test_a_request_that_is_not_approved_may_not_run(env: Any) -> None:
    pending = await env.request(call_id="c-pending")
    reason = env.svc.check_binding(pending, spec=env.spec, arguments=env.args, headers=env.alice)
    assert reason is not None and "pending" in reason
    rejected = await env.svc.decide(
        tenant="acme",
        approval_id=pending.id,
        principal="bob",
        roles=["admin"],
        decision="reject",
        reason="no",
    )
    reason = env.svc.check_binding(rejected, spec=env.spec, arguments=env.args, headers=env.alice)
    assert reason is not None and "rejected" in reason


async def test_an_expired_request_may_not_run(env: Any) -> None:
    record = await env.request()
    env.clock.now = record.expires_at + 1
    reason = env.svc.check_binding(record, spec=env.spec, arguments=env.args, headers=env.alice)
    assert reason is not None and "expired" in reason


async def test_headers_of_another_tenant_may_not_run_the_call(env: Any) -> None:
    record = await approved(env)
    gina = Headers(tenant="globex", principal="gina")
    assert env.svc.check_binding(record, spec=env.spec, arguments=env.args, headers=gina)


async def test_an_approval_binds_its_run_and_call_id(env: Any) -> None:
    record = await approved(env)
    check = env.svc.check_binding
    kw = {"spec": env.spec, "arguments": env.args, "headers": env.alice}
    assert check(record, run_id="run-1", call_id="call-1", **kw) is None
    other_run = check(record, run_id="run-2", call_id="call-1", **kw)
    other_call = check(record, run_id="run-1", call_id="call-2", **kw)
    assert other_run is not None and "another run or call" in other_run
    assert other_call is not None and "another run or call" in other_call
