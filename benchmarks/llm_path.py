"""The cost of a model turn per client, side by side in one run (issue #14).

    python benchmarks/llm_path.py [--conversations 500] [--sequential 250] [--delay 0.05]
                                  [--rounds 1] [--only NAME ...]

The replay model (an OpenAI-compatible HTTP server) runs in processes of its
own on 127.0.0.1: one answering at once (the sequential phase), one adding
``--delay`` seconds to every turn (the concurrent phase). A conversation is 4
model turns (3 tool calls, then the answer), with the request bodies the
planner sends (recorded from a real run: system prompt, tool schema, the
growing history). Each client runs in a fresh subprocess:

- ``httpx``: the floor: a pooled raw ``httpx`` POST (json.dumps the body,
  POST it, json.loads the answer) through a free list of single-connection
  ``httpx.AsyncClient``;
- ``openai``: the ``openai`` SDK's ``AsyncOpenAI().chat.completions.create``;
- ``litellm``: ``litellm.acompletion`` as an application would call it;
- ``client``: this project's ``LiteLLMClient.complete`` for ``openai/...``
  (the direct OpenAI-compatible path it picks by itself);
- ``client-litellm``: the same client held on its litellm path (what every
  other provider takes), for comparison;
- ``planner``: a whole ``ReactPlanner`` run (model turns, tool calls, the
  MemoryStore), CPU divided by its 4 model turns.

Reported per client: this process's CPU per model turn, sequential
(``--sequential`` conversations one after another, after a warm-up that also opens
as many connections as the concurrent phase uses) and with
``--conversations`` conversations at once; the wall time of the concurrent
phase (ideal: 4 x delay); the peak RSS of the subprocess (``ru_maxrss``:
imports included). With ``--rounds`` > 1 the clients are interleaved and the
median is printed. The load average is printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOOL_CALLS = 3
TURNS = TOOL_CALLS + 1
WARM_UP = 10
CLIENTS = ("httpx", "openai", "litellm", "client", "client-litellm", "planner")
LABELS = {
    "httpx": "pooled raw httpx POST (the floor)",
    "openai": "`openai` SDK",
    "litellm": "`litellm.acompletion`",
    "client": "this project's `LiteLLMClient` (direct path)",
    "client-litellm": "this project's `LiteLLMClient` held on litellm",
    "planner": "this project's whole planner turn",
}
SERVER_START_TIMEOUT_S = 60.0
CHILD_TIMEOUT_S = 900.0

# The replay server with uvicorn's keep-alive timeout raised from 5 s to 600 s: on this loaded
# machine a pooled connection can sit idle for 5 s between phases, and a client that reuses one
# the server just closed sees a ReadError (a real provider keeps connections longer).
SERVER_CODE = """
import asyncio, sys
import uvicorn
_init = uvicorn.Config.__init__
def _config(self, *args, **kwargs):
    kwargs.setdefault("timeout_keep_alive", 600)
    _init(self, *args, **kwargs)
