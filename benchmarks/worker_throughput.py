"""Runs per second with N worker processes: Redis + PostgreSQL, and Temporal + PostgreSQL.

    python benchmarks/worker_throughput.py [--runs 100] [--workers 1,2,4] [--concurrency 8]
                                           [--delay 0.05] [--engines bus,temporal]
                                           [--decisions 10] [--temporal URL]
                                           [--redis URL] [--postgres DSN]

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

Both engines run the same shape in the same invocation: ``bus`` (a ``Worker``
on Redis) and ``temporal`` (a ``TemporalWorker``; the workflow records the run
in the same PostgreSQL store; the service is ``--temporal``, else a
``temporal server start-dev`` of this script). Then, with one worker per
engine, ``--decisions`` runs that pause for an approval, one at a time: the
time from the decision (``ApprovalService.decide`` + ``submit_resume`` on the
bus, ``TemporalEngine.decide`` on Temporal) to the event saying the approved
call has run (``approval_applied`` or ``tool_call_finished``), p50 / p99.

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


# The approved call has run: the first of these after ``approval_decided``.
RAN = ("approval_applied", "tool_call_finished")
POLICY = {
    "tenant": "*",
    "allow": ["kv.*"],
    "approvals": [{"match": "kv.gated", "approvers": ["role:admin"], "reason": "bench"}],
}


def _parts(delay: float) -> tuple[Any, Any]:
    """The tools and the model both engines' workers use."""
    from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
    from penguiflow_agents.testing import ScriptedLLM
    from penguiflow_agents.tools import ToolRegistry, tool

    @tool
    async def lookup(key: str) -> str:
        """Return a value for a key."""
        return "value-" + key

    @tool
    async def gated(key: str) -> str:
        """Change a key (needs an approval)."""
        return "changed-" + key

    async def model(request: LLMRequest) -> LLMResponse:
        question = next(str(m["content"]) for m in request.messages if m["role"] == "user")
        if any(m["role"] == "assistant" for m in request.messages):
            await asyncio.sleep(delay)
            return LLMResponse(content="Looked it up.")
        name = "kv.gated" if question == "change it" else "kv.lookup"
        await asyncio.sleep(delay)
        return LLMResponse(
            content=None, tool_calls=[LLMToolCall(id="c1", name=name, arguments={"key": "k"})]
        )

    registry = ToolRegistry()
    registry.add_functions(lookup, gated, source="kv")
    return registry, ScriptedLLM([model, model], record=False)


async def worker_main(bus_url: str, store_url: str, concurrency: int, delay: float) -> None:
    from penguiflow_agents import configure_logging
    from penguiflow_agents.bus import RedisBus
    from penguiflow_agents.planner import ReactPlanner
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.store import open_store
    from penguiflow_agents.worker import Worker

    configure_logging(level="warning")  # to stderr: stdout only says "ready"
    store = await open_store(store_url)
    registry, llm = _parts(delay)
    try:
        if bus_url.startswith("temporal://"):
            from penguiflow_agents.temporal import TemporalTarget, TemporalWorker

            worker: Any = TemporalWorker(
                TemporalTarget.parse(bus_url),
                store=store,
                registry=registry,
                open_model=lambda _m: contextlib.nullcontext(llm),
                policy_documents=[POLICY],
                concurrency=concurrency,
            )
            print("ready", flush=True)
            await worker.run(handle_signals=True)
            return
        bus = await RedisBus.open(bus_url)
        planner = ReactPlanner(
            llm=llm,
            registry=registry,
            store=store,
            policies=PolicySet.from_documents([POLICY]),
            claim_lease_s=60,
        )
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
            await bus.aclose()
    finally:
        await registry.aclose()
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


class Fleet:
    """One engine's way to start runs and decide approvals (the public API the CLI uses)."""

    def __init__(self, engine: str, url: str, store: Any) -> None:
        self.engine, self.url, self.store = engine, url, store
        self.client: Any = None

    async def open(self) -> None:
        if self.engine == "temporal":
            from penguiflow_agents.temporal import TemporalEngine

            self.client = await TemporalEngine.connect(self.url)
        else:
            from penguiflow_agents.bus import RedisBus

            self.client = await RedisBus.open(self.url)

    async def aclose(self) -> None:
        if self.engine == "bus":
            await self.client.aclose()

    async def submit(self, query: str, headers: Any) -> str:
        if self.engine == "temporal":
            run_id: str = await self.client.submit(query, headers=headers)
            return run_id
        from penguiflow_agents.worker import submit_run

        job = await submit_run(self.client, query, headers=headers)
        return job.run_id

    async def decide(self, tenant: str, approval_id: str, run_id: str) -> None:
        from penguiflow_agents._identity import Headers

        decider = {"principal": "boss", "roles": ["admin"], "decision": "approve"}
        if self.engine == "temporal":
            await self.client.decide(self.store, tenant=tenant, approval_id=approval_id, **decider)
            return
        from penguiflow_agents.approvals import ApprovalService
        from penguiflow_agents.policy import PolicySet
        from penguiflow_agents.worker import submit_resume

        service = ApprovalService(self.store, PolicySet.from_documents([POLICY]))
        await service.decide(tenant=tenant, approval_id=approval_id, **decider)
        await submit_resume(self.client, run_id, headers=Headers(tenant=tenant, principal="boss"))


