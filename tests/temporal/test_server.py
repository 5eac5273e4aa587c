"""``serve --engine temporal://...``: the HTTP service starts runs as workflows on Temporal.

The app (its lifespan entered, called over httpx's ASGITransport) submits to
the session's dev server; a worker process executes the run and records it in
the shared SQLite store, which the app's documents and event streams read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from penguiflow_agents.policy import PolicySet
from penguiflow_agents.server import ApiKey, KeyRing, ServerSettings, create_app, hash_key
from penguiflow_agents.tools import ToolRegistry

from .conftest import WAIT_S, Lab

KEYS = {
    "alice": "pfa_alice-key-0000000000000000000000",
    "boss": "pfa_boss-key-00000000000000000000000",
    "mallory": "pfa_mallory-key-00000000000000000000",
}
POLICIES = [
    {
        "tenant": "acme",
        "allow": ["ops.*"],
        "approvals": [{"match": "ops.restart", "approvers": ["role:admin"], "reason": "Restarts"}],
    },
    {"tenant": "globex", "allow": ["ops.*"]},
]


def _ring() -> KeyRing:
    return KeyRing(
        [
            ApiKey(id="alice", sha256=hash_key(KEYS["alice"]), tenant="acme", principal="alice"),
            ApiKey(
                id="boss",
                sha256=hash_key(KEYS["boss"]),
                tenant="acme",
                principal="boss",
                roles=("admin",),
            ),
            ApiKey(
                id="mallory",
                sha256=hash_key(KEYS["mallory"]),
                tenant="globex",
                principal="mallory",
                roles=("admin",),
            ),
        ]
    )


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@pytest.fixture
async def client(lab: Lab) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServerSettings(engine=lab.url, store=lab.store_url, poll_s=0.2)
    app = create_app(
        settings,
        registry=ToolRegistry(),  # tools execute on the Temporal workers, not here
        policies=PolicySet.from_documents(POLICIES),
        keys=_ring(),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=WAIT_S
        ) as made:
            yield made


async def _until(client: httpx.AsyncClient, run_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        r = await client.get(f"/v1/runs/{run_id}", headers=_auth("alice"))
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        if doc["status"] == status:
            return doc
        assert time.monotonic() < deadline, f"run {run_id} is {doc['status']}, not {status}"
        await asyncio.sleep(0.2)


async def test_a_run_pauses_and_the_decision_over_http_resumes_it(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    lab.worker()
    r = await client.post("/v1/runs?wait=true", headers=_auth("alice"), json={"query": "parallel"})
    assert r.status_code == 200, r.text  # answered once the workflow paused (the store's log)
    doc = r.json()
    assert doc["status"] == "paused", doc
    run_id = doc["run_id"]
    (pending,) = doc["pending_approvals"]
    assert pending["tool"] == "ops.restart"

    # Another tenant's approval and run answer exactly like unknown ones.
    foreign = await client.post(
        f"/v1/approvals/{pending['id']}/decision",
        headers=_auth("mallory"),
        json={"decision": "approve"},
    )
    unknown = await client.post(
        "/v1/approvals/appr_unknown/decision",
        headers=_auth("mallory"),
        json={"decision": "approve"},
    )
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.text.replace(pending["id"], "X") == unknown.text.replace("appr_unknown", "X")
    assert (
        await client.post(f"/v1/runs/{run_id}/cancel", headers=_auth("mallory"))
    ).status_code == 404
    assert (await client.get(f"/v1/runs/{run_id}", headers=_auth("mallory"))).status_code == 404
    # The requester may not decide her own request (the workflow's validator refuses it).
    own = await client.post(
        f"/v1/approvals/{pending['id']}/decision",
        headers=_auth("alice"),
        json={"decision": "approve"},
    )
    assert own.status_code == 403, own.text

    decided = await client.post(
        f"/v1/approvals/{pending['id']}/decision",
        headers=_auth("boss"),
        json={"decision": "approve"},
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    done = await _until(client, run_id, "completed")
    for said in ("db is up", "cache is up", "restarted web"):
        assert said in done["answer"]
    assert lab.lines("restarts") == ["web"]

    # The SSE stream reads the events the workflow recorded: to the pause, then (reconnecting
    # after its last id, as a browser does) to the end of the run.
    first = await _sse(client, run_id, None)
    assert first[0][1] == "run_started" and first[-1][1] == "paused"
    rest = await _sse(client, run_id, first[-1][0])
    kinds = [kind for _, kind in rest]
    assert kinds[-1] == "run_finished"
    assert {"approval_decided", "resumed", "tool_call_finished", "final_answer"} <= set(kinds)


async def _sse(client: httpx.AsyncClient, run_id: str, after: str | None) -> list[tuple[str, str]]:
    """The (id, event) pairs of one GET /v1/runs/{id}/events (it ends at a pause or the end)."""
    headers = _auth("alice") | ({"Last-Event-ID": after} if after else {})
    r = await client.get(f"/v1/runs/{run_id}/events", headers=headers)
    assert r.status_code == 200, r.text
    ids = [line[4:] for line in r.text.splitlines() if line.startswith("id: ")]
    kinds = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert len(ids) == len(kinds)
    return list(zip(ids, kinds, strict=True))


async def test_serve_notify_announces_the_approvals_of_its_temporal_runs(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --engine ... --notify URL`: the URL travels in the workflow's input; the request
    (written by the worker's store activity) and the decision over HTTP (the workflow's
    decide activity) are delivered, signed, by the server's own deliverer."""
    from tests.webhooks.receiver import running_receiver

    secret = "serve-temporal-webhooks-" + "s" * 32
    monkeypatch.setenv("PENGUIFLOW_WEBHOOK_SECRET", secret)
    lab.worker()  # no --notify and no secret of its own: the server delivers
    with running_receiver(secret, fail_first=0) as rx:
        settings = ServerSettings(engine=lab.url, store=lab.store_url, poll_s=0.2, notify=(rx.url,))
        app = create_app(
            settings,
            registry=ToolRegistry(),
            policies=PolicySet.from_documents(POLICIES),
            keys=_ring(),
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", timeout=WAIT_S
            ) as client:
                r = await client.post(
                    "/v1/runs?wait=true", headers=_auth("alice"), json={"query": "parallel"}
                )
                assert r.status_code == 200 and r.json()["status"] == "paused", r.text
                run_id = r.json()["run_id"]
                (pending,) = r.json()["pending_approvals"]
                requested, decided = f"{pending['id']}.requested", f"{pending['id']}.decided"
                await asyncio.to_thread(
                    rx.wait_for, lambda s: requested in s.processed, WAIT_S, "the request"
                )
                r = await client.post(
                    f"/v1/approvals/{pending['id']}/decision",
                    headers=_auth("boss"),
                    json={"decision": "approve"},
                )
                assert r.status_code == 200, r.text
                await asyncio.to_thread(
                    rx.wait_for, lambda s: decided in s.processed, WAIT_S, "the decision"
                )
                await _until(client, run_id, "completed")
    assert rx.processed[requested][0]["approval"]["run_id"] == run_id
    assert rx.processed[decided][0]["approval"]["decision"]["decided_by"] == "boss"
    assert not rx.bad_signatures
