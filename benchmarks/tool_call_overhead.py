"""Tool-call overhead of the registry: prints figures, asserts nothing.

    .venv/bin/python benchmarks/tool_call_overhead.py [--calls N] [--callers C]

In-process part (this file): a trivial ``@tool`` called through
``ToolRegistry.call`` (validation, breaker, semaphore, timeout, result
building included) by 100 concurrent callers: calls/s and median latency,
for an async tool and for a sync tool (worker thread), next to the bare
function call for scale.

The MCP side (raw ``mcp`` SDK client vs the registry on the same server) is
``benchmarks/mcp_call_overhead.py``. Figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

import structlog

from penguiflow_agents.tools import ToolRegistry, tool


@tool
async def add_async(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def add_sync(a: int, b: int) -> int:
    """Add two integers (sync: runs in a worker thread)."""
    return a + b


async def _callers(registry: ToolRegistry, name: str, calls: int, callers: int) -> list[float]:
    latencies: list[float] = []
    per_caller = calls // callers

    async def caller(i: int) -> None:
        for j in range(per_caller):
            start = time.perf_counter()
            result = await registry.call(name, {"a": i, "b": j})
            latencies.append(time.perf_counter() - start)
            if not result.ok:
                raise RuntimeError(f"benchmark call failed: {result.error}")

    await asyncio.gather(*(caller(i) for i in range(callers)))
    return latencies


async def bench_in_process(calls: int, callers: int) -> None:
    registry = ToolRegistry()
    registry.add_functions(add_async, add_sync, source="bench", max_concurrency=callers)
    await registry.list_tools()

    # Sequential latency: one caller, so the figure is pure per-call overhead.
    for name in ("bench.add_async", "bench.add_sync"):
        await _callers(registry, name, 200, 1)  # warm-up
        seq = await _callers(registry, name, 2000, 1)
        print(f"{name:<16} 1 caller        median {statistics.median(seq) * 1e6:8.1f} us/call")

    bare = []
    for i in range(2000):
        start = time.perf_counter()
        await add_async(a=i, b=i)
        bare.append(time.perf_counter() - start)
    print(
        f"{'bare function':<16} 1 caller        median {statistics.median(bare) * 1e6:8.1f} us/call"
    )

    for name in ("bench.add_async", "bench.add_sync"):
        start = time.perf_counter()
        lat = await _callers(registry, name, calls, callers)
        elapsed = time.perf_counter() - start
        print(
            f"{name:<16} {callers} callers   {len(lat) / elapsed:10.0f} calls/s   "
            f"median {statistics.median(lat) * 1e3:7.2f} ms   "
            f"p99 {sorted(lat)[int(len(lat) * 0.99)] * 1e3:7.2f} ms"
        )
    await registry.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per concurrent run")
    parser.add_argument("--callers", type=int, default=100, help="concurrent callers")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"== in-process @tool through ToolRegistry ({args.calls} calls, {args.callers} callers)")
    asyncio.run(bench_in_process(args.calls, args.callers))


if __name__ == "__main__":
    main()
