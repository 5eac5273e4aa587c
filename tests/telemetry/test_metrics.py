"""Prometheus metrics scraped over HTTP after a scripted workload, parsed with prometheus_client.

Counts equal the workload's; the label sets do not grow with the number of
runs (never a run id, a trace id or an argument); the Grafana dashboard uses
only metric names that exist.
"""

from __future__ import annotations

import json
import re
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from penguiflow_agents import Headers, ReactPlanner, ToolRegistry
from penguiflow_agents.cli._observe import serve_metrics
from penguiflow_agents.telemetry import Metrics, Telemetry
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import tool

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "penguiflow-agents.json"
SCRIPT: list[dict[str, Any]] = [
    {
        "tool_calls": [
            {"name": "kv.lookup", "arguments": {"key": "secret-argument-value"}},
            {"name": "kv.broken", "arguments": {}},
            {"name": "ghost.invented_by_the_model", "arguments": {}},
        ]
    },
    {"content": "done"},
]


@tool(idempotent=True)
async def lookup(key: str) -> str:
    """A value for a key."""
    return "value-" + key


@tool
async def broken() -> str:
    """Always fails."""
    raise RuntimeError("out of order")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def fetch(url: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(url, timeout=30)).text


async def scrape(url: str) -> Samples:
    text = await fetch(url)
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def workload(planner: ReactPlanner, runs: int) -> list[str]:
    ids = []
    for i in range(runs):
        tenant = f"tenant-{i}"  # many tenants: no tenant label unless asked for
        result = await planner.run("go", headers=Headers(tenant=tenant, principal="p"))
        assert result.status == "completed", result.error
        ids.append(result.run_id)
    return ids


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_scraped_counts_equal_the_workload_and_label_sets_stay_bounded() -> None:
    registry = ToolRegistry()
    registry.add_functions(lookup, broken, source="kv")
    metrics = Metrics()
    planner = Telemetry(metrics=metrics).instrument(
        ReactPlanner(llm=ScriptedLLM(SCRIPT), registry=registry)
    )
    async with AsyncExitStack() as stack:
        port = serve_metrics(stack, metrics, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/metrics"
        first_ids = await workload(planner, 3)
        first = await scrape(url)
        assert value(first, "penguiflow_runs_total", status="completed") == 3
        assert value(first, "penguiflow_run_seconds_count") == 3
        assert value(first, "penguiflow_model_calls_total", model="scripted", outcome="ok") == 6
        assert value(first, "penguiflow_model_call_seconds_count", model="scripted") == 6
        calls = "penguiflow_tool_calls_total"
        assert value(first, calls, source="kv", tool="kv.lookup", outcome="ok") == 3
        assert value(first, calls, source="kv", tool="kv.broken", outcome="tool_error") == 3
        assert value(first, calls, source="_unknown", tool="_unknown", outcome="not_found") == 3
        assert value(first, "penguiflow_tool_call_seconds_count", source="kv") == 6
        assert value(first, "penguiflow_source_queue_wait_seconds_count", source="kv") == 6
        assert value(first, "penguiflow_source_up", source="kv") == 1
        assert value(first, "penguiflow_breaker_open", source="kv") == 0
        assert value(first, "penguiflow_source_inflight", source="kv") == 0

        second_ids = await workload(planner, 5)
        second = await scrape(url)
        assert set(second) == set(first)  # 5 more runs, 5 more tenants: not one more series
        assert value(second, "penguiflow_runs_total", status="completed") == 8
        assert value(second, calls, source="kv", tool="kv.lookup", outcome="ok") == 8
        text = await fetch(url)
    await registry.aclose()
    for run_id in first_ids + second_ids:
        assert run_id not in text
    assert "secret-argument-value" not in text and "tenant-" not in text
    assert "invented_by_the_model" not in text


async def test_the_tenant_becomes_a_label_only_when_asked_for() -> None:
    registry = ToolRegistry()
    registry.add_functions(lookup, broken, source="kv")
    metrics = Metrics(tenant_label=True)
    planner = Telemetry(metrics=metrics).instrument(
        ReactPlanner(llm=ScriptedLLM(SCRIPT), registry=registry)
    )
    await workload(planner, 2)
    await registry.aclose()
    text = metrics.render().decode()
    assert 'penguiflow_runs_total{status="completed",tenant="tenant-0"} 1.0' in text
    assert 'penguiflow_runs_total{status="completed",tenant="tenant-1"} 1.0' in text


def test_the_grafana_dashboard_uses_only_metric_names_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"penguiflow_[a-z_]+", e)}
    text = Metrics().render().decode()
    exposed = set(re.findall(r"^# TYPE (penguiflow_[a-z_]+) ", text, flags=re.M))
    exposed |= {f"{n}_total" for n in exposed} | {f"{n}_bucket" for n in exposed}
    assert used, "the dashboard has no queries"
    assert used <= exposed, used - exposed
    # Every metric the issue names has a panel.
    for name in (
        "penguiflow_runs_total", "penguiflow_run_seconds", "penguiflow_model_calls_total",
        "penguiflow_model_call_seconds", "penguiflow_model_tokens_total",
        "penguiflow_model_cost_usd_total", "penguiflow_tool_calls_total",
        "penguiflow_tool_call_seconds", "penguiflow_source_inflight",
        "penguiflow_source_queue_wait_seconds", "penguiflow_source_up", "penguiflow_breaker_open",
        "penguiflow_approvals_total", "penguiflow_approval_wait_seconds", "penguiflow_paused_runs",
        "penguiflow_bus_backlog", "penguiflow_bus_dead_letters",
    ):  # fmt: skip
        assert any(name in e for e in exprs), name


