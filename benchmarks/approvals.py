"""Durable approvals at scale: 10,000 runs paused in SQLite, then decided and resumed.

    python benchmarks/approvals.py [--runs 10000] [--store URL]

    --store sqlite:///PATH                          a SQLite file (default: a fresh temporary one)
    --store postgresql://postgres@127.0.0.1/test    PostgreSQL: a fresh schema, dropped afterwards
                                                    (or ?schema=NAME to keep the tables)

Each run: a scripted model (in process) asks for one gated call (a policy rule
needs role:admin); the planner requests the approval and pauses the run in
the store. Then each approval is decided by an admin (ApprovalService) and
the run resumed: claimed, the binding checked, the call run exactly once
(begin_call / finish_call), the model answers, the run completes.

Reported: pause latency (planner.run until paused) p50/p99, decide + resume
latency p50/p99, and the bytes the store holds per paused run, divided by the
runs: on SQLite the database file's growth after all runs paused (WAL
checkpointed), on PostgreSQL the growth of the schema's tables with their
indexes and TOAST (``pg_total_relation_size``, after VACUUM). Runs go one at a
time, so a latency is the cost of one operation, not of queueing behind others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import open_store, redact_url
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

POLICY = {
    "tenant": "acme",
    "allow": ["files.*"],
    "approvals": [{"match": "files.write", "approvers": ["role:admin"], "reason": "Writes"}],
}
SCRIPT: list[dict[str, Any]] = [
    {
        "tool_calls": [
            {
                "name": "files.write",
                "arguments": {"path": "/shared/report.txt", "text": "Q3 figures"},
            }
        ]
    },
    {"content": "The report is saved."},
]
REQUESTER = Headers(tenant="acme", principal="alice", roles=["staff"])


@tool
async def write(path: str, text: str) -> str:
    """Pretend to write a file."""
    return f"wrote {len(text)} characters to {path}"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def sqlite_bytes(path: Path) -> int:
    """The database file's size once its WAL is folded in (checkpointed)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


async def postgres_bytes(dsn: str, schema: str) -> int:
    """Tables + indexes + TOAST of ``schema``, after a VACUUM so dead rows do not count."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        for row in tables:
            await conn.execute(f'VACUUM "{schema}"."{row["tablename"]}"')
        total = await conn.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
        return int(total)
    finally:
        await conn.close()


def postgres_target(url: str) -> tuple[str, str, str, bool]:
    """(store URL, libpq DSN, schema, whether the schema is ours to drop)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    dsn = parts._replace(query="&".join(f"{k}={v}" for k, v in query if k != "schema")).geturl()
    if schema:
        return url, dsn, schema, False
    schema = "bench_approvals_" + secrets.token_hex(4)
    sep = "&" if parts.query else "?"
    return f"{url}{sep}schema={schema}", dsn, schema, True


async def drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def bench(url: str, runs: int) -> None:
    measure: Callable[[], Awaitable[int]]
    cleanup: Callable[[], Awaitable[None]] | None = None
    if url.startswith(("postgresql://", "postgres://")):
        url, dsn, schema, ours = postgres_target(url)
        measure = lambda: postgres_bytes(dsn, schema)  # noqa: E731
        if ours:
            cleanup = lambda: drop_schema(dsn, schema)  # noqa: E731
        where = f"PostgreSQL, schema {schema}"
    elif url.startswith("sqlite:"):
        db = Path(url.removeprefix("sqlite:///"))  # sqlite:///rel.db, sqlite:////abs.db

        async def measure() -> int:
            return sqlite_bytes(db)

        where = f"SQLite, {db}"
    else:
        raise SystemExit(f"--store {redact_url(url)!r}: use a sqlite:/// or postgresql:// URL")
    try:
        await run_bench(url, runs, measure, where)
    finally:
        if cleanup is not None:
            await cleanup()


async def run_bench(url: str, runs: int, measure: Callable[[], Awaitable[int]], where: str) -> None:
    store = await open_store(url)
    policies = PolicySet.from_documents([POLICY])
    registry = ToolRegistry()
    registry.add_functions(write, source="files")
    planner = ReactPlanner(
        llm=ScriptedLLM(SCRIPT, record=False), registry=registry, store=store, policies=policies
    )
    service = ApprovalService(store, policies)
    base = await measure()
    paused: list[tuple[str, str]] = []
    pause_s: list[float] = []
    t_all = time.perf_counter()
    for _ in range(runs):
        t0 = time.perf_counter()
        result = await planner.run("save the Q3 report", headers=REQUESTER)
        pause_s.append(time.perf_counter() - t0)
        assert result.status == "paused", result.error
        paused.append((result.run_id, result.pending_approvals[0].id))
    pause_wall = time.perf_counter() - t_all
    stored = await measure() - base
    sample = await store.get_run("acme", paused[0][0])
    state_bytes = len(json.dumps(sample.state, separators=(",", ":")))
    resume_s: list[float] = []
    t_all = time.perf_counter()
    for run_id, approval_id in paused:
        t0 = time.perf_counter()
        await service.decide(
            tenant="acme",
            approval_id=approval_id,
            principal="root",
            roles=["admin"],
            decision="approve",
        )
        result = await planner.resume(run_id, headers=REQUESTER)
        resume_s.append(time.perf_counter() - t0)
        assert result.status == "completed", result.error
    resume_wall = time.perf_counter() - t_all
    await registry.aclose()
    await store.aclose()
    print(f"{runs} runs paused for approval, then decided and resumed ({where})")
    print(
        f"  pause            p50 {pct(pause_s, 0.50):6.2f} ms  p99 {pct(pause_s, 0.99):6.2f} ms"
        f"  (mean {statistics.fmean(pause_s) * 1000:.2f} ms, {runs / pause_wall:,.0f} runs/s)"
    )
    print(
        f"  decide + resume  p50 {pct(resume_s, 0.50):6.2f} ms  p99 {pct(resume_s, 0.99):6.2f} ms"
        f"  (mean {statistics.fmean(resume_s) * 1000:.2f} ms, {runs / resume_wall:,.0f} runs/s)"
    )
    print(
        f"  stored per paused run  {stored / runs:,.0f} bytes of database (run, its state of "
        f"{state_bytes:,} bytes of JSON, approval, events, indexes)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--store", default=None, help="store URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    if args.store:
        asyncio.run(bench(args.store, args.runs))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(f"sqlite:///{Path(tmp) / 'state.db'}", args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
