"""The service's observability: ``/metrics`` counts the runs made through ``POST /v1/runs``,
a request's W3C ``traceparent`` continues into its run's spans, and ``GET /v1/runs`` lists
the caller's tenant's runs only."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from penguiflow_agents.server import ServerSettings
from penguiflow_agents.telemetry import Telemetry
from tests.server.conftest import Service, error_of, open_service


async def _scrape(svc: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await svc.client.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


async def test_metrics_count_the_runs_made_through_the_api(service: Service) -> None:
    await service.run("add 2 3")
    await service.run("hello", who="globex")
    samples = await _scrape(service)
    assert samples[("penguiflow_runs_total", (("status", "completed"),))] == 2
    assert samples[("penguiflow_run_seconds_count", ())] == 2
    key = (
        "penguiflow_tool_calls_total",
        (("outcome", "ok"), ("source", "math"), ("tool", "math.add")),
    )
    assert samples[key] == 1
    calls = sum(v for (n, _), v in samples.items() if n == "penguiflow_model_calls_total")
    assert calls == 3  # two turns for the tool run, one for the echo
    # No label carries a run id, whatever the number of runs.
    assert not any("run_id" in dict(labels) for _, labels in samples)


async def test_metrics_tenant_label_splits_runs_by_tenant() -> None:
    svc, lifespan = await open_service(ServerSettings(poll_s=0.2, metrics_tenant_label=True))
    try:
        await svc.run("hello")
        await svc.run("hello again")
        await svc.run("hi", who="globex")
        samples = await _scrape(svc)
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
    runs = {
        dict(labels)["tenant"]: v
        for (n, labels), v in samples.items()
        if n == "penguiflow_runs_total"
    }
    assert runs == {"acme": 2, "globex": 1}


async def test_a_requests_traceparent_continues_into_its_run() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider=provider)
    svc, lifespan = await open_service(telemetry=telemetry)
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        r = await svc.client.post(
            "/v1/runs?wait=true",
            headers={**svc.auth("alice"), "traceparent": f"00-{trace_id}-{parent_id}-01"},
            json={"query": "add 1 2"},
        )
        assert r.status_code == 200, r.text
        await svc.run("no trace context here")
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
    agents = [s for s in exporter.get_finished_spans() if s.name == "invoke_agent"]
    assert len(agents) == 2
    traced = [s for s in agents if s.context.trace_id == int(trace_id, 16)]
    assert len(traced) == 1
    (run,) = traced
    assert run.parent is not None and run.parent.span_id == int(parent_id, 16)
    assert (run.attributes or {})["penguiflow.run.id"] == r.json()["run_id"]
    # The run's tool call is a child in the same trace.
    tools = [s for s in exporter.get_finished_spans() if s.name.startswith("execute_tool")]
    assert any(s.context.trace_id == int(trace_id, 16) for s in tools)
    # The other run started a trace of its own.
    (other,) = [s for s in agents if s is not run]
    assert other.context.trace_id != int(trace_id, 16)


async def _ids(svc: Service, who: str, query: str = "") -> list[str]:
    r = await svc.get("/v1/runs" + query, who)
    assert r.status_code == 200, r.text
    return [run["run_id"] for run in r.json()["runs"]]


async def test_run_list_shows_the_callers_tenant_only(service: Service) -> None:
    first = (await service.run("hello"))["run_id"]
    second = (await service.run("add 1 1", who="boss"))["run_id"]
    foreign = (await service.run("hi", who="globex"))["run_id"]
    assert await _ids(service, "alice") == [second, first]  # newest first, the tenant's runs
    assert await _ids(service, "globex") == [foreign]
    assert foreign not in await _ids(service, "alice", "?limit=1000&since=1h")
    assert await _ids(service, "alice", "?limit=1") == [second]
    assert await _ids(service, "alice", "?status=paused") == []
    assert await _ids(service, "alice", "?tool=math.*") == [second]
    r = await service.get("/v1/runs", "alice")
    doc: dict[str, Any] = r.json()["runs"][0]
    assert doc["status"] == "completed" and doc["tools"] == ["math.add"]


@pytest.mark.parametrize(
    ("query", "quoted"),
    [("?status=sleeping", "'sleeping'"), ("?since=yesterday", "'yesterday'"), ("?limit=0", "")],
)
async def test_run_list_refuses_bad_filters(service: Service, query: str, quoted: str) -> None:
    r = await service.get("/v1/runs" + query, "alice")
    assert r.status_code == 422, r.text
    assert quoted in error_of(r)["message"]


async def test_run_list_needs_a_key(service: Service) -> None:
    r = await service.get("/v1/runs", None)
    assert r.status_code == 401


def test_serve_metrics_tenant_label_option_reaches_the_settings() -> None:
    from penguiflow_agents.cli import build_parser
    from penguiflow_agents.cli._serve import settings_of

    plain = settings_of(build_parser().parse_args(["serve"]))
    labelled = settings_of(build_parser().parse_args(["serve", "--metrics-tenant-label"]))
    assert (plain.metrics_tenant_label, labelled.metrics_tenant_label) == (False, True)


async def test_serve_prunes_old_ended_runs_periodically_and_keeps_paused_ones(
    tmp_path: Any,
) -> None:
    """``serve --prune-older-than 30d``: the service deletes ended runs past the age (at start,
    then every ``--prune-every``), as ``runs prune`` does; paused and recent runs stay."""
    import asyncio
    import sqlite3
    import time

    from penguiflow_agents.store import RunRecord, SQLiteStore

    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    for run_id, status in (("old-done", "completed"), ("old-failed", "failed"), ("old-paused", "paused"), ("new-done", "completed")):  # fmt: skip
        await store.create_run(
            RunRecord(run_id=run_id, tenant="acme", principal="alice", status=status)
        )
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE runs SET updated_at = updated_at - ? WHERE run_id LIKE 'old-%'", (40 * 86400.0,)
        )
    settings = ServerSettings(poll_s=0.2, prune_older_than="30d", prune_every="1h")
    svc, lifespan = await open_service(settings, store=store)
    try:
        deadline = time.monotonic() + 30
        while await store.count_runs() != 2:
            assert time.monotonic() < deadline, "the service never pruned"
            await asyncio.sleep(0.05)
        left = {r.run_id for r in await store.list_runs("acme")}
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await store.aclose()
    assert left == {"old-paused", "new-done"}


def test_serve_prune_options_reach_the_settings_and_a_bad_age_is_a_usage_error() -> None:
    from penguiflow_agents.cli import build_parser
    from penguiflow_agents.cli._serve import settings_of
    from penguiflow_agents.exceptions import UserError

    parse = build_parser().parse_args
    assert settings_of(parse(["serve"])).prune_older_than is None
    pruning = settings_of(parse(["serve", "--prune-older-than", "30d", "--prune-every", "6h"]))
    assert (pruning.prune_older_than, pruning.prune_every) == ("30d", "6h")
    with pytest.raises(UserError, match="--prune-older-than 'soon' is not a duration"):
        settings_of(parse(["serve", "--prune-older-than", "soon"]))