uvicorn.Config.__init__ = _config
from penguiflow_agents.llm import ReplayServer
async def main():
    async with ReplayServer.from_file(sys.argv[1]) as server:
        print(server.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def write_script(path: Path, delay: float) -> None:
    lines = ["turns:"]
    for i in range(TOOL_CALLS):
        lines.append(f"  - delay_s: {delay}")
        lines.append(f"    tool_calls: [{{name: kv.lookup, arguments: {{key: k{i}}}}}]")
    lines.append(f"  - delay_s: {delay}")
    lines.append('    content: "Three values looked up."')
    path.write_text("\n".join(lines) + "\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- the clients (each runs in its own subprocess) ------------------------------------------


def planner_parts() -> tuple[Any, Any]:
    """A registry with the ``kv.lookup`` tool, and the ``lookup`` function."""
    from penguiflow_agents.tools import ToolRegistry, tool

    @tool
    async def lookup(key: str) -> str:
        """Return a value for a key."""
        return "value-" + key

    registry = ToolRegistry()
    registry.add_functions(lookup, source="kv", max_concurrency=4096)
    return registry, lookup


class Recorder:
    """Wraps an LLM client and keeps the requests of one conversation."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.model = llm.model
        self.requests: list[Any] = []

    async def complete(self, request: Any) -> Any:
        self.requests.append(request)
        return await self.llm.complete(request)


async def record_requests(url: str) -> list[Any]:
    """The planner's 4 ``LLMRequest`` of one conversation, recorded against the replay model."""
    from penguiflow_agents._identity import Headers
    from penguiflow_agents.llm import LiteLLMClient
    from penguiflow_agents.planner import ReactPlanner

    registry, _ = planner_parts()
    llm = LiteLLMClient("openai/replay", api_base=url, api_key="replay", is_replay=True)
    recorder = Recorder(llm)
    planner = ReactPlanner(llm=recorder, registry=registry, max_steps=10)  # type: ignore[arg-type]
    result = await planner.run("question 0", headers=Headers(tenant="t0"))
    assert result.status == "completed", result.error
    await llm.aclose()
    assert len(recorder.requests) == TURNS, len(recorder.requests)
    return recorder.requests


async def record_bodies(url: str) -> list[dict[str, Any]]:
    """The 4 request bodies the planner's model turns send (what the raw clients post)."""
    from penguiflow_agents.llm import LiteLLMClient
    from penguiflow_agents.llm._names import WireNames

    requests = await record_requests(url)
    llm = LiteLLMClient("openai/replay", api_base=url, api_key="replay", is_replay=True)
    direct = llm.direct()
    assert direct is not None
    bodies = []
    for request in requests:
        names = WireNames.build(spec.name for spec in request.tools)
        bodies.append(json.loads(direct._body(request, names, native=True)))
    return bodies


def make_turn(name: str, url: str, bodies: list[dict[str, Any]]) -> Any:
    """An async ``turn(k)`` for the raw clients: send body ``k``, return the parsed answer."""
    if name == "httpx":
        import ssl

        import httpx

        tls = ssl.create_default_context()  # one for all clients (httpx builds one per client)
        free: list[httpx.AsyncClient] = []
        endpoint = url.rstrip("/") + "/chat/completions"
        headers = {"authorization": "Bearer replay", "content-type": "application/json"}

        async def turn(k: int) -> Any:
            client = (
                free.pop()
                if free
                else httpx.AsyncClient(
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    headers=headers,
                    timeout=120,
                    verify=tls,
                )
            )
            try:
                response = await client.post(endpoint, content=json.dumps(bodies[k]).encode())
                response.raise_for_status()
                return json.loads(response.content)
            finally:
                free.append(client)

        return turn
    if name == "openai":
        import openai

        # The SDK's default retries (2): its pool can hand out a connection the server closed.
        sdk = openai.AsyncOpenAI(base_url=url, api_key="replay", timeout=120)

        async def turn(k: int) -> Any:
            return await sdk.chat.completions.create(**bodies[k])

        return turn
    if name == "litellm":
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        async def turn(k: int) -> Any:
            body = dict(bodies[k])
            body["model"] = "openai/" + body["model"]
            return await litellm.acompletion(api_base=url, api_key="replay", timeout=120, **body)

        return turn
    raise ValueError(name)


async def run_child(
    name: str, fast_url: str, slow_url: str, args: argparse.Namespace, bodies: list[dict[str, Any]]
) -> dict[str, Any]:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    if name in ("httpx", "openai", "litellm"):
        fast, slow = make_turn(name, fast_url, bodies), make_turn(name, slow_url, bodies)

        def conversation_of(turn: Any) -> Any:
            async def conversation(i: int) -> int:
                for k in range(TURNS):
                    await turn(k)
                return TURNS

            return conversation

        fast_conv, slow_conv = conversation_of(fast), conversation_of(slow)
    elif name in ("client", "client-litellm"):
        from penguiflow_agents.llm import LiteLLMClient

        requests = await record_requests(fast_url)

        def client_of(url: str) -> Any:
            llm = LiteLLMClient(
                "openai/replay", api_base=url, api_key="replay", is_replay=True, timeout_s=120
            )
            if name == "client-litellm":
                llm._route = "litellm"
            else:
                assert llm.direct() is not None
            return llm

        fast_llm, slow_llm = client_of(fast_url), client_of(slow_url)

        def conversation_of(llm: Any) -> Any:  # type: ignore[misc]
            async def conversation(i: int) -> int:
                for request in requests:
                    await llm.complete(request)
                return TURNS

            return conversation

        fast_conv, slow_conv = conversation_of(fast_llm), conversation_of(slow_llm)
    else:
        from penguiflow_agents._identity import Headers
        from penguiflow_agents.llm import LiteLLMClient
        from penguiflow_agents.planner import ReactPlanner

        def planner_of(url: str) -> Any:
            registry, _ = planner_parts()
            llm = LiteLLMClient(
                "openai/replay", api_base=url, api_key="replay", is_replay=True, timeout_s=120
            )
            return ReactPlanner(llm=llm, registry=registry, max_steps=10, deadline_s=600)

        fast_planner, slow_planner = planner_of(fast_url), planner_of(slow_url)

        def conversation_of(planner: Any) -> Any:  # type: ignore[misc]
            async def conversation(i: int) -> int:
                result = await planner.run(f"question {i}", headers=Headers(tenant=f"t{i % 10}"))
                assert result.status == "completed", result.error
                return TURNS

            return conversation

        fast_conv, slow_conv = conversation_of(fast_planner), conversation_of(slow_planner)

    # Warm-up: imports, caches, and as many connections as each phase will use.
    for i in range(WARM_UP):
        await fast_conv(i)
    cpu0 = time.process_time()
    turns = 0
    for i in range(args.sequential):
        turns += await fast_conv(i)
    sequential = (time.process_time() - cpu0) / turns * 1000

    await asyncio.gather(*(slow_conv(i) for i in range(args.conversations)))
    t0, cpu0 = time.perf_counter(), time.process_time()
    done = await asyncio.gather(*(slow_conv(i) for i in range(args.conversations)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "client": name,
        "sequential_ms": sequential,
        "concurrent_ms": cpu / sum(done) * 1000,
        "wall_s": wall,
        "peak_rss_mb": peak_rss_mb(),
        "litellm_imported": "litellm" in sys.modules,
    }


# -- the parent --------------------------------------------------------------------------


def start_server(script: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_CODE, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    if not url:
        raise SystemExit("the replay server did not start")
    return server, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--sequential", type=int, default=250)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--fast-url", help=argparse.SUPPRESS)
    parser.add_argument("--slow-url", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        bodies = json.loads(Path(args.bodies).read_text())
        result = asyncio.run(run_child(args.child, args.fast_url, args.slow_url, args, bodies))
        print(json.dumps(result), flush=True)
        return 0

    load_before = os.getloadavg()
    servers = []
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        fast_script, slow_script = Path(tmp) / "fast.yaml", Path(tmp) / "slow.yaml"
        write_script(fast_script, 0.0)
        write_script(slow_script, args.delay)
        try:
            fast_server, fast_url = start_server(fast_script)
            servers.append(fast_server)
            slow_server, slow_url = start_server(slow_script)
            servers.append(slow_server)
            bodies_file = Path(tmp) / "bodies.json"
            bodies_file.write_text(json.dumps(asyncio.run(record_bodies(fast_url))))
            for round_no in range(args.rounds):
                for name in args.only:
                    child = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            name,
                            "--fast-url",
                            fast_url,
                            "--slow-url",
                            slow_url,
                            "--bodies",
                            str(bodies_file),
                            "--conversations",
                            str(args.conversations),
                            "--sequential",
                            str(args.sequential),
                        ],
                        capture_output=True,
                        text=True,
                        timeout=CHILD_TIMEOUT_S,
                    )
                    if child.returncode != 0:
                        print(f"{name} failed:\n{child.stderr[-3000:]}", file=sys.stderr)
                        return 1
                    result = json.loads(child.stdout.strip().splitlines()[-1])
                    results[name].append(result)
                    print(
                        f"  round {round_no + 1} {name:15s} "
                        f"seq {result['sequential_ms']:.2f} ms  "
                        f"conc {result['concurrent_ms']:.2f} ms  "
                        f"wall {result['wall_s']:.2f} s  rss {result['peak_rss_mb']:.0f} MB  "
                        f"litellm imported: {result['litellm_imported']}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            for server in servers:
                assert server.stdin is not None
                server.stdin.close()
                server.wait(timeout=SERVER_START_TIMEOUT_S)
    load_after = os.getloadavg()

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    ideal = TURNS * args.delay
    print(
        f"{TURNS} model turns per conversation; sequential: {args.sequential} conversations; "
        f"concurrent: {args.conversations} conversations, {args.delay * 1000:.0f} ms per turn "
        f"(ideal wall {ideal:.1f} s); {args.rounds} round(s), medians; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print()
    print(
        f"| client | CPU ms/turn, sequential | CPU ms/turn, {args.conversations} concurrent "
        f"| {args.conversations}-conc wall | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in args.only:
        print(
            f"| {LABELS[name]} | {median(name, 'sequential_ms'):.2f} | "
            f"{median(name, 'concurrent_ms'):.2f} | {median(name, 'wall_s'):.2f} s | "
            f"{median(name, 'peak_rss_mb'):.0f} MB |"
        )
    if "httpx" in results and "planner" in results:
        floor = median("httpx", "sequential_ms")
        print()
        print(
            f"planner turn / floor: {median('planner', 'sequential_ms') / floor:.2f}x sequential, "
            f"{median('planner', 'concurrent_ms') / median('httpx', 'concurrent_ms'):.2f}x "
            "concurrent"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
