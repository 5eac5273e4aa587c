"""A tool call through an A2A hop between two local `serve` processes, against the same tool
called in process.

    python benchmarks/a2a_hop.py [--calls 200] [--rounds 4] [--warmup 10]

Two ``penguiflow-agents serve`` processes on 127.0.0.1, each with the replay
model, a SQLite store and the demo's ``clock`` tools (Python, in process):

- **B** is the remote agent: a run asks its model (turn 1) for
  ``clock.add_minutes``, then answers (turn 2);
- **A** has B as a tool source (``tools/remote.yaml``: ``transport: a2a``,
  bearer key). A run on A asks its model for one tool call, then answers:
  either ``clock.add_minutes`` in A's own process (**in process**) or
  ``remote.run`` (**A2A hop**: A's a2a source streams a task to B, whose run
  calls ``clock.add_minutes`` and answers).

Runs are sent one at a time (``POST /v1/runs?wait=true``) in ``--rounds``
rounds that alternate the two kinds. **Latency** is the tool call's own
``latency_s`` as A records it in the run's steps (queueing, protection and the
call; for the hop: card cached, JSON-RPC over HTTP, B's whole run with its two
model turns and its own tool call, the SSE stream back). **CPU per call** is
the user + system CPU time of A and B together (``psutil``) over a round,
divided by its runs; the added CPU of the hop is hop minus in process (both
include A's own run: two model turns, store writes).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from penguiflow_agents.cli import main as cli

# Longest wait for a serve process to answer /healthz (it imports litellm).
START_TIMEOUT_S = 120.0
# Longest wait for one run (wait=true).
RUN_TIMEOUT_S = 120.0
TENANT = "acme"

SCRIPT_A = """
turns:
  - branches:
      - match: "local"
        tool_calls: [{name: clock.add_minutes, arguments: {time: "09:30", minutes: 90}}]
      - tool_calls: [{name: remote.run, arguments: {message: "What is 90 minutes after 09:30?"}}]
  - content: "done"
"""
SCRIPT_B = """
turns:
  - tool_calls: [{name: clock.add_minutes, arguments: {time: "09:30", minutes: 90}}]
  - content: "It is 11:00."
"""
REMOTE = """
name: remote
transport: a2a
url: {url}
auth: {{type: bearer, token: "${{B_KEY}}"}}
timeout_s: 60
max_concurrency: 8
"""
POLICY = f'tenant: "{TENANT}"\nallow: ["clock.*", "remote.*"]\n'
CLOCK = Path(__file__).resolve().parents[1] / "penguiflow_agents" / "demo_scripts" / "tools"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_key(keys: Path, principal: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(
            ["keys", "add", "--tenant", TENANT, "--principal", principal, "--keys", str(keys)]
        )
    assert code == 0, "keys add failed"
    return out.getvalue().splitlines()[0]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    ps: psutil.Process

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)


def start(root: Path, env: dict[str, str]) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "penguiflow_agents", "serve", "--host", "127.0.0.1"]
    command += [
        "--port",
        str(port),
        "--tools",
        str(root / "tools"),
        "--keys",
        str(root / "keys.yaml"),
    ]
    command += ["--policies", str(root / "policies"), "--model", "replay:model.yaml"]
    command += ["--store", f"sqlite:///{root / 'state.db'}"]
    proc = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return Server(proc=proc, url=url, ps=psutil.Process(proc.pid))
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"serve in {root} did not start")
        time.sleep(0.2)


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[tuple[Server, Server, str]]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    roots = {name: tmp / name for name in ("a", "b")}
    for name, root in roots.items():
        (root / "tools").mkdir(parents=True)
        (root / "policies").mkdir()
        (root / "policies" / "default.yaml").write_text(POLICY)
        (root / "tools" / "clock.yaml").write_text((CLOCK / "clock.yaml").read_text())
        (root / "model.yaml").write_text(SCRIPT_A if name == "a" else SCRIPT_B)
    b_key = add_key(roots["b"] / "keys.yaml", "agent-a")
    a_key = add_key(roots["a"] / "keys.yaml", "bench")
    b = start(roots["b"], env)
    a = None
    try:
        (roots["a"] / "tools" / "remote.yaml").write_text(REMOTE.format(url=b.url))
        a = start(roots["a"], {**env, "B_KEY": b_key})
        yield a, b, a_key
    finally:
        for server in (a, b):
            if server is not None:
                server.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.proc.wait(timeout=15)
                if server.proc.poll() is None:
                    server.proc.kill()


@dataclass
class Side:
    latencies: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    calls: int = 0


def one_run(client: httpx.Client, query: str, tool: str) -> float:
    r = client.post("/v1/runs?wait=true", json={"query": query})
    doc = r.json()
    step = doc["steps"][0] if doc.get("steps") else {}
    if r.status_code != 200 or doc.get("status") != "completed" or step.get("outcome") != "ok":
        raise SystemExit(f"run failed: {r.status_code} {str(doc)[:800]}")
    assert step["tool"] == tool, step
    return float(step["latency_s"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="tool calls per kind")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured runs per kind")
    args = parser.parse_args()
    kinds = {"in process": ("local clock", "clock.add_minutes"), "A2A hop": ("ask B", "remote.run")}
    sides = {name: Side() for name in kinds}
    with tempfile.TemporaryDirectory() as tmp, servers(Path(tmp)) as (a, b, key):
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=a.url, headers=headers, timeout=RUN_TIMEOUT_S) as client:
            for query, tool in kinds.values():
                for _ in range(args.warmup):
                    one_run(client, query, tool)
            per_round = max(1, args.calls // args.rounds)
            for _ in range(args.rounds):
                for name, (query, tool) in kinds.items():
                    side = sides[name]
                    before = a.cpu_s() + b.cpu_s()
                    for _ in range(per_round):
                        side.latencies.append(one_run(client, query, tool))
                    side.cpu_s += a.cpu_s() + b.cpu_s() - before
                    side.calls += per_round
    print(f"load average {os.getloadavg()[0]:.2f}; {sides['A2A hop'].calls} calls per kind")
    print(f"{'':12} {'p50 ms':>9} {'p99 ms':>9} {'CPU ms/call (A+B)':>19}")
    for name, side in sides.items():
        print(
            f"{name:12} {pct(side.latencies, 0.5) * 1e3:9.2f} {pct(side.latencies, 0.99) * 1e3:9.2f}"
            f" {side.cpu_s / side.calls * 1e3:19.2f}"
        )
    local, hop = sides["in process"], sides["A2A hop"]
    print(
        f"{'added by hop':12} {(pct(hop.latencies, 0.5) - pct(local.latencies, 0.5)) * 1e3:9.2f}"
        f" {(pct(hop.latencies, 0.99) - pct(local.latencies, 0.99)) * 1e3:9.2f}"
        f" {(hop.cpu_s / hop.calls - local.cpu_s / local.calls) * 1e3:19.2f}"
    )
    print(
        f"median hop/in-process latency ratio: {statistics.median(hop.latencies) / statistics.median(local.latencies):.0f}x"
    )


if __name__ == "__main__":
    main()
