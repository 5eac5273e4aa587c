"""Property-based fuzzing of the API from its own /openapi.json (schemathesis strategies,
hypothesis): for every operation, valid and invalid requests with a valid key (and valid ones
with generated junk keys); the service never answers 500, and every error has the error shape."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from penguiflow_agents.server import ServerSettings, create_app
from tests.server.conftest import KEYS, Service, open_service

# Streams that only end when their run does (or never: the approvals feed) are not fuzzed here.
SKIPPED = {("GET", "/v1/approvals/events"), ("GET", "/v1/runs/{run_id}/events")}
# Examples per operation, mode and key (more: PENGUIFLOW_FUZZ_EXAMPLES=200 for a long session).
EXAMPLES = int(os.environ.get("PENGUIFLOW_FUZZ_EXAMPLES", "4"))
# Longest one generated request may take (a hang is a failure that names the request).
REQUEST_TIMEOUT_S = 20.0


def _operations() -> list[tuple[str, str]]:
    paths = create_app().openapi()["paths"]
    found = [
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    return sorted(op for op in found if op not in SKIPPED)


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
        # The OpenAI-compatible routes add OpenAI's own keys (type, param) to the same shape.
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_generated_request_gets_a_500(method: str, path: str, mode: GenerationMode) -> None:
    with asyncio.Runner() as runner:
        service, lifespan = runner.run(
            open_service(ServerSettings(requests_per_minute=None, max_concurrent_runs=None))
        )
        service.llm.release.set()  # a "wait" question answers at once
        try:
            schema = schemathesis.openapi.from_dict(service.app.openapi())
            op = schema[path][method.lower()]
            junk = [None] if mode == GenerationMode.POSITIVE else []  # a generated key
            for auth in [f"Bearer {KEYS['boss']}", *junk]:
                fixed = {"Authorization": auth} if auth else None

                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=op.as_strategy(generation_mode=mode, headers=fixed))
                def check(case: Any) -> None:
                    try:
                        kwargs = case.as_transport_kwargs(base_url="http://test")
                        response = runner.run(
                            asyncio.wait_for(_send(service, kwargs), REQUEST_TIMEOUT_S)
                        )
                    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
                        reject()  # a request no HTTP client can send
                    _check(response)

                try:
                    check()
                except Unsatisfiable:  # nothing invalid to generate (no parameters)
                    if mode == GenerationMode.POSITIVE:
                        raise
        finally:
            runner.run(service.client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))
