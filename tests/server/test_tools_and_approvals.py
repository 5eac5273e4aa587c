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


async def _read_feed(
    service: Service,
    count: int,
    last_event_id: str | None = None,
    got: list[tuple[str, str, dict[str, Any]]] | None = None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """The first ``count`` events (id, kind, data) of a feed connection (appended to ``got``
    as they come), then disconnect."""
    headers = service.auth("boss")
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    got = [] if got is None else got
    async with service.client.stream("GET", "/v1/approvals/events", headers=headers) as r:
        assert r.status_code == 200
        event_id = kind = ""
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                got.append((event_id, kind, json.loads(line[6:])))
                if len(got) == count:
                    break
    return got


async def test_the_approvals_feed_resumes_after_last_event_id_with_nothing_lost_or_repeated() -> (
    None
):
    async with live_service() as service:
        first = (await service.run("write one"))["pending_approvals"][0]["id"]
        ((seen_id, kind, doc),) = await asyncio.wait_for(_read_feed(service, 1), 30)
        assert (kind, doc["id"]) == ("approval_requested", first)
        # While the inbox is away: a new request, and the first one is decided.
        second = (await service.run("write two"))["pending_approvals"][0]["id"]
        r = await service.post(f"/v1/approvals/{first}/decision", "boss", {"decision": "approve"})
        assert r.status_code == 200, r.text
        resumed: list[tuple[str, str, dict[str, Any]]] = []

        reader = asyncio.create_task(_read_feed(service, 3, seen_id, resumed))
        await _until(lambda: len(resumed) == 2)  # what it missed, in order, and no more
        assert [(k, d["id"]) for _, k, d in resumed] == [
            ("approval_requested", second),
            ("approval_decided", first),
        ]
        assert resumed[1][2]["status"] == "approved"
        # Then live, as without Last-Event-ID.
        third = (await service.run("write three"))["pending_approvals"][0]["id"]
        await asyncio.wait_for(reader, 30)
        assert [(k, d["id"]) for _, k, d in resumed[2:]] == [("approval_requested", third)]
        ids = [int(i) for i, _, _ in resumed]
        assert int(seen_id) < ids[0] < ids[1] < ids[2]  # increasing: any of them resumes
        # Resuming after the last one sends nothing old (only what happens next).
        fourth = (await service.run("write four"))["pending_approvals"][0]["id"]
        again = await asyncio.wait_for(_read_feed(service, 1, last_event_id=str(ids[2])), 30)
        assert [(k, d["id"]) for _, k, d in again] == [("approval_requested", fourth)]
        for bad in ("abc", "-1"):
            r = await service.client.get(
                "/v1/approvals/events", headers={**service.auth("boss"), "Last-Event-ID": bad}
            )
            assert r.status_code == 422 and "Last-Event-ID" in error_of(r)["message"]


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
