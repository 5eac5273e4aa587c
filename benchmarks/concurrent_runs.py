"""Many concurrent runs against the replay model over loopback HTTP.

    python benchmarks/concurrent_runs.py [--runs 500] [--delay 0.05] [--inprocess-server]
                                         [--mode both|replay|scripted]
    python benchmarks/concurrent_runs.py --instructions [--runs 100]   # needs valgrind (callgrind)

Each run asks the replay model (an OpenAI-compatible HTTP server on 127.0.0.1,
reached through ``LiteLLMClient`` exactly like a real provider: since issue #14
that is the direct OpenAI-compatible httpx path, litellm is not imported) for 3 tool calls, one
per turn, then for the answer: 4 model turns, each with ``--delay`` seconds
added by the server. All runs start at once on one ReactPlanner (one process,
one event loop, a MemoryStore). The replay server runs in its own process by
default, so that its own request handling does not eat this process's CPU.

Then, next to it (``--mode scripted`` alone), the same planner in process with
a scripted model on the peers' shape of issue #14 (5 tool calls + the answer,
``--delay`` per step, claims and checkpoints on) over a MemoryStore and over
SQLite, each with an idempotent tool (``kv.read``: its steps need no
checkpoint) and with a tool that is not idempotent (``kv.lookup``: the
model's turn is checkpointed before its call, the result after), each of the
four in a fresh process: wall against the ideal (6 x ``--delay``) and this
process's CPU per step (both threads with SQLite), with the load average
before and after (the machine is shared: compare CPU per step first).
Required by issue #14: at most 0.45 s on MemoryStore, under 0.6 s on SQLite.
``--instructions`` instead counts the instructions per step of the same four (every thread,
the measured runs only) under callgrind: the same on a busy machine as on a quiet one.

Reported: wall time against the ideal (turns x delay: what perfect overlap
would give), model turns per second, this process's CPU per model turn (the
runs share one event loop, so the wall time cannot go below the CPU time),
and the RSS added per concurrent run (peak RSS during the runs minus RSS
after a warm-up, divided by the runs).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LiteLLMClient, ReplayServer
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.tools import ToolRegistry, tool

TOOL_CALLS = 3
TURNS = TOOL_CALLS + 1
# Longest wait for the replay server process to print its URL.
SERVER_START_TIMEOUT_S = 30.0


@tool
async def lookup(key: str) -> str:
    """Return a value for a key."""
    return "value-" + key


def write_script(path: Path, delay: float) -> None:
    lines = ["turns:"]
    for i in range(TOOL_CALLS):
        lines.append(f"  - delay_s: {delay}")
        lines.append(f"    tool_calls: [{{name: kv.lookup, arguments: {{key: k{i}}}}}]")
    lines.append(f"  - delay_s: {delay}")
    lines.append('    content: "Three values looked up."')
    path.write_text("\n".join(lines) + "\n")


SERVER_CODE = """
import asyncio, sys
from penguiflow_agents.llm import ReplayServer
async def main():
    async with ReplayServer.from_file(sys.argv[1]) as server:
        print(server.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


class Sampler:
    """Samples this process's RSS every few milliseconds; keeps the peak."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            await asyncio.sleep(0.01)

    def start(self) -> None:
        self.peak = self.proc.memory_info().rss
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> int:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return max(self.peak, self.proc.memory_info().rss)


async def bench(url: str, runs: int, delay: float) -> None:
    registry = ToolRegistry()
    registry.add_functions(lookup, source="kv", max_concurrency=1024)
    llm = LiteLLMClient(
        "openai/replay",
        api_base=url,
        api_key="replay",
        tool_calling="native",
        is_replay=True,
        timeout_s=120,
    )
    planner = ReactPlanner(llm=llm, registry=registry, max_steps=10, deadline_s=600)

    async def one(i: int) -> str:
        result = await planner.run(f"question {i}", headers=Headers(tenant=f"t{i % 10}"))
        return result.status

    # Warm up: the model client's HTTP connections and caches.
    assert set(await asyncio.gather(*(one(i) for i in range(20)))) == {"completed"}
    base = psutil.Process().memory_info().rss
    sampler = Sampler()
    sampler.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    statuses = await asyncio.gather(*(one(i) for i in range(runs)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = await sampler.stop()
    await registry.aclose()
    ideal = TURNS * delay
    done = statuses.count("completed")
    print(
        f"{runs} concurrent runs, {TURNS} model turns each ({TOOL_CALLS} tool calls), {delay * 1000:.0f} ms per turn"
    )
    print(f"  completed           {done}/{runs}")
    print(
        f"  wall                {wall:.2f} s (ideal {ideal:.2f} s, {wall / ideal:.1f}x the ideal)"
    )
    print(f"  model turns/s       {runs * TURNS / wall:,.0f}")
    print(
        f"  CPU per model turn  {cpu / (runs * TURNS) * 1000:.2f} ms (this process: planner, "
        "model client, HTTP client; one event loop, so wall >= CPU)"
    )
    print(
        f"  RSS per run         {(peak - base) / runs / 1024:.1f} KiB (base {base / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB)"
    )


# The peers' shape (issue #14, "The planner itself"): 5 tool calls + the answer.
PEER_TOOL_CALLS = 5


@tool(idempotent=True)
async def read(key: str) -> str:
    """Return a value for a key (a read: idempotent, so its steps need no checkpoint)."""
    return "value-" + key


async def bench_scripted(
    runs: int, delay: float, store_url: str, tool_name: str, *, callgrind: bool = False
) -> str:
    """In process, no HTTP: a scripted model (``ScriptedLLM``, ``delay`` per step), claims and
    checkpoints on (the planner's defaults) over ``store_url``; one line of figures.
    ``callgrind``: instructions are counted during the measured runs only (under valgrind)."""
    from penguiflow_agents.store import open_store
    from penguiflow_agents.testing import ScriptedLLM

    turns: list[dict[str, object]] = [
        {"tool_calls": [{"name": tool_name, "arguments": {"key": f"k{i}"}}], "delay_s": delay}
        for i in range(PEER_TOOL_CALLS)
    ]
    turns.append({"content": "Five values looked up.", "delay_s": delay})
    registry = ToolRegistry()
    registry.add_functions(lookup, read, source="kv", max_concurrency=1024)
    store = await open_store(store_url)
    planner = ReactPlanner(
        llm=ScriptedLLM(turns, record=False), registry=registry, store=store, max_steps=10
    )

    async def one(i: int) -> str:
        return (await planner.run(f"question {i}", headers=Headers(tenant=f"t{i % 10}"))).status

    assert set(await asyncio.gather(*(one(i) for i in range(20)))) == {"completed"}
    gc.collect()
    if callgrind:
        _callgrind("on")
    t0, cpu0 = time.perf_counter(), time.process_time()
    statuses = await asyncio.gather(*(one(i) for i in range(runs)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if callgrind:
        _callgrind("off")
    await registry.aclose()
    await store.aclose()
    steps = PEER_TOOL_CALLS + 1
    kind = store_url.split(":", 1)[0]
    shape = "idempotent" if tool_name == "kv.read" else "not idempotent"
    return (
        f"  {kind:7s} {shape:15s} {statuses.count('completed')}/{runs} completed, wall "
        f"{wall:.2f} s (ideal {steps * delay:.2f} s), CPU per step {cpu / (runs * steps) * 1000:.3f} ms"
    )


def scripted(runs: int, delay: float) -> None:
    """Each store and tool in a fresh process of its own (one's heap does not weigh on the
    next), one after the other; the load average is printed before and after."""
    print(
        f"in process, scripted model: {runs} concurrent runs, {PEER_TOOL_CALLS} tool calls + "
        f"the answer, {delay * 1000:.0f} ms per step, claims and checkpoints on; tool kv.read "
        "(idempotent: no checkpoint for its steps) or kv.lookup (not idempotent: the model's "
        "turn is checkpointed before its call and the result after)"
    )
    print(f"  load average before: {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("memory", "sqlite"):
            for tool_name in ("kv.read", "kv.lookup"):
                db = Path(tmp) / f"runs-{tool_name}.db"
                url = "memory://" if kind == "memory" else f"sqlite:///{db}"
                argv = [__file__, "--one", url, tool_name, str(runs), str(delay)]
                subprocess.run([sys.executable, *argv], check=True)
    print(f"  load average after:  {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _callgrind(switch: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", switch, str(os.getpid())], capture_output=True, check=True
    )


def instructions(runs: int, delay: float) -> int:
    """Instructions per step of each store and tool under callgrind (each in its own process)."""
    import shutil

    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("--instructions needs valgrind (callgrind) on the PATH")
        return 1
    steps = PEER_TOOL_CALLS + 1
    print(
        f"instructions per step (callgrind, {runs} concurrent runs x {steps} steps after 20 "
        "warm-up runs, every thread)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("memory", "sqlite"):
            for tool_name in ("kv.read", "kv.lookup"):
                db = Path(tmp) / f"runs-{tool_name}.db"
                out = Path(tmp) / "callgrind.out"
                url = "memory://" if kind == "memory" else f"sqlite:///{db}"
                subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        "--instr-atstart=no",
                        f"--callgrind-out-file={out}",
                        sys.executable,
                        __file__,
                        "--one",
                        url,
                        tool_name,
                        str(runs),
                        str(delay),
                        "--callgrind",
                    ],
                    capture_output=True,
                    check=True,
                )
                totals = next(
                    line for line in out.read_text().splitlines() if line.startswith("totals:")
                )
                per_step = int(totals.split()[1]) / (runs * steps) / 1000
                shape = "idempotent" if tool_name == "kv.read" else "not idempotent"
                print(f"  {kind:7s} {shape:15s} {per_step:8.1f} kIr/step")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="concurrent runs (500; 100 with --instructions)")
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument(
        "--inprocess-server", action="store_true", help="serve the replay model in this process"
    )
    parser.add_argument(
        "--mode",
        choices=["both", "replay", "scripted"],
        default="both",
        help="the replay model over HTTP, the scripted model in process, or both (each in "
        "its own process, so one's heap does not weigh on the other)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead: instructions per step of the scripted mode under callgrind "
        "(default --runs 100)",
    )
    if len(sys.argv) in (6, 7) and sys.argv[1] == "--one":  # one scripted measurement
        url, tool_name, runs, delay = sys.argv[2:6]
        line = bench_scripted(
            int(runs), float(delay), url, tool_name, callgrind=sys.argv[6:] == ["--callgrind"]
        )
        print(asyncio.run(line), flush=True)
        return 0
    args = parser.parse_args()
    if args.instructions:
        return instructions(args.runs or 100, args.delay)
    args.runs = args.runs or 500
    if args.mode == "scripted":
        scripted(args.runs, args.delay)
        return 0
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.yaml"
        write_script(script, args.delay)
        if args.inprocess_server:

            async def inprocess() -> None:
                async with ReplayServer.from_file(script) as server:
                    await bench(server.url, args.runs, args.delay)

            asyncio.run(inprocess())
            return scripted_apart(args)
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            t0 = time.monotonic()
            url = server.stdout.readline().strip()
            if not url or time.monotonic() - t0 > SERVER_START_TIMEOUT_S:
                print("the replay server did not start", file=sys.stderr)
                return 1
            asyncio.run(bench(url, args.runs, args.delay))
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=SERVER_START_TIMEOUT_S)
    return scripted_apart(args)


def scripted_apart(args: argparse.Namespace) -> int:
    """The scripted mode in a fresh process (after the replay mode, with --mode both)."""
    if args.mode != "both":
        return 0
    argv = [__file__, "--mode", "scripted", "--runs", str(args.runs), "--delay", str(args.delay)]
    return subprocess.run([sys.executable, *argv], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
