"""Retention (``prune_runs``) and ``count_runs`` on every store; pruning under load.

Each test uses a store of its own (PostgreSQL: a schema of its own), because
``prune_runs`` and ``count_runs`` see every tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from penguiflow_agents import Headers, ReactPlanner, ToolRegistry
from penguiflow_agents.history import prune_runs
from penguiflow_agents.store import (
    ENDED_STATUSES,
    ApprovalDecision,
    ApprovalRecord,
    RunRecord,
    StateStore,
    _sqlite,
    open_store,
)
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import tool
from tests.store.conftest import drop_schema, pg_url

DAY = 86400.0


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def own_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[StateStore, str]]:
    """(store, kind): a store nobody else writes to."""
    schema = None
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        schema = f"pf_ret_{uuid.uuid4().hex[:10]}"
        url = pg_url(request.getfixturevalue("postgres_dsn"), schema)
    store = await open_store(url)
    yield store, request.param
    await store.aclose()
    if schema is not None:
        await drop_schema(request.getfixturevalue("postgres_dsn"), schema)


def _run(tenant: str, run_id: str, status: str, at: float) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        tenant=tenant,
        principal="p",
        status=status,
        model="m",
        query="q",
        created_at=at,
        updated_at=at,
    )


def _approval(tenant: str, run_id: str, approval_id: str) -> ApprovalRecord:
    return ApprovalRecord(
        id=approval_id,
        tenant=tenant,
        run_id=run_id,
        call_id="c1",
        tool="files.write_file",
        arguments={},
        arguments_sha256="x",
        tool_hash="y",
        policy_version="z",
        requested_by="p",
        approvers=["role:admin"],
        rule={"match": "files.*"},
        expires_at=time.time() + 3600,
    )


async def test_prune_deletes_old_ended_runs_with_their_records_and_keeps_everything_else(
    own_store: tuple[StateStore, str],
) -> None:
    store, _ = own_store
    old = time.time() - 40 * DAY
    recent = time.time() - 1 * DAY
    for tenant in ("acme", "globex"):
        for i, status in enumerate(("completed", "failed", "cancelled")):
            rid = f"old-{status}"
            await store.create_run(_run(tenant, rid, status, old))
            await store.append_event(tenant, rid, "run_started", {"i": i})
            await store.begin_call(tenant, rid, "c1")
            await store.create_approval(_approval(tenant, rid, f"{tenant}-{rid}-a"))
            await store.decide_approval(
                tenant,
                f"{tenant}-{rid}-a",
                ApprovalDecision(decision="approve", decided_by="boss", decided_at=old),
            )
        await store.create_run(_run(tenant, "old-paused", "paused", old))
        await store.create_approval(_approval(tenant, "old-paused", f"{tenant}-pending"))
        await store.create_run(_run(tenant, "old-running", "running", old))
        await store.append_event(tenant, "old-running", "run_started", {})
        await store.create_run(_run(tenant, "recent-done", "completed", recent))

    assert await store.count_runs() == 12
    assert await store.count_runs(status="paused") == 2
    deleted = await store.prune_runs(ended_before=time.time() - 30 * DAY, batch_size=2)
    assert deleted == 6  # 3 per tenant, in batches of 2

    for tenant in ("acme", "globex"):
        left = {r.run_id for r in await store.list_runs(tenant)}
        assert left == {"old-paused", "old-running", "recent-done"}
        for status in ("completed", "failed", "cancelled"):
            assert await store.list_events(tenant, f"old-{status}") == []
            assert await store.get_call(tenant, f"old-{status}", "c1") is None
        approvals = await store.list_approvals(tenant)
        assert [a.id for a in approvals] == [f"{tenant}-pending"]
        assert [e.kind for e in await store.list_events(tenant, "old-running")] == ["run_started"]
    assert await store.count_runs() == 6
    assert await store.count_runs(status="completed") == 2
    assert await store.prune_runs(ended_before=time.time() - 30 * DAY) == 0


async def test_sqlite_prunes_through_an_index_that_running_runs_stay_out_of(
    tmp_path: Path,
) -> None:
    """A checkpoint moves a running run's updated_at: runs_by_end (partial) holds no running
    run, so it has nothing to rewrite then, and prune_runs' query still finds it."""
    path = tmp_path / "state.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        old = time.time() - 40 * DAY
        await store.create_run(_run("acme", "done", "completed", old))
        running = await store.create_run(_run("acme", "live", "running", old))
        await store.update_run(running, expected_version=0)  # a checkpoint
    finally:
        await store.aclose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        indexed = conn.execute(
            "SELECT run_id FROM runs INDEXED BY runs_by_end WHERE status <> 'running'"
        ).fetchall()
        plan = conn.execute(
            "EXPLAIN QUERY PLAN " + _sqlite._PRUNE_BATCH,
            (*ENDED_STATUSES, time.time(), 10),
        ).fetchall()
        # The paused-runs gauge counts through it too (a scrape does not scan every run).
        counted = conn.execute(
            "EXPLAIN QUERY PLAN " + _sqlite._COUNT_ENDED_OR_PAUSED, ("paused",)
        ).fetchall()
    assert indexed == [("done",)]
    assert "USING INDEX runs_by_end" in str(plan)
    assert "runs_by_end" in str(counted)
    store = await open_store(f"sqlite:///{path}")
    try:
        assert await store.count_runs(status="completed") == 1
        assert await store.count_runs(status="running") == 1
        assert await store.count_runs(status="paused") == 0
    finally:
        await store.aclose()


