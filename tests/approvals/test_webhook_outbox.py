"""Requests and decisions write webhook outbox entries with the approval, and only then."""

from __future__ import annotations

from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import ApproverNotAllowedError, UserError
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore, RunRecord
from tests.approvals.conftest import ARGS, OTHER, POLICY, WRITE, Clock

RULE_URL = "https://hooks.example/rule"
ALL_URL = "https://hooks.example/all"


def notifying_policy() -> dict[str, Any]:
    doc = dict(POLICY)
    doc["approvals"] = [dict(POLICY["approvals"][0], notify=[RULE_URL]), POLICY["approvals"][1]]
    return doc


async def service(
    notify: tuple[str, ...] = (), woken: list[int] | None = None
) -> tuple[ApprovalService, MemoryStore]:
    store = MemoryStore()
    await store.create_run(
        RunRecord(run_id="run-1", tenant="acme", principal="alice", roles=[], status="paused")
    )
    policies = PolicySet.from_documents([notifying_policy(), OTHER])
    wake = None if woken is None else (lambda: woken.append(1))
    svc = ApprovalService(store, policies, clock=Clock(), notify=notify, on_outbox=wake)
    return svc, store


async def request(svc: ApprovalService, arguments: dict[str, Any] | None = None) -> Any:
    alice = Headers(tenant="acme", principal="alice")
    args = dict(ARGS if arguments is None else arguments)
    rule = svc.policies.approval_rule(WRITE.name, args, alice)
    assert rule is not None
    return await svc.request(
        headers=alice, run_id="run-1", call_id="c1", spec=WRITE, arguments=args, rule=rule
    )


async def test_a_request_under_a_notifying_rule_writes_one_entry_per_url() -> None:
    woken: list[int] = []
    svc, store = await service(notify=(ALL_URL, RULE_URL), woken=woken)
    record = await request(svc)
    entries = await store.list_outbox(tenant="acme")
    assert [e.url for e in entries] == [RULE_URL, ALL_URL]  # each URL once
    assert {e.event_id for e in entries} == {f"{record.id}.requested"}
    payload = entries[0].payload
    assert payload["type"] == "approval.requested" and payload["tenant"] == "acme"
    approval = payload["approval"]
    assert (approval["id"], approval["tool"], approval["arguments"], approval["status"]) == (
        record.id,
        "files.write_text",
        ARGS,
        "pending",
    )
    assert approval["reason"] == "Writes to the shared drive"
    assert woken == [1]


async def test_a_decision_writes_its_event_and_a_refused_decision_writes_none() -> None:
    svc, store = await service()
    record = await request(svc)
    with pytest.raises(ApproverNotAllowedError):
        await svc.decide(
            tenant="acme", approval_id=record.id, principal="alice", roles=["admin"],
            decision="approve",
        )  # fmt: skip
    assert [e.kind for e in await store.list_outbox()] == ["approval.requested"]
    await svc.decide(
        tenant="acme", approval_id=record.id, principal="bob", roles=["admin"],
        decision="reject", reason="not on Fridays",
    )  # fmt: skip
    decided = [e for e in await store.list_outbox() if e.kind == "approval.decided"]
    assert [(e.event_id, e.url) for e in decided] == [(f"{record.id}.decided", RULE_URL)]
    approval = decided[0].payload["approval"]
    assert approval["status"] == "rejected"
    assert approval["decision"]["decided_by"] == "bob"
    assert approval["decision"]["reason"] == "not on Fridays"


async def test_a_rule_without_notify_writes_nothing_unless_the_service_notifies_all() -> None:
    svc, store = await service()
    await request(svc, {"path": "/home/a.txt", "text": "x"})  # the second rule: no notify
    assert await store.list_outbox() == []
    svc, store = await service(notify=(ALL_URL,))
    await request(svc, {"path": "/home/a.txt", "text": "x"})
    assert [e.url for e in await store.list_outbox()] == [ALL_URL]


def test_a_bad_service_notify_url_is_a_user_error() -> None:
    with pytest.raises(UserError, match="notify URL: 'ftp://x/…' is not an http"):
        ApprovalService(MemoryStore(), PolicySet({}), notify=["ftp://x/y"])


async def test_a_planner_given_notify_urls_announces_the_approvals_its_runs_request() -> None:
    """`serve --notify` reaches requests made by runs through ReactPlanner(notify=...)."""
    from penguiflow_agents.testing.scripted_llm import ScriptedLLM
    from tests.approvals.test_pause_resume import ALICE as STAFF
    from tests.approvals.test_pause_resume import Files, planner_for, write_then_answer

    files, store = Files(), MemoryStore()
    planner = planner_for(files, store, ScriptedLLM(write_then_answer()), notify=[ALL_URL])
    paused = await planner.run("write hi to /a.txt", headers=STAFF)
    (pending,) = paused.pending_approvals
    (entry,) = await store.list_outbox(tenant="acme")
    assert (entry.event_id, entry.url) == (f"{pending.id}.requested", ALL_URL)


async def test_a_decision_made_elsewhere_reaches_every_receiver_of_its_request() -> None:
    """A worker's --notify URL is told of the decision even when another process (the CLI,
    serve without --notify) decides: the request keeps its receivers."""
    requester, store = await service(notify=(ALL_URL,))
    record = await request(requester)
    assert record.rule["notify"] == [RULE_URL, ALL_URL]
    elsewhere = ApprovalService(store, requester.policies, clock=Clock())  # no notify of its own
    await elsewhere.decide(
        tenant="acme", approval_id=record.id, principal="bob", roles=["admin"],
        decision="approve",
    )  # fmt: skip
    decided = [e for e in await store.list_outbox() if e.kind == "approval.decided"]
    assert sorted(e.url for e in decided) == sorted([RULE_URL, ALL_URL])
