"""Listing approvals and their JSON shape: expiry shows as expired, tenants stay apart."""

from __future__ import annotations

from typing import Any

import pytest

from penguiflow_agents.approvals import approval_to_json, effective_status
from penguiflow_agents.exceptions import UserError


async def test_list_reports_a_pending_request_past_expiry_as_expired(env: Any) -> None:
    old = await env.request(call_id="c-old")
    env.clock.now += 601
    new = await env.request(call_id="c-new")
    listed = await env.svc.list("acme")
    assert [(r.id, r.status) for r in listed] == [(old.id, "expired"), (new.id, "pending")]
    assert [r.id for r in await env.svc.list("acme", status="pending")] == [new.id]
    assert [r.id for r in await env.svc.list("acme", status="expired")] == [old.id]
    assert (await env.store.get_approval("acme", old.id)).status == "pending"  # store untouched
    assert (await env.svc.get("acme", old.id)).status == "expired"


async def test_list_filters_decided_requests_by_status(env: Any) -> None:
    a = await env.request(call_id="a")
    b = await env.request(call_id="b")
    await env.svc.decide(
        tenant="acme", approval_id=a.id, principal="bob", roles=["admin"], decision="approve"
    )
    await env.svc.decide(
        tenant="acme",
        approval_id=b.id,
        principal="bob",
        roles=["admin"],
        decision="reject",
        reason="no",
    )
    assert [r.id for r in await env.svc.list("acme", status="approved")] == [a.id]
    assert [r.id for r in await env.svc.list("acme", status="rejected")] == [b.id]


async def test_list_never_shows_another_tenants_requests(env: Any) -> None:
    await env.request()
    assert await env.svc.list("globex") == []


async def test_list_refuses_an_unknown_status(env: Any) -> None:
    with pytest.raises(UserError):
        await env.svc.list("acme", status="done")


async def test_approval_to_json_has_the_design_shape(env: Any) -> None:
    record = await env.request()
    data = approval_to_json(record)
    assert {"id", "run_id", "tool", "arguments", "status", "requested_by", "expires_at"} <= set(
        data
    )
    assert data["id"] == record.id and data["run_id"] == "run-1"
    assert data["tool"] == "files.write_text" and data["arguments"] == env.args
    assert data["status"] == "pending" and data["requested_by"] == "alice"
    assert data["expires_at"] == "2023-11-14T22:23:20+00:00"
    assert data["decision"] is None


async def test_approval_to_json_carries_the_decision(env: Any) -> None:
    record = await env.request()
    new = {"path": "/shared/y", "text": "z"}
    decided = await env.svc.decide(
        tenant="acme",
        approval_id=record.id,
        principal="bob",
        roles=["admin"],
        decision="edit",
        arguments=new,
    )
    data = approval_to_json(decided)
    assert data["status"] == "approved"
    assert data["decision"] == {
        "decision": "edit",
        "decided_by": "bob",
        "decided_at": "2023-11-14T22:13:20+00:00",
        "reason": None,
        "arguments": new,
    }


async def test_approval_to_json_with_now_reports_expiry(env: Any) -> None:
    record = await env.request()
    later = record.expires_at + 1
    assert approval_to_json(record, now=later)["status"] == "expired"
    assert effective_status(record, record.expires_at) == "pending"
