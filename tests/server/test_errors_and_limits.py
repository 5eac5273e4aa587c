"""Every failure has the error shape; limits answer 429 with Retry-After; bodies are bounded."""

from __future__ import annotations

import httpx

from penguiflow_agents.server import ServerSettings
from tests.server.conftest import KEYS, Service, error_of, open_service


async def test_an_unknown_route_and_a_wrong_method_get_the_error_shape(service: Service) -> None:
    r = await service.get("/v1/nothing")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert "/v1/nothing" in error_of(r)["message"]
    r = await service.client.delete("/v1/tools", headers=service.auth("alice"))
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"


async def test_a_body_that_does_not_validate_is_422_naming_the_field(service: Service) -> None:
    r = await service.post("/v1/runs", json={"question": "hi"})
    assert r.status_code == 422
    message = error_of(r)["message"]
    assert "body.query" in message and "question" in message  # missing + not permitted
    r = await service.client.post(
        "/v1/runs",
        headers={**service.auth("alice"), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"


async def test_a_body_over_the_limit_is_413_and_never_reaches_the_route() -> None:
    svc, lifespan = await open_service(ServerSettings(max_body_bytes=1000, poll_s=0.2))
    try:
        r = await svc.post("/v1/runs", json={"query": "x" * 2000})
        assert r.status_code == 413 and error_of(r)["code"] == "payload_too_large"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"x" * 200

        r = await svc.client.post("/v1/runs", headers=svc.auth("alice"), content=chunks())
        assert r.status_code == 413
        assert await svc.store.list_runs("acme") == []
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_a_key_over_its_request_rate_gets_429_with_retry_after() -> None:
    svc, lifespan = await open_service(ServerSettings(requests_per_minute=3, poll_s=0.2))
    try:
        codes = [(await svc.get("/v1/tools")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await svc.get("/v1/tools")
        assert error_of(r)["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        assert (await svc.get("/v1/tools", "boss")).status_code == 200  # per key
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_a_key_at_its_concurrent_runs_limit_gets_429_until_one_ends() -> None:
    svc, lifespan = await open_service(ServerSettings(max_concurrent_runs=2, poll_s=0.2))
    try:
        for _ in range(2):
            assert (await svc.post("/v1/runs", json={"query": "wait"})).status_code == 202
        r = await svc.post("/v1/runs", json={"query": "wait"})
        assert r.status_code == 429 and r.headers["Retry-After"]
        assert "2 runs in progress" in error_of(r)["message"]
        assert (await svc.post("/v1/runs", "boss", {"query": "add 1 2"})).status_code == 202
    finally:
        svc.llm.release.set()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_act_for_users_runs_as_the_user_within_the_grantable_roles(
    service: Service,
) -> None:
    doc = await service.run("add 1 2", "chat", user={"principal": "uma", "roles": ["viewer"]})
    assert doc["status"] == "completed"
    record = await service.store.get_run("acme", doc["run_id"])
    assert (record.principal, record.roles) == ("uma", ["viewer"])
    r = await service.post(
        "/v1/runs", "chat", {"query": "hi", "user": {"principal": "uma", "roles": ["admin"]}}
    )
    assert r.status_code == 403 and "'admin'" in error_of(r)["message"]
    r = await service.post("/v1/runs", "alice", {"query": "hi", "user": {"principal": "uma"}})
    assert r.status_code == 403 and "act_for_users" in error_of(r)["message"]


async def test_a_viewer_user_does_not_see_tools_outside_its_role(service: Service) -> None:
    doc = await service.run("write x", "chat", user={"principal": "uma", "roles": ["viewer"]})
    assert doc["status"] == "completed"
    assert doc["steps"][0]["outcome"] == "denied"  # files.* is not in the viewer's view


async def test_a_model_the_server_does_not_offer_is_refused(service: Service) -> None:
    r = await service.post("/v1/runs", json={"query": "hi", "model": "replay:/etc/passwd"})
    assert r.status_code == 422 and "not offered" in error_of(r)["message"]
    ok = await service.post("/v1/runs?wait=true", json={"query": "hi", "model": "default"})
    assert ok.status_code == 200 and ok.json()["answer"] == "echo: hi"


async def test_the_authorization_header_must_be_a_bearer_token(service: Service) -> None:
    for value in ("Basic abc", "Bearer", KEYS["alice"]):
        r = await service.client.get("/v1/tools", headers={"Authorization": value})
        assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_health_readiness_and_metrics_answer_without_a_key(service: Service) -> None:
    assert (await service.client.get("/healthz")).json() == {"status": "ok"}
    ready = await service.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
    metrics = await service.client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")


async def test_openapi_describes_the_routes_and_the_bearer_scheme(service: Service) -> None:
    doc = (await service.client.get("/openapi.json")).json()
    for path in ("/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/events", "/v1/tools"):
        assert path in doc["paths"]
    assert "/v1/approvals/{approval_id}/decision" in doc["paths"]
    assert any(s.get("scheme") == "bearer" for s in doc["components"]["securitySchemes"].values())
    assert isinstance(httpx.Response(200, json=doc).json(), dict)


async def test_cors_is_off_unless_origins_are_configured(service: Service) -> None:
    preflight = {
        "Origin": "https://chat.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    r = await service.client.options("/v1/runs", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    svc, lifespan = await open_service(
        ServerSettings(cors_origins=("https://chat.example.com",), poll_s=0.2)
    )
    try:
        r = await svc.client.options("/v1/runs", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://chat.example.com"
        other = await svc.client.options(
            "/v1/runs", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
