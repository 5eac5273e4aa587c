"""/v1/tools and /v1/approvals: the caller's view, decisions, foreign ids, the live feed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.server.conftest import Service, error_of, live_service


async def test_tools_are_the_callers_view_in_the_shape_of_tools_list(service: Service) -> None:
    acme = (await service.get("/v1/tools")).json()
    assert sorted(t["name"] for t in acme) == ["files.write_text", "math.add"]
    assert set(acme[0]) >= {"name", "source", "description", "input_schema", "risk", "idempotent"}
    globex = (await service.get("/v1/tools", "globex")).json()
    assert [t["name"] for t in globex] == ["math.add"]


async def test_reject_needs_a_reason_and_the_model_sees_it(service: Service) -> None:
    doc = await service.run("write hi")
    approval = doc["pending_approvals"][0]["id"]
    r = await service.post(f"/v1/approvals/{approval}/decision", "boss", {"decision": "reject"})
    assert r.status_code == 422 and "needs a reason" in error_of(r)["message"]
    r = await service.post(
        f"/v1/approvals/{approval}/decision", "boss", {"decision": "reject", "reason": "no way"}
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    again = await service.post(
        f"/v1/approvals/{approval}/decision", "boss", {"decision": "approve"}
    )
    assert again.status_code == 409 and error_of(again)["code"] == "already_decided"
    run = await _until_done(service, doc["run_id"])
    assert run["status"] == "completed" and "no way" in run["answer"]


async def test_an_edit_runs_the_call_with_the_new_arguments(service: Service) -> None:
    doc = await service.run("write hi")
    approval = doc["pending_approvals"][0]["id"]
    bad = await service.post(
        f"/v1/approvals/{approval}/decision", "boss", {"decision": "edit", "arguments": {"p": 1}}
    )
    assert bad.status_code == 422 and error_of(bad)["code"] == "invalid_decision"
    good = await service.post(
        f"/v1/approvals/{approval}/decision",
        "boss",
        {"decision": "edit", "arguments": {"path": "/shared/n.txt", "text": "hello!"}},
    )
    assert good.status_code == 200, good.text
    run = await _until_done(service, doc["run_id"])
    assert run["answer"].endswith("wrote 6 characters to /shared/n.txt")


async def test_a_foreign_approval_id_answers_exactly_like_an_unknown_one(service: Service) -> None:
    doc = await service.run("write hi")
    approval = doc["pending_approvals"][0]["id"]
    unknown = "apr_" + "0" * 24
    for method, path, body in (
        ("get", "/v1/approvals/{}", None),
        ("post", "/v1/approvals/{}/decision", {"decision": "approve"}),
    ):
        responses = []
        for ident in (approval, unknown):
            url = path.format(ident)
            if method == "get":
                r = await service.get(url, "globex")
            else:
                r = await service.post(url, "globex", body)
            responses.append((r.status_code, r.text.replace(ident, "ID")))
        assert responses[0] == responses[1]
        assert responses[0][0] == 404
    assert (await service.get("/v1/approvals", "globex")).json() == []


async def test_cancel_and_resume_answer_foreign_ids_like_unknown_ones(service: Service) -> None:
    doc = await service.run("write hi")
    for action in ("cancel", "resume", "events"):
        out = []
        for ident in (doc["run_id"], "run_" + "f" * 32):
            if action == "events":
                r = await service.get(f"/v1/runs/{ident}/events", "globex")
            else:
                r = await service.post(f"/v1/runs/{ident}/{action}", "globex")
            out.append((r.status_code, r.text.replace(ident, "ID")))
        assert out[0] == out[1] and out[0][0] == 404, action


async def test_a_paused_run_can_be_cancelled_and_a_busy_run_cannot_be_resumed(
    service: Service,
) -> None:
    doc = await service.run("write hi")
    r = await service.post(f"/v1/runs/{doc['run_id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    busy = (await service.post("/v1/runs", json={"query": "wait"})).json()["run_id"]
    r = await service.post(f"/v1/runs/{busy}/resume")
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    r = await service.post(f"/v1/runs/{busy}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


async def test_the_approvals_feed_sends_pending_requests_then_decisions_live() -> None:
    async with live_service() as service:
        await _feed(service)


async def _feed(service: Service) -> None:
    first = await service.run("write one")
    received: list[tuple[str, dict[str, Any]]] = []

    async def read() -> None:
        async with service.client.stream(
            "GET", "/v1/approvals/events", headers=service.auth("boss")
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    received.append((kind, json.loads(line[6:])))
                    if len(received) == 3:
                        return

    reader = asyncio.create_task(read())
    await _until(lambda: len(received) == 1)
    second = await service.run("write two")
    await _until(lambda: len(received) == 2)
    await service.post(
        f"/v1/approvals/{first['pending_approvals'][0]['id']}/decision",
        "boss",
        {"decision": "approve"},
    )
    await asyncio.wait_for(reader, 30)
    assert [k for k, _ in received] == [
        "approval_requested",
        "approval_requested",
        "approval_decided",
    ]
    assert received[0][1]["id"] == first["pending_approvals"][0]["id"]
    assert received[1][1]["id"] == second["pending_approvals"][0]["id"]
    assert received[1][1]["can_decide"] is True
    assert received[2][1]["status"] == "approved"


async def _until(condition: Any) -> None:
    """Poll ``condition`` (filled by a reader task) for at most 30 s."""
    async with asyncio.timeout(30):
        for _ in iter(int, 1):  # until the condition holds or the time runs out
            if condition():
                return
            await asyncio.sleep(0.01)


async def _until_done(service: Service, run_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            doc: dict[str, Any] = (await service.get(f"/v1/runs/{run_id}")).json()
            if doc["status"] not in ("running", "paused"):
                return doc
            await asyncio.sleep(0.02)