async def run_round(fleet: Fleet, tenant: str, runs: int) -> tuple[float, list[float]]:
    """Start ``runs`` runs, wait until all completed; (wall seconds, latencies)."""
    from penguiflow_agents._identity import Headers

    store = fleet.store
    headers = Headers(tenant=tenant, principal="bench")
    submitted: dict[str, float] = {}
    gate = asyncio.Semaphore(16)

    async def one() -> None:
        async with gate:
            at = time.time()
            submitted[await fleet.submit("look it up", headers)] = at

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(runs)))
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
    for record in every:  # a run's last event can land just after its record says completed
        while True:
            kinds = [e.kind for e in await store.list_events(tenant, record.run_id)]
            if "run_finished" in kinds or time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_S)
        assert kinds.count("run_finished") == 1, f"run {record.run_id} finished {kinds}"
    return wall, [r.updated_at - submitted[r.run_id] for r in every]


async def decision_latencies(fleet: Fleet, count: int) -> list[float]:
    """Seconds from each decision to the approved call having run, one run at a time."""
    from penguiflow_agents._identity import Headers
    from penguiflow_agents.worker import wait_for_run

    tenant = f"decide-{uuid.uuid4().hex[:6]}"
    headers = Headers(tenant=tenant, principal="bench")
    out: list[float] = []
    for _ in range(count):
        run_id = await fleet.submit("change it", headers)
        paused = await wait_for_run(fleet.store, tenant, run_id, timeout_s=ROUND_TIMEOUT_S)
        assert paused.status == "paused", paused.error
        (pending,) = paused.pending_approvals
        at = time.time()
        await fleet.decide(tenant, pending.id, run_id)
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        while True:
            events = await fleet.store.list_events(tenant, run_id)
            decided = [e.seq for e in events if e.kind == "approval_decided"]
            ran = [e for e in events if e.kind in RAN and decided and e.seq > decided[0]]
            if ran:
                out.append(ran[0].ts - at)
                break
            assert time.monotonic() < deadline, f"run {run_id} did not go on after its decision"
            await asyncio.sleep(0.01)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def coordinator(args: argparse.Namespace) -> None:
    import asyncpg
    import redis.asyncio as aioredis

    from penguiflow_agents.store import open_store

    schema = f"pf_bench_{uuid.uuid4().hex[:8]}"
    store_url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}"
    store = await open_store(store_url)
    streams: list[str] = []
    counts = [int(n) for n in args.workers.split(",")]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - {"bus", "temporal"})
    if unknown:
        raise SystemExit(f"--engines: unknown engine(s) {unknown}; use bus and/or temporal")
    load = os.getloadavg()
    print(
        f"worker throughput: {args.runs} runs per round, 2 model turns of {args.delay * 1000:.0f} ms "
        f"+ 1 tool call each; concurrency {args.concurrency} per worker; PostgreSQL store "
        f"({os.cpu_count()} CPUs; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at start)"
    )
    print(f"{'engine':>8} {'workers':>7} {'runs/s':>8} {'ideal':>8} {'p50 ms':>8} {'p95 ms':>8}")
    decisions: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        temporal_url = args.temporal
        if "temporal" in engines and not temporal_url:
            from penguiflow_agents.testing.temporal_dev import TemporalDevServer

            temporal_url = stack.enter_context(TemporalDevServer()).url
        try:
            for engine in engines:
                for n in counts:
                    if engine == "temporal":
                        url = f"{temporal_url}?task_queue=pf-bench-{uuid.uuid4().hex[:8]}"
                    else:
                        stream = f"pf-bench:{uuid.uuid4().hex[:8]}"
                        streams.append(stream)
                        url = f"{args.redis}?stream={stream}&group=bench"
                    fleet = Fleet(engine, url, store)
                    await fleet.open()
                    procs = start_workers(n, url, store_url, args.concurrency, args.delay)
                    try:
                        await run_round(
                            fleet, f"warm-{n}-{uuid.uuid4().hex[:6]}", n * args.concurrency
                        )
                        wall, latencies = await run_round(
                            fleet, f"bench-{n}-{uuid.uuid4().hex[:6]}", args.runs
                        )
                        if n == counts[0] and args.decisions > 0:
                            decisions[engine] = await decision_latencies(fleet, args.decisions)
                    finally:
                        stop_workers(procs)
                        await fleet.aclose()
                    ideal = (
                        f"{n * args.concurrency / (2 * args.delay):.1f}" if args.delay > 0 else "-"
                    )
                    print(
                        f"{engine:>8} {n:>7} {args.runs / wall:>8.1f} {ideal:>8} "
                        f"{statistics.median(latencies) * 1000:>8.0f} "
                        f"{_pct(latencies, 0.95) * 1000:>8.0f}",
                        flush=True,
                    )
            for engine, values in decisions.items():
                print(
                    f"{engine:>8}: decision -> approved call done, {len(values)} runs with "
                    f"{counts[0]} worker(s): p50 {statistics.median(values) * 1000:.0f} ms, "
                    f"p99 {_pct(values, 0.99) * 1000:.0f} ms"
                )
            load = os.getloadavg()
            print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
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
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per model turn")
    parser.add_argument("--engines", default="bus,temporal", help="bus and/or temporal")
    parser.add_argument("--decisions", type=int, default=10, help="paused runs to decide")
    parser.add_argument(
        "--temporal",
        default=None,
        metavar="URL",
        help="temporal://HOST:PORT (default: a dev server)",
    )
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
