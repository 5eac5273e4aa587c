"""Property-based fuzzing of the API from its own /openapi.json (schemathesis strategies,
hypothesis): valid and invalid requests, with a valid key and with junk ones; the service
never answers 500, and every error has the error shape."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from penguiflow_agents.server import ServerSettings
from tests.server.conftest import KEYS, Service, open_service

# Streams that only end when their run does (or never: the approvals feed) are not fuzzed here.
SKIPPED = {("GET", "/v1/approvals/events"), ("GET", "/v1/runs/{run_id}/events")}
EXAMPLES = 6


async def _send(service: Service, kwargs: dict[str, Any]) -> httpx.Response:
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        body["content"] = kwargs["data"]
    return await service.client.request(
        kwargs["method"],
        kwargs["url"],
        headers={k: v for k, v in kwargs["headers"].items() if k.lower() != "connection"},
        params=kwargs.get("params") or {},
        **body,
    )


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_500(mode: GenerationMode) -> None:
    with asyncio.Runner() as runner:
        service, lifespan = runner.run(
            open_service(ServerSettings(requests_per_minute=None, max_concurrent_runs=None))
        )
        service.llm.release.set()  # a "wait" question answers at once
        try:
            schema = schemathesis.openapi.from_dict(service.app.openapi())
            operations = [r.ok() for r in schema.get_all_operations()]
            seen = 0
            for op in operations:
                if (op.method.upper(), op.path) in SKIPPED:
                    continue
                junk = [None] if mode == GenerationMode.POSITIVE else []  # a generated key
                for auth in [f"Bearer {KEYS['boss']}", *junk]:
                    fixed = {"Authorization": auth} if auth else None
                    strategy = op.as_strategy(generation_mode=mode, headers=fixed)

                    @settings(
                        max_examples=EXAMPLES,
                        deadline=None,
                        database=None,
                        suppress_health_check=list(HealthCheck),
                    )
                    @given(case=strategy)
                    def check(case: Any) -> None:
                        try:
                            kwargs = case.as_transport_kwargs(base_url="http://test")
                            response = runner.run(_send(service, kwargs))
                        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
                            reject()  # a request no HTTP client can send
                        _check(response)

                    try:
                        check()
                    except Unsatisfiable:  # nothing invalid to generate (no parameters)
                        continue
                    seen += 1
            assert seen >= (20 if mode == GenerationMode.POSITIVE else 5)
        finally:
            runner.run(service.client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))
