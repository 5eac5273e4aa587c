"""The HTTP service against the same runs in process, on a real uvicorn server process.

    python benchmarks/service.py [--runs 2000] [--clients 50] [--rounds 3]
                                [--approvals 100] [--streams 1000]

One run: a scripted model (in process, no HTTP to a model) asks for one Python
tool call, then answers (2 model turns, 1 call); SQLite store (the server's
default), the same tools and policies on both sides.

- **in process**: ``--clients`` tasks call ``ReactPlanner.run`` (the public API)
  until ``--runs`` runs are done: runs per second;
- **service**: ``penguiflow-agents``' app (``create_app``) in its own uvicorn
  process on 127.0.0.1; ``--clients`` concurrent HTTP clients (aiohttp, in this
  process) send ``POST /v1/runs?wait=true`` until ``--runs`` runs are done.
  Required: at least 1/3 of the in-process rate (aim 1/2); exits 1 below it.
  ``--rounds`` rounds alternate the two sides; the median round's ratio counts;
- **approval to finish**: ``--approvals`` runs that pause on a gated call, one
  at a time: with the run's event stream open (``Last-Event-ID`` = the
  ``paused`` event), the time from sending the decision
  (``POST /v1/approvals/{id}/decision``) to reading ``run_finished`` on the
  stream: p50 / p99;
- **RSS with open streams**: the server process's resident memory with
  ``--streams`` SSE streams open at once (on paused runs: they stay open),
  against its RSS before they opened. Aim: under 200 MB.

The HTTP clients share the machine's cores with the server, as they would on
one box; the figures are wall-clock and noisy on a loaded machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import open_store
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

TENANT = "acme"
POLICY = {
    "tenant": TENANT,
    "allow": ["kv.*", "files.*"],
    "approvals": [{"match": "files.write", "approvers": ["role:admin"], "reason": "Writes"}],
}
PLAIN_QUERY = "look up k1"
GATED_QUERY = "save the report"
# Longest wait for the server process to answer /healthz.
SERVER_START_TIMEOUT_S = 60.0
# Longest wait for one HTTP answer (a run with wait=true included).
HTTP_TIMEOUT_S = 120.0
# Streams opened at once while building up --streams.
STREAM_OPEN_BATCH = 100


@tool
async def lookup(key: str) -> str:
    """Return a value for a key."""
    return "value-" + key


@tool
async def write(path: str, text: str) -> str:
    """Pretend to write a file."""
    return f"wrote {len(text)} characters to {path}"


def _first_turn(request: LLMRequest) -> LLMResponse:
    question = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
    if question == GATED_QUERY:
        call = LLMToolCall(id="c1", name="files.write", arguments={"path": "/r", "text": "Q3"})
    else:
        call = LLMToolCall(id="c1", name="kv.lookup", arguments={"key": "k1"})
    return LLMResponse(content=None, tool_calls=[call])


def build() -> tuple[ScriptedLLM, ToolRegistry, PolicySet]:
    llm = ScriptedLLM([_first_turn, {"content": "Done."}], record=False)
    registry = ToolRegistry()
    registry.add_functions(lookup, source="kv")
    registry.add_functions(write, source="files")
    return llm, registry, PolicySet.from_documents([POLICY])


# -- the server process ----------------------------------------------------------------------


def serve(port: int, workdir: Path) -> None:
    """The server side (``--serve``): the app over the scripted model, in uvicorn."""
    import structlog
    import uvicorn

    from penguiflow_agents.server import ServerSettings, create_app

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    llm, registry, policies = build()
    settings = ServerSettings(
        store=f"sqlite:///{workdir / 'server.db'}",
        keys=str(workdir / "keys.yaml"),
        requests_per_minute=None,
        max_concurrent_runs=None,
    )
    app = create_app(settings, registry=registry, policies=policies, llm=llm)
    profile_to = os.environ.get("PENGUIFLOW_BENCH_PROFILE")  # cProfile the server into this file
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", backlog=4096, timeout_keep_alive=120
    )
    server = uvicorn.Server(config)
    if profiler is not None:  # uvicorn re-raises SIGTERM after its shutdown: stop it ourselves
        import signal

        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile_to))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def server_process(workdir: Path) -> AsyncIterator[tuple[str, psutil.Process]]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - once, before the measured part
        [sys.executable, __file__, "--serve", str(port), str(workdir)],
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        async with httpx.AsyncClient(base_url=url) as probe:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the server process exited with status {proc.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not answer /healthz in time")
                await asyncio.sleep(0.2)
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- measurements ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    wall: float  # runs per second
    cpu: float  # runs per CPU-second of the process that executes them
    client_ms: float = 0.0  # CPU ms per run spent by the HTTP clients (service only)


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def in_process(workdir: Path, runs: int, clients: int) -> Rate:
    llm, registry, policies = build()
    store = await open_store(f"sqlite:///{workdir / 'inprocess.db'}")
    planner = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
    caller = Headers(tenant=TENANT, principal="chat-backend")
    for _ in range(20):  # warm-up
        await planner.run(PLAIN_QUERY, headers=caller)
    left = runs

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            result = await planner.run(PLAIN_QUERY, headers=caller)
            assert result.status == "completed", result.error

    cpu0, t0 = cpu_s(psutil.Process()), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed, cpu = time.perf_counter() - t0, cpu_s(psutil.Process()) - cpu0
    await registry.aclose()
    await store.aclose()
    return Rate(runs / elapsed, runs / cpu)


async def through_http(url: str, key: str, runs: int, clients: int, server: psutil.Process) -> Rate:
    """``clients`` concurrent clients posting runs until ``runs`` are done.

    The load generator is aiohttp (pooled keep-alive connections): on this
    2-core machine the clients share the cores with the server, and httpx's
    connection pool spends ~5 ms of CPU per request at 50 concurrent
    connections, which would measure the load generator, not the service.
    """
    import aiohttp

    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(
        url, connector=connector, headers=headers, timeout=timeout
    ) as http:

        async def one() -> None:
            async with http.post("/v1/runs?wait=true", json={"query": PLAIN_QUERY}) as r:
                body = await r.json()
                assert r.status == 200 and body["status"] == "completed", body

        for _ in range(20):  # warm-up
            await one()
        left = runs

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one()

        me = psutil.Process()
        cpu0, mine0, t0 = cpu_s(server), cpu_s(me), time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed, cpu = time.perf_counter() - t0, cpu_s(server) - cpu0
        client_ms = (cpu_s(me) - mine0) / runs * 1000
        return Rate(runs / elapsed, runs / cpu, client_ms)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str, Any]]:
    event_id, kind, data = "", "message", ""
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event_id, kind, json.loads(data)
            kind, data = "message", ""
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()


async def paused_run(http: httpx.AsyncClient) -> tuple[str, str, str]:
    """(run id, approval id, id of its ``paused`` event) of a new run that paused."""
    r = await http.post("/v1/runs?wait=true", json={"query": GATED_QUERY})
    r.raise_for_status()
    doc = r.json()
    assert doc["status"] == "paused", doc
    last = ""
    async with http.stream("GET", f"/v1/runs/{doc['run_id']}/events") as events:
        async for event_id, _kind, _data in sse_events(events):
            last = event_id
    return doc["run_id"], doc["pending_approvals"][0]["id"], last


async def approval_latency(url: str, key: str, approver: str, samples: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=HTTP_TIMEOUT_S
    ) as http:
        for _ in range(samples):
            run_id, approval_id, last = await paused_run(http)
            async with http.stream(
                "GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": last}
            ) as events:
                t0 = time.perf_counter()
                decided = await http.post(
                    f"/v1/approvals/{approval_id}/decision",
                    json={"decision": "approve"},
                    headers={"Authorization": f"Bearer {approver}"},
                )
                decided.raise_for_status()
                async for _id, kind, data in sse_events(events):
                    if kind == "run_finished":
                        out.append(time.perf_counter() - t0)
                        assert data["status"] == "completed", data
                        break
    return out


async def rss_with_streams(
    url: str, key: str, server: psutil.Process, streams: int
) -> tuple[int, int]:
    """Server RSS before and with ``streams`` open event streams (bytes)."""
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=httpx.Timeout(HTTP_TIMEOUT_S, pool=HTTP_TIMEOUT_S),
    ) as http:
        paused = [await paused_run(http) for _ in range(10)]
        await asyncio.sleep(1.0)
        before = server.memory_info().rss
        async with contextlib.AsyncExitStack() as stack:
            for start in range(0, streams, STREAM_OPEN_BATCH):
                batch = range(start, min(start + STREAM_OPEN_BATCH, streams))
                opened = await asyncio.gather(
                    *(
                        stack.enter_async_context(
                            http.stream(
                                "GET",
                                f"/v1/runs/{paused[i % 10][0]}/events",
                                headers={"Last-Event-ID": paused[i % 10][2]},
                            )
                        )
                        for i in batch
                    )
                )
                assert all(r.status_code == 200 for r in opened)
            await asyncio.sleep(3.0)  # every stream has polled the store at least once
            with_streams = server.memory_info().rss
        return before, with_streams


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bench(args: argparse.Namespace, workdir: Path) -> int:
    from penguiflow_agents.server import add_key

    key, _ = add_key(str(workdir / "keys.yaml"), tenant=TENANT, principal="chat-backend")
    approver, _ = add_key(
        str(workdir / "keys.yaml"), tenant=TENANT, principal="root", roles=["admin"]
    )
    rounds: list[tuple[Rate, Rate]] = []
    async with server_process(workdir) as (url, server):
        # Rounds alternate the two sides so that a change in the machine's load (other work
        # on the 2 cores) hits both; the median round is the figure.
        for n in range(args.rounds):
            local = await in_process(workdir, args.runs, args.clients)
            remote = await through_http(url, key, args.runs, args.clients, server)
            rounds.append((local, remote))
            print(
                f"  round {n + 1}: in process {local.wall:7.1f} runs/s, service {remote.wall:7.1f}"
                f" runs/s: {remote.wall / local.wall:.2f} wall clock, "
                f"{remote.cpu / local.cpu:.2f} per CPU-second",
                flush=True,
            )
        latencies = await approval_latency(url, key, approver, args.approvals)
        before, with_streams = await rss_with_streams(url, key, server, args.streams)
    ratios = sorted(remote.wall / local.wall for local, remote in rounds)
    ratio = statistics.median(ratios)
    local, remote = min(rounds, key=lambda r: abs(r[1].wall / r[0].wall - ratio))
    print(
        f"{args.runs} runs per side and round (1 tool call, 2 model turns, scripted model, SQLite), "
        f"{args.clients} concurrent clients, {args.rounds} rounds; load average "
        f"{os.getloadavg()[0]:.1f}; the median round:"
    )
    print(
        f"  in process (ReactPlanner.run)      {local.wall:7.1f} runs/s  {local.cpu:7.1f} runs per CPU-s"
    )
    print(
        f"  service (POST /v1/runs?wait=true)  {remote.wall:7.1f} runs/s  {remote.cpu:7.1f} runs per "
        f"server CPU-s  (clients: {remote.client_ms:.2f} ms CPU per run)"
    )
    print(
        f"  service / in process: {ratio:.2f} (1/{1 / ratio:.1f}) wall clock "
        f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}), "
        f"{remote.cpu / local.cpu:.2f} per CPU-second; required >= 1/3, aim 1/2"
    )
    print(
        f"  approval decision -> run_finished  p50 {pct(latencies, 0.5):6.1f} ms  "
        f"p99 {pct(latencies, 0.99):6.1f} ms  (mean {statistics.fmean(latencies) * 1000:.1f} ms, "
        f"{len(latencies)} runs, one at a time)"
    )
    print(
        f"  server RSS {before / 2**20:.1f} MB before, {with_streams / 2**20:.1f} MB with "
        f"{args.streams} open SSE streams ({(with_streams - before) / args.streams / 1024:.1f} kB "
        f"per stream); aim < 200 MB"
    )
    return 0 if ratio >= 1 / 3 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--approvals", type=int, default=100)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return 0
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