async def test_the_bus_gauges_show_the_backlog_and_the_dead_letters_of_a_redis_bus(
    redis_url: str,
) -> None:
    """What ``worker --metrics-port`` and ``serve`` expose: the refresher they start reads the
    bus's backlog and dead letters (a job delivered past ``max_deliveries``) into the gauges."""
    import asyncio
    import time
    import uuid

    import redis.asyncio as aioredis

    from penguiflow_agents.bus import RedisBus
    from penguiflow_agents.cli._observe import start_refresher
    from penguiflow_agents.store import MemoryStore

    stream = f"pf-test:{uuid.uuid4().hex[:12]}"
    bus = await RedisBus.open(
        redis_url, stream=stream, group="workers", visibility_timeout_s=0.1, max_deliveries=1
    )
    metrics = Metrics()
    try:
        await bus.publish({"poison": True})
        [held] = await bus.consume("crashy", block_s=0.5)  # never acked: the consumer "died"
        await asyncio.sleep(0.2)
        assert await bus.consume("next", block_s=0.05) == []  # past max_deliveries: set aside
        for i in range(2):
            await bus.publish({"waiting": i})
        async with AsyncExitStack() as stack:
            port = serve_metrics(stack, metrics, "127.0.0.1", 0)
            start_refresher(stack, metrics, store=MemoryStore(), bus=bus)
            url = f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 30
            while True:
                samples = await scrape(url)
                if value(samples, "penguiflow_bus_dead_letters") == 1:
                    break
                assert time.monotonic() < deadline, "the dead letter never reached the gauge"
                await asyncio.sleep(0.05)
            assert value(samples, "penguiflow_bus_backlog") == 2
            assert value(samples, "penguiflow_paused_runs") == 0
        assert held.job == {"poison": True}
    finally:
        await bus.aclose()
        client = aioredis.Redis.from_url(redis_url)
        await client.delete(stream, f"{stream}:dead")
        await client.aclose()


