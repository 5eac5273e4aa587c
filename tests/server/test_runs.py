"""/v1/runs through ASGITransport: start, wait, read, pause, decide, resume on its own."""

from __future__ import annotations

import asyncio

from tests.server.conftest import Service, error_of


async def test_a_run_started_with_wait_answers_with_the_run_document(service: Service) -> None:
    doc = await service.run("add 2 3")
    assert doc["status"] == "completed"
    assert doc["answer"] == "done: 5"
    assert [(s["tool"], s["outcome"]) for s in doc["steps"]] == [("math.add", "ok")]
    assert doc["pending_approvals"] == [] and doc["error"] is None
    again = await service.get(f"/v1/runs/{doc['run_id']}")
    assert again.status_code == 200 and again.json()["answer"] == "done: 5"


async def test_a_run_started_without_wait_is_202_running_then_readable(service: Service) -> None:
    r = await service.post("/v1/runs", json={"query": "wait for it"})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "running"
    doc = await service.get(f"/v1/runs/{body['run_id']}")
    assert doc.status_code == 200 and doc.json()["status"] == "running"
    service.llm.release.set()


async def test_a_gated_call_pauses_and_a_decision_over_http_resumes_the_run(
    service: Service,
) -> None:
    doc = await service.run("write hello")
    assert doc["status"] == "paused"
    (pending,) = doc["pending_approvals"]
    listed = (await service.get("/v1/approvals?status=pending", "boss")).json()
    assert [a["id"] for a in listed] == [pending["id"]]
    assert listed[0]["can_decide"] is True
    mine = (await service.get("/v1/approvals?status=pending", "alice")).json()
    assert mine[0]["can_decide"] is False  # the requester never decides
    r = await service.post(
        f"/v1/approvals/{pending['id']}/decision", "boss", {"decision": "approve"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    for _ in range(200):
        run = (await service.get(f"/v1/runs/{doc['run_id']}")).json()
        if run["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    assert run["status"] == "completed"
    assert run["answer"] == "done: wrote 5 characters to /shared/n.txt"


async def test_the_requester_cannot_decide_its_own_request(service: Service) -> None:
    doc = await service.run("write hello")
    r = await service.post(
        f"/v1/approvals/{doc['pending_approvals'][0]['id']}/decision",
        "alice",
        {"decision": "approve"},
    )
    assert r.status_code == 403
    assert error_of(r)["code"] == "forbidden"


async def test_no_key_bad_key_and_revoked_key_get_401(service: Service) -> None:
    assert (await service.client.get("/v1/tools")).status_code == 401
    bad = await service.client.get("/v1/tools", headers={"Authorization": "Bearer nope"})
    revoked = await service.get("/v1/tools", "revoked")
    for r in (bad, revoked):
        assert r.status_code == 401
        assert error_of(r)["code"] == "unauthorized"
    assert bad.json() == revoked.json()


async def test_a_foreign_run_id_answers_exactly_like_an_unknown_one(service: Service) -> None:
    doc = await service.run("add 1 1", who="globex")
    foreign = await service.get(f"/v1/runs/{doc['run_id']}", "alice")
    unknown = await service.get("/v1/runs/run_" + "0" * 32, "alice")
    assert foreign.status_code == unknown.status_code == 404
    assert error_of(foreign)["code"] == "not_found"
    assert foreign.json()["error"]["message"].replace(doc["run_id"], "X") == unknown.json()[
        "error"
    ]["message"].replace("run_" + "0" * 32, "X")


async def test_a_session_keeps_the_conversation_of_its_tenant(service: Service) -> None:
    doc = await service.run("add 1 2", session_id="s1")
    assert doc["session_id"] == "s1"
    from penguiflow_agents._identity import session_key

    history = await service.store.load_session("acme", session_key("alice", "s1"))
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert await service.store.load_session("globex", session_key("alice", "s1")) == []


async def test_resume_continues_a_run_decided_outside_the_service(service: Service) -> None:
    """A decision made with the CLI's path (ApprovalService) does not resume the run; POST
    /v1/runs/{id}/resume does."""
    from penguiflow_agents.approvals import ApprovalService
    from penguiflow_agents.policy import PolicySet
    from tests.server.conftest import POLICIES

    doc = await service.run("write hi")
    approvals = ApprovalService(service.store, PolicySet.from_documents(POLICIES))
    await approvals.decide(
        tenant="acme",
        approval_id=doc["pending_approvals"][0]["id"],
        principal="boss",
        roles=["admin"],
        decision="approve",
    )
    assert (await service.get(f"/v1/runs/{doc['run_id']}")).json()["status"] == "paused"
    r = await service.post(f"/v1/runs/{doc['run_id']}/resume")
    assert r.status_code == 200
    for _ in range(500):
        run = (await service.get(f"/v1/runs/{doc['run_id']}")).json()
        if run["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    assert run["answer"] == "done: wrote 2 characters to /shared/n.txt"
