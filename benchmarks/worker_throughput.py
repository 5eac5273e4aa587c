"""Runs per second through Redis + PostgreSQL with N worker processes.

    python benchmarks/worker_throughput.py [--runs 300] [--workers 1,2,4] [--concurrency 8]
                                           [--delay 0.05] [--redis URL] [--postgres DSN]

Each worker is its own OS process: a ``Worker`` on a ``RedisBus`` and a
``PostgresStore``, with an offline ``ScriptedLLM`` (no HTTP, no litellm) that
asks for one tool call and then answers: two model turns of ``--delay``
seconds each (a stand-in for model latency), one Python tool call. Every run
is claimed, checkpointed, finished and acknowledged like a production one.

For each N the coordinator starts N workers, warms them up (one round of
N x concurrency runs), then publishes ``--runs`` jobs at once and polls the
store until all are completed. Reported: runs/s (wall time from the first
publish to the last completed run), the ideal runs/s if only the model delay
counted (N x concurrency / (2 x delay)), and the submit-to-completed latency
p50 / p95. Every run is checked to have completed exactly once.

Uses a Redis stream and a PostgreSQL schema of its own, both cleaned up: Redis from --redis,
else $PENGUIFLOW_BENCH_REDIS, else database 15 of the local server; PostgreSQL from
--postgres, else $PENGUIFLOW_BENCH_POSTGRES, else the local database ``test``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from penguiflow_agents.store import redact_url

REDIS_ENV = "PENGUIFLOW_BENCH_REDIS"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
POSTGRES_ENV = "PENGUIFLOW_BENCH_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
# Longest wait for a worker process to start, and for one round of runs.
START_TIMEOUT_S = 60.0
ROUND_TIMEOUT_S = 600.0
# Polling interval of the store while a round runs.
POLL_S = 0.05


# -- worker process -------------------------------------------------------------------------------


async def worker_main(bus_url: str, store_url: str, concurrency: int, delay: float) -> None:
    from penguiflow_agents import configure_logging
    from penguiflow_agents.bus import RedisBus
    from penguiflow_agents.planner import ReactPlanner
    from penguiflow_agents.store import open_store
    from penguiflow_agents.testing import ScriptedLLM
    from penguiflow_agents.tools import ToolRegistry, tool
    from penguiflow_agents.worker import Worker

    @tool
    async def lookup(key: str) -> str:
        """Return a value for a key."""
        return "value-" + key

    configure_logging(level="warning")  # to stderr: stdout only says "ready"
    store = await open_store(store_url)
    bus = await RedisBus.open(bus_url)
    registry = ToolRegistry()
    registry.add_functions(lookup, source="kv")
    llm = ScriptedLLM(
        [
            {"delay_s": delay, "tool_calls": [{"name": "kv.lookup", "arguments": {"key": "k"}}]},
            {"delay_s": delay, "content": "Looked it up."},
        ],
        record=False,
    )
    planner = ReactPlanner(llm=llm, registry=registry, store=store, claim_lease_s=60)
    worker = Worker(
        bus,
        lambda _m: contextlib.nullcontext(planner),
        store,
        concurrency=concurrency,
        block_s=0.2,
    )
    print("ready", flush=True)
    try:
        await worker.run(handle_signals=True)
    finally:
        await registry.aclose()
        await bus.aclose()
        await store.aclose()


# -- coordinator ----------------------------------------------------------------------------------


def start_workers(
    n: int, bus_url: str, store_url: str, concurrency: int, delay: float
) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                bus_url,
                store_url,
                "--concurrency",
                str(concurrency),
                "--delay",
                str(delay),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]
    deadline = time.monotonic() + START_TIMEOUT_S
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready" once connected
        if line.strip() != "ready" or time.monotonic() > deadline:
            stop_workers(procs)
            raise SystemExit(f"a worker did not start (printed {line!r})")
    return procs


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_round(bus: Any, store: Any, tenant: str, runs: int) -> tuple[float, list[float]]:
    """Publish ``runs`` jobs, wait until all completed; (wall seconds, latencies)."""
    from penguiflow_agents._identity import Headers
    from penguiflow_agents.worker import Job

    headers = Headers(tenant=tenant, principal="bench")
    jobs = [Job.run("look it up", headers=headers) for _ in range(runs)]
    submitted: dict[str, float] = {}
    started = time.monotonic()
    for job in jobs:
        submitted[job.run_id] = time.time()
        await bus.publish(job.to_dict())
    deadline = started + ROUND_TIMEOUT_S
    while True:
        done = await store.list_runs(tenant, status="completed")
        if len(done) >= runs:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(done)} of {runs} runs completed in {ROUND_TIMEOUT_S} s")
        await asyncio.sleep(POLL_S)
    wall = time.monotonic() - started
    every = await store.list_runs(tenant)
    assert len(every) == runs and {r.run_id for r in every} == set(submitted), "lost or extra runs"
    for record in every:
        kinds = [e.kind for e in await store.list_events(tenant, record.run_id)]
        assert kinds.count("run_finished") == 1, f"run {record.run_id} finished {kinds}"
    return wall, [r.updated_at - submitted[r.run_id] for r in every]


async def coordinator(args: argparse.Namespace) -> None:
    import asyncpg
    import redis.asyncio as aioredis

    from penguiflow_agents.bus import RedisBus
    from penguiflow_agents.store import open_store

    schema = f"pf_bench_{uuid.uuid4().hex[:8]}"
    store_url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}"
    store = await open_store(store_url)
    streams: list[str] = []
    counts = [int(n) for n in args.workers.split(",")]
    print(
        f"worker throughput: {args.runs} runs per round, 2 model turns of {args.delay * 1000:.0f} ms "
        f"+ 1 tool call each; concurrency {args.concurrency} per worker; Redis + PostgreSQL "
        f"({os.cpu_count()} CPUs)"
    )
    print(f"{'workers':>7} {'runs/s':>8} {'ideal':>8} {'p50 ms':>8} {'p95 ms':>8}")
    try:
        for n in counts:
            stream = f"pf-bench:{uuid.uuid4().hex[:8]}"
            streams.append(stream)
            bus_url = f"{args.redis}?stream={stream}&group=bench"
            bus = await RedisBus.open(bus_url)
            procs = start_workers(n, bus_url, store_url, args.concurrency, args.delay)
            try:
                await run_round(
                    bus, store, f"warm-{n}-{uuid.uuid4().hex[:6]}", n * args.concurrency
                )
                wall, latencies = await run_round(
                    bus, store, f"bench-{n}-{uuid.uuid4().hex[:6]}", args.runs
                )
            finally:
                stop_workers(procs)
                await bus.aclose()
            latencies.sort()
            p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
            ideal = f"{n * args.concurrency / (2 * args.delay):.1f}" if args.delay > 0 else "-"
            print(
                f"{n:>7} {args.runs / wall:>8.1f} {ideal:>8} "
                f"{statistics.median(latencies) * 1000:>8.0f} {p95 * 1000:>8.0f}"
            )
    finally:
        await store.aclose()
        conn = await asyncpg.connect(args.postgres)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        client = aioredis.Redis.from_url(args.redis)
        for stream in streams:
            await client.delete(stream, f"{stream}:dead")
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per model turn")
    parser.add_argument(
        "--redis",
        default=os.environ.get(REDIS_ENV, DEFAULT_REDIS),
        help=f"Redis URL (default {redact_url(os.environ.get(REDIS_ENV, DEFAULT_REDIS))}: ${REDIS_ENV} when set)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES),
        help=f"PostgreSQL URL (default {redact_url(os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES))}: ${POSTGRES_ENV} when set)",
    )
    parser.add_argument("--worker", nargs=2, metavar=("BUS", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args.worker[0], args.worker[1], args.concurrency, args.delay))
    else:
        asyncio.run(coordinator(args))


if __name__ == "__main__":
    main()