def test_the_exposition_is_prometheus_clients_own() -> None:
    """The hot counters and histograms are plain numbers behind one collector: what a scrape
    reads is line for line what prometheus_client's own Counter and Histogram would expose
    for the same updates (names, help, types, labels, buckets, values)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    for tenant_label in (False, True):
        ours = Metrics(tenant_label=tenant_label)
        r = CollectorRegistry()

        def reference(family: Any, r: Any = r) -> Any:  # prometheus_client's own, same shape
            labels = list(family.labels)
            if family.buckets is None:
                return Counter(family.name, family.documentation, labels, registry=r)
            return Histogram(
                family.name, family.documentation, labels, buckets=family.buckets, registry=r
            )

        runs, run_s, calls = (
            reference(ours.runs),
            reference(ours.run_seconds),
            reference(ours.model_calls),
        )
        model_s, tokens = reference(ours.model_seconds), reference(ours.model_tokens)
        tool_s = reference(ours.tool_seconds)
        tv = ["t1"] if tenant_label else []
        for seconds in (0.0, 0.1, 0.25, 7.0, 1e9):  # on a bound, between, past the last
            ours.run_ended("completed", seconds, "t1")
            runs.labels("completed", *tv).inc()
            (run_s.labels(*tv) if tv else run_s).observe(seconds)
            ours.model_call("gpt", "ok", seconds, "t1", input_tokens=3, output_tokens=2)
            calls.labels("gpt", "ok", *tv).inc()
            model_s.labels("gpt").observe(seconds)
            tokens.labels("gpt", "input", *tv).inc(3)
            tokens.labels("gpt", "output", *tv).inc(2)
            ours.tool_seconds_observe("kv", seconds / 1000)
            tool_s.labels("kv").observe(seconds / 1000)

        def lines(text: bytes, names: set[str]) -> list[str]:
            kept = []
            for line in text.decode().splitlines():
                name = re.split(r"[ {]", line.removeprefix("# HELP ").removeprefix("# TYPE "))[0]
                base = re.sub(r"_(total|count|sum|bucket|created)$", "", name)
                if base in names and "_created" not in line:  # created: a clock value
                    kept.append(line)
            return sorted(kept)

        names = {
            "penguiflow_runs",
            "penguiflow_run_seconds",
            "penguiflow_model_calls",
            "penguiflow_model_call_seconds",
            "penguiflow_model_tokens",
            "penguiflow_tool_call_seconds",
        }
        expected = lines(generate_latest(r), names)
        assert expected and lines(ours.render(), names) == expected


@tool(idempotent=True)
async def slow(key: str) -> str:
    """Holds its slot a while."""
    import asyncio

    await asyncio.sleep(0.3)
    return key


class _PlainLimiter:
    """A limiter of a user's own: its slots report no wait (the source reads the clock)."""

    def __init__(self) -> None:
        from penguiflow_agents.tools._slots import LocalSlotLimiter

        self._inner = LocalSlotLimiter()

    async def acquire(self, source: str, **kwargs: Any) -> Any:
        import asyncio

        await asyncio.sleep(0.2)  # a wait only the clock around acquire() sees
        slot = await self._inner.acquire(source, **kwargs)

        class Plain:
            async def release(self) -> None:
                await slot.release()

        return Plain()


async def test_queue_waits_are_counted_from_the_limiter_or_the_clock() -> None:
    import asyncio

    def waits(metrics: Metrics) -> tuple[list[int], float]:
        series = metrics.queue_waited("kv")
        return list(series.counts), series.sum

    # The built-in limiter reports each slot's wait: the first call's slot is free at once
    # (bucket 0.0), the second waits ~0.3 s for it.
    registry = ToolRegistry()
    registry.add_functions(slow, source="kv", max_concurrency=1)
    metrics = Metrics()
    metrics.watch_registry(registry)
    await registry.list_tools()
    results = await asyncio.gather(
        registry.call("kv.slow", {"key": "a"}), registry.call("kv.slow", {"key": "b"})
    )
    assert all(r.ok for r in results), results
    counts, total = waits(metrics)
    assert sum(counts) == 2 and counts[0] == 1, counts  # one at once, one after a wait
    assert 0.2 < total < 2.0, total
    await registry.aclose()

    # A limiter that reports nothing: the source's own clock around acquire() counts.
    registry = ToolRegistry()
    registry.add_functions(slow, source="kv", max_concurrency=1)
    registry.use_limiter(_PlainLimiter())  # type: ignore[arg-type]
    metrics = Metrics()
    metrics.watch_registry(registry)
    await registry.list_tools()
    assert (await registry.call("kv.slow", {"key": "a"})).ok
    counts, total = waits(metrics)
    assert sum(counts) == 1 and counts[0] == 0, counts
    assert 0.15 < total < 2.0, total
    await registry.aclose()
