"""State-store latency: append_event, create+claim+update of a run, create+decide of an approval.

Usage: python benchmarks/store_throughput.py [--n 2000] [--postgres URL]

PostgreSQL: --postgres, else $PENGUIFLOW_BENCH_POSTGRES, else the local database ``test``.

Prints per-operation p50/p99 in microseconds for each store, one after the other
(sequential awaits: the latency one caller sees), plus appends/s with 50
concurrent writers on one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from penguiflow_agents.store import (
    ApprovalDecision,
    ApprovalRecord,
    RunRecord,
    StateStore,
    open_store,
    redact_url,
)

POSTGRES_ENV = "PENGUIFLOW_BENCH_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


async def timed(n: int, op: Callable[[int], Awaitable[object]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - t0)
    return out


async def bench(name: str, store: StateStore, n: int) -> None:
    tenant = f"bench-{uuid.uuid4().hex[:8]}"

    async def append(i: int) -> None:
        await store.append_event(tenant, "run-a", "step", {"i": i, "tool": "time.now"})

    async def run_cycle(i: int) -> None:
        run = await store.create_run(
            RunRecord(run_id=f"r{i}", tenant=tenant, principal="p", status="paused", state={"i": i})
        )
        claimed = await store.claim_run(
            tenant, run.run_id, owner="w", from_statuses=["paused"], lease_s=30
        )
        assert claimed is not None
        claimed.status = "completed"
        await store.update_run(claimed, expected_version=claimed.version)

    async def approval_cycle(i: int) -> None:
        await store.create_approval(
            ApprovalRecord(
                id=f"a{i}",
                tenant=tenant,
                run_id=f"r{i}",
                call_id="c",
                tool="files.write",
                arguments={"path": "/shared/x"},
                arguments_sha256="0" * 64,
                tool_hash="1" * 64,
                policy_version="v1",
                requested_by="alice",
                approvers=["role:admin"],
                rule={"match": "files.*"},
                expires_at=time.time() + 60,
            )
        )
        await store.decide_approval(
            tenant, f"a{i}", ApprovalDecision(decision="approve", decided_by="bob")
        )

    rows = [
        ("append_event", await timed(n, append)),
        ("create+claim+update run", await timed(n // 4, run_cycle)),
        ("create+decide approval", await timed(n // 4, approval_cycle)),
    ]
    writers, per_writer = 50, max(1, n // 50)

    async def writer(w: int) -> None:
        for i in range(per_writer):
            await store.append_event(tenant, "run-b", "step", {"w": w, "i": i})

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    concurrent_rate = writers * per_writer / (time.perf_counter() - t0)
    for label, samples in rows:
        print(
            f"{name:9} {label:26} p50 {pct(samples, 0.5):8.0f} us  p99 {pct(samples, 0.99):8.0f} us"
            f"  ({len(samples)} ops, mean {statistics.mean(samples) * 1e6:.0f} us)"
        )
    print(f"{name:9} {'append_event x50 writers':26} {concurrent_rate:8.0f} events/s")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES),
        help=f"PostgreSQL URL (default {redact_url(os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES))}: ${POSTGRES_ENV} when set)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        schema = f"pf_bench_{uuid.uuid4().hex[:8]}"
        urls = [
            ("memory", "memory://"),
            ("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}"),
            ("postgres", f"{args.postgres}?schema={schema}"),
        ]
        for name, url in urls:
            try:
                store = await open_store(url)
            except Exception as exc:  # a missing server skips that store
                print(f"{name:9} skipped: {exc}")
                continue
            try:
                await bench(name, store, args.n)
            finally:
                await store.aclose()
        if any(n == "postgres" for n, _ in urls):
            try:
                import asyncpg

                conn = await asyncpg.connect(args.postgres)
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await conn.close()
            except Exception:
                pass


if __name__ == "__main__":
    asyncio.run(main())
