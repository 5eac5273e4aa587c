"""GET /v1/runs/{id}/events: one SSE event per event of the run's log, ids = sequence numbers,
Last-Event-ID resumes after it, the stream ends after paused or run_finished."""

from __future__ import annotations

import asyncio

from tests.server.conftest import Service, error_of, parse_sse


async def test_a_finished_runs_stream_replays_every_event_once_in_order(service: Service) -> None:
    doc = await service.run("add 2 3")
    r = await service.get(f"/v1/runs/{doc['run_id']}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    stored = await service.store.list_events("acme", doc["run_id"])
    assert [(e.id, e.kind, e.data) for e in events] == [(s.seq, s.kind, s.data) for s in stored]
    assert [e.kind for e in events] == [
        "run_started",
        "step_started",
        "llm_response",
        "tool_call_started",
        "tool_call_finished",
        "step_started",
        "llm_response",
        "final_answer",
        "run_finished",
    ]
    assert events[4].data["result"] == 5 and events[-1].data["status"] == "completed"


async def test_last_event_id_resumes_after_that_event(service: Service) -> None:
    doc = await service.run("add 2 3")
    r = await service.client.get(
        f"/v1/runs/{doc['run_id']}/events",
        headers={**service.auth("alice"), "Last-Event-ID": "4"},
    )
    assert [e.id for e in parse_sse(r.text)] == [5, 6, 7, 8, 9]
    after_all = await service.client.get(
        f"/v1/runs/{doc['run_id']}/events",
        headers={**service.auth("alice"), "Last-Event-ID": "9"},
    )
    assert after_all.status_code == 200 and parse_sse(after_all.text) == []  # ended: at once


async def test_a_paused_runs_stream_ends_at_paused_and_continues_after_the_decision(
    service: Service,
) -> None:
    doc = await service.run("write hi")
    first = parse_sse((await service.get(f"/v1/runs/{doc['run_id']}/events")).text)
    assert first[-1].kind == "paused"
    assert first[-1].data["pending_approvals"][0]["id"] == doc["pending_approvals"][0]["id"]
    await service.post(
        f"/v1/approvals/{doc['pending_approvals'][0]['id']}/decision",
        "boss",
        {"decision": "approve"},
    )
    r = await service.client.get(
        f"/v1/runs/{doc['run_id']}/events",
        headers={**service.auth("alice"), "Last-Event-ID": str(first[-1].id)},
    )
    rest = parse_sse(r.text)
    assert rest[0].id == first[-1].id + 1
    kinds = [e.kind for e in rest]
    assert kinds[0] == "approval_decided" and "resumed" in kinds and kinds[-1] == "run_finished"
    assert rest[-1].data["status"] == "completed"


async def test_a_bad_last_event_id_is_422(service: Service) -> None:
    doc = await service.run("add 1 1")
    for bad in ("abc", "-1"):
        r = await service.client.get(
            f"/v1/runs/{doc['run_id']}/events",
            headers={**service.auth("alice"), "Last-Event-ID": bad},
        )
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"


async def test_accept_json_gets_the_whole_stored_history_across_a_pause(service: Service) -> None:
    """``Accept: application/json``: the run's stored events as one JSON document (what
    ``runs events --json`` prints), past the pause, paged with ``after`` and ``limit``."""
    doc = await service.run("write hi")
    await service.post(
        f"/v1/approvals/{doc['pending_approvals'][0]['id']}/decision",
        "boss",
        {"decision": "approve"},
    )
    run_id = doc["run_id"]
    for _ in range(200):  # the resume runs in the background
        if (await service.store.get_run("acme", run_id)).status == "completed":
            break
        await asyncio.sleep(0.05)
    as_json = {**service.auth("alice"), "Accept": "application/json"}
    r = await service.client.get(f"/v1/runs/{run_id}/events", headers=as_json)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    stored = await service.store.list_events("acme", run_id)
    assert [(e["seq"], e["kind"], e["data"]) for e in body["events"]] == [
        (s.seq, s.kind, s.data) for s in stored
    ]
    kinds = [e["kind"] for e in body["events"]]
    assert "paused" in kinds and kinds[-1] == "run_finished"  # not cut at the pause
    assert body["more"] is False and body["next_after"] == stored[-1].seq

    r = await service.client.get(f"/v1/runs/{run_id}/events?after=2&limit=3", headers=as_json)
    page = r.json()
    assert [e["seq"] for e in page["events"]] == [3, 4, 5]
    assert page["more"] is True and page["next_after"] == 5

    foreign = {**service.auth("globex"), "Accept": "application/json"}
    r = await service.client.get(f"/v1/runs/{run_id}/events", headers=foreign)
    assert r.status_code == 404  # like an unknown id
    r = await service.client.get("/v1/runs/run-nosuch/events", headers=as_json)
    assert r.status_code == 404
    r = await service.client.get(f"/v1/runs/{run_id}/events?limit=0", headers=as_json)
    assert r.status_code == 422
