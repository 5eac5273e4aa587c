"""Creating an approval request: the binding of DESIGN.md is recorded and audited."""

from __future__ import annotations

from typing import Any

from penguiflow_agents.tools._types import sha256_json


async def test_a_request_records_the_full_binding(env: Any) -> None:
    record = await env.request()
    stored = await env.store.get_approval("acme", record.id)
    assert stored.id.startswith("apr_")
    assert stored.tenant == "acme" and stored.run_id == "run-1" and stored.call_id == "call-1"
    assert stored.tool == "files.write_text"
    assert stored.arguments == env.args
    assert stored.arguments_sha256 == sha256_json(env.args)
    assert stored.tool_hash == env.spec.definition_hash != ""
    assert stored.policy_version == env.policies.version_for("acme")
    assert stored.input_schema == dict(env.spec.input_schema)
    assert stored.requested_by == "alice"
    assert stored.approvers == ["role:admin", "user:boss"]
    assert stored.rule["match"] == "files.write_*"
    assert stored.rule["reason"] == "Writes to the shared drive"
    assert stored.status == "pending" and stored.decision is None
    assert stored.created_at == env.clock.now
    assert stored.expires_at == env.clock.now + 600


async def test_a_request_is_an_audit_event_of_its_run(env: Any) -> None:
    record = await env.request()
    events = await env.store.list_events("acme", "run-1")
    assert [e.kind for e in events] == ["approval_requested"]
    data = events[0].data
    assert data["approval_id"] == record.id
    assert data["call_id"] == "call-1"
    assert data["tool"] == "files.write_text"
    assert data["arguments_sha256"] == record.arguments_sha256
    assert data["requested_by"] == "alice"


async def test_each_request_gets_its_own_id(env: Any) -> None:
    first = await env.request(call_id="c1")
    second = await env.request(call_id="c2")
    assert first.id != second.id


async def test_a_spec_without_a_hash_is_bound_to_its_computed_hash(env: Any) -> None:
    from dataclasses import replace

    bare = replace(env.spec, definition_hash="")
    rule = env.policies.approval_rule(bare.name, env.args, env.alice)
    record = await env.svc.request(
        headers=env.alice, run_id="run-1", call_id="c", spec=bare, arguments=env.args, rule=rule
    )
    assert record.tool_hash == env.spec.definition_hash
