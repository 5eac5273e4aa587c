"""Throughput of the flow runtime against a bare asyncio.Queue pipeline (the floor).

A linear 3-node flow, 20,000 messages, queue_maxsize=64, in three modes:

* floor     - three stages joined by asyncio.Queue(64), no runtime at all;
* payload   - the runtime in payload mode (bare ints), no middleware;
* envelope  - the runtime in envelope mode: a Message with its own trace per
              message, FlowEvents on, one no-op middleware, fetch by trace_id.

Each mode runs in a fresh subprocess (so peak RSS is that mode's own), the
modes are interleaved ``--repeat`` times, and the median is reported. The
producer and the consumer run concurrently, as a server would.

    python benchmarks/runtime_throughput.py [--messages 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("floor", "payload", "envelope")
QUEUE_MAXSIZE = 64
WARMUP_MESSAGES = 2_000
REQUIRED_ENVELOPE_RATIO = 1 / 8  # the bar: envelope mode >= 1/8 of the floor
TARGET_ENVELOPE_RATIO = 1 / 5
CHILD_TIMEOUT_S = 300.0  # one mode's run; a hang fails the benchmark instead of blocking


async def _floor(n: int) -> float:
    queues: list[asyncio.Queue[int]] = [asyncio.Queue(QUEUE_MAXSIZE) for _ in range(4)]

    async def stage(inbox: asyncio.Queue[int], outbox: asyncio.Queue[int]) -> None:
        while True:
            item = await inbox.get()
            await outbox.put(item + 1)

    async def produce() -> None:
        for i in range(n):
            await queues[0].put(i)

    stages = [asyncio.create_task(stage(queues[i], queues[i + 1])) for i in range(3)]
    start = time.perf_counter()
    producer = asyncio.create_task(produce())
    total = 0
    for _ in range(n):
        total += await queues[3].get()
    elapsed = time.perf_counter() - start
    await producer
    for task in stages:
        task.cancel()
    await asyncio.gather(*stages, return_exceptions=True)
    assert total == n * (n - 1) // 2 + 3 * n, total
    return elapsed


async def _payload(n: int) -> float:
    from penguiflow_agents.runtime import Node, create

    async def step(x: int, ctx: Any) -> int:
        return x + 1

    a, b, c = Node(step, name="a"), Node(step, name="b"), Node(step, name="c")
    async with create(a.to(b), b.to(c), c.to(), queue_maxsize=QUEUE_MAXSIZE) as flow:

        async def produce() -> None:
            for i in range(n):
                await flow.emit(i)

        start = time.perf_counter()
        producer = asyncio.create_task(produce())
        total = 0
        for _ in range(n):
            total += await flow.fetch()
        elapsed = time.perf_counter() - start
        await producer
    assert total == n * (n - 1) // 2 + 3 * n, total
    return elapsed


async def _envelope(n: int) -> float:
    from penguiflow_agents.runtime import FlowEvent, Headers, Message, Node, create

    async def step(msg: Message[int], ctx: Any) -> int:
        return msg.payload + 1

    seen = 0

    async def no_op(event: FlowEvent) -> None:
        nonlocal seen
        seen += 1

    headers = Headers(tenant="bench", principal="bench")
    a, b, c = Node(step, name="a"), Node(step, name="b"), Node(step, name="c")
    flow = create(a.to(b), b.to(c), c.to(), queue_maxsize=QUEUE_MAXSIZE, middlewares=[no_op])
    async with flow:
        trace_ids: asyncio.Queue[str] = asyncio.Queue()

        async def produce() -> None:
            for i in range(n):
                msg = Message(payload=i, headers=headers)  # a fresh trace_id each
                await flow.emit(msg)
                trace_ids.put_nowait(msg.trace_id)

        start = time.perf_counter()
        producer = asyncio.create_task(produce())
        total = 0
        for _ in range(n):
            total += await flow.fetch(trace_id=await trace_ids.get())
        elapsed = time.perf_counter() - start
        await producer
    assert total == n * (n - 1) // 2 + 3 * n, total
    assert seen == 6 * n, seen  # node_start + node_success at each of 3 nodes
    return elapsed


_RUNNERS = {"floor": _floor, "payload": _payload, "envelope": _envelope}


def _child(mode: str, n: int) -> None:
    runner = _RUNNERS[mode]

    async def main() -> float:
        await runner(WARMUP_MESSAGES)
        return await runner(n)

    elapsed = asyncio.run(main())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"mode": mode, "msgs_per_s": n / elapsed, "peak_rss_mb": peak_kb / 1024}))


def _run_child(mode: str, n: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--messages", str(n)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"mode {mode!r} failed (exit {proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.messages)
        return 0

    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeat):
        for mode in MODES:
            runs[mode].append(_run_child(mode, args.messages))
    rate = {mode: statistics.median(r["msgs_per_s"] for r in runs[mode]) for mode in MODES}
    rss = {mode: max(r["peak_rss_mb"] for r in runs[mode]) for mode in MODES}
    floor = rate["floor"]
    print(
        f"runtime throughput: linear 3-node flow, {args.messages:,} messages, "
        f"queue_maxsize={QUEUE_MAXSIZE}, median of {args.repeat} runs per mode"
    )
    print(f"{'mode':<10} {'msgs/s':>12} {'peak RSS':>10} {'vs floor':>10}")
    for mode in MODES:
        ratio = rate[mode] / floor
        print(
            f"{mode:<10} {rate[mode]:>12,.0f} {rss[mode]:>8.1f}MB {ratio:>9.3f}x (1/{1 / ratio:.1f})"
        )
    envelope_ratio = rate["envelope"] / floor
    verdict = "PASS" if envelope_ratio >= REQUIRED_ENVELOPE_RATIO else "FAIL"
    print(
        f"envelope/floor = {envelope_ratio:.3f} (required >= {REQUIRED_ENVELOPE_RATIO:.3f}, "
        f"target {TARGET_ENVELOPE_RATIO:.3f}): {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