async def test_prune_refuses_a_bad_batch_size_and_history_refuses_a_bad_age(
    own_store: tuple[StateStore, str],
) -> None:
    from penguiflow_agents.exceptions import UserError

    store, _ = own_store
    with pytest.raises(UserError, match="batch_size must be a positive integer, got 0"):
        await store.prune_runs(ended_before=time.time(), batch_size=0)
    with pytest.raises(UserError, match="older_than_s must be positive"):
        await prune_runs(store, older_than_s=0)


# -- pruning while runs execute --------------------------------------------------------------------

SEEDED = 10_000
PAUSED = 20
LIVE = 50


@tool(idempotent=True)
async def lookup(key: str) -> str:
    """A value for a key (yields to the loop, so runs interleave with the pruning)."""
    await asyncio.sleep(0.01)
    return "value-" + key


async def _seed_sqlite(path: Path, ended_at: float) -> None:
    def insert() -> None:
        conn = sqlite3.connect(path)
        with conn:
            conn.executemany(
                "INSERT INTO runs (tenant, run_id, principal, roles, session_id, status, model, "
                "query, state, version, claimed_by, claim_expires_at, created_at, updated_at) "
                "VALUES (?, ?, 'p', '[]', NULL, ?, 'm', 'q', '{}', 1, NULL, NULL, ?, ?)",
                [
                    (
                        "old",
                        f"r{i}",
                        "paused" if i < PAUSED else "completed",
                        ended_at,
                        ended_at,
                    )
                    for i in range(SEEDED + PAUSED)
                ],
            )
            conn.executemany(
                "INSERT INTO events (tenant, run_id, seq, kind, data, ts) VALUES (?, ?, ?, ?, '{}', ?)",
                [
                    ("old", f"r{i}", s, "x", ended_at)
                    for i in range(SEEDED + PAUSED)
                    for s in (1, 2)
                ],
            )
        conn.close()

    await asyncio.to_thread(insert)


async def _seed_postgres(dsn: str, schema: str, ended_at: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        runs = [
            (
                "old",
                f"r{i}",
                "p",
                "[]",
                None,
                "paused" if i < PAUSED else "completed",
                "m",
                "q",
                "{}",
                1,
                None,
                None,
                ended_at,
                ended_at,
            )
            for i in range(SEEDED + PAUSED)
        ]
        await conn.copy_records_to_table(
            "runs",
            schema_name=schema,
            records=runs,
            columns=[
                "tenant", "run_id", "principal", "roles", "session_id", "status", "model",
                "query", "state", "version", "claimed_by", "claim_expires_at", "created_at",
                "updated_at",
            ],
        )  # fmt: skip
        events = [
            ("old", f"r{i}", s, "x", "{}", ended_at) for i in range(SEEDED + PAUSED) for s in (1, 2)
        ]
        await conn.copy_records_to_table(
            "events",
            schema_name=schema,
            records=events,
            columns=["tenant", "run_id", "seq", "kind", "data", "ts"],
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_ten_thousand_ended_runs_are_pruned_while_fifty_runs_execute(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Pruning in batches never blocks live runs: they all complete with every event stored;
    the paused runs of the same age survive."""
    ended_at = time.time() - 40 * DAY
    schema = None
    if kind == "sqlite":
        path = tmp_path / "state.db"
        store = await open_store(f"sqlite:///{path}")
        await _seed_sqlite(path, ended_at)
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        schema = f"pf_ret_{uuid.uuid4().hex[:10]}"
        store = await open_store(pg_url(dsn, schema))
        await _seed_postgres(dsn, schema, ended_at)
    try:
        assert await store.count_runs() == SEEDED + PAUSED
        registry = ToolRegistry()
        registry.add_functions(lookup, source="kv", max_concurrency=LIVE)
        script: list[dict[str, Any]] = [
            {"tool_calls": [{"name": "kv.lookup", "arguments": {"key": "a"}}]},
            {"tool_calls": [{"name": "kv.lookup", "arguments": {"key": "b"}}]},
            {"content": "done"},
        ]
        planners = [
            ReactPlanner(llm=ScriptedLLM(script, record=False), registry=registry, store=store)
            for _ in range(LIVE)
        ]
        headers = Headers(tenant="live", principal="p")
        runs = [asyncio.create_task(p.run("q", headers=headers)) for p in planners]
        deleted = await prune_runs(store, older_than_s=30 * DAY, batch_size=500)
        results = await asyncio.gather(*runs)

        assert deleted == SEEDED
        assert [r.status for r in results] == ["completed"] * LIVE
        assert await store.count_runs() == PAUSED + LIVE
        assert len(await store.list_runs("old", status="paused")) == PAUSED
        assert len(await store.list_events("old", "r0")) == 2  # a paused run keeps its events
        assert await store.list_events("old", f"r{SEEDED}") == []
        for r in results:
            kinds = [e.kind for e in await store.list_events("live", r.run_id)]
            assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
            assert (await store.get_run("live", r.run_id)).status == "completed"
        await registry.aclose()
    finally:
        await store.aclose()
        if schema is not None:
            await drop_schema(request.getfixturevalue("postgres_dsn"), schema)
