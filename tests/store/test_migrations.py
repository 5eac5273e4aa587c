"""Versioned schemas: old files migrate forward on open, newer ones are refused."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from penguiflow_agents.exceptions import StoreError, UserError
from penguiflow_agents.store import (
    ApprovalDecision,
    ApprovalRecord,
    PostgresStore,
    SQLiteStore,
    open_store,
)

# The schema a file written by the first release (schema version 1) holds: runs, events and
# sessions, no approvals yet. Kept verbatim here as the fixture of an old file.
V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
CREATE TABLE runs (
    tenant TEXT NOT NULL, run_id TEXT NOT NULL, principal TEXT NOT NULL,
    roles TEXT NOT NULL, session_id TEXT, status TEXT NOT NULL, model TEXT NOT NULL,
    query TEXT NOT NULL, state TEXT NOT NULL, version INTEGER NOT NULL,
    claimed_by TEXT, claim_expires_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, run_id));
CREATE INDEX runs_by_status ON runs (tenant, status, created_at);
CREATE TABLE events (
    tenant TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (tenant, run_id, seq)) WITHOUT ROWID;
CREATE TABLE sessions (
    tenant TEXT NOT NULL, session_id TEXT NOT NULL, messages TEXT NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (tenant, session_id));
INSERT INTO runs VALUES ('acme', 'old-run', 'alice', '["viewer"]', NULL, 'paused', 'replay', 'q',
    '{"step": 1}', 3, NULL, NULL, 10.0, 11.0);
INSERT INTO events VALUES ('acme', 'old-run', 1, 'step', '{"n": 1}', 10.5);
"""


def stored_versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def approval(approval_id: str) -> ApprovalRecord:
    return ApprovalRecord(
        id=approval_id,
        tenant="acme",
        run_id="old-run",
        call_id="c1",
        tool="files.write",
        arguments={"path": "/shared/x"},
        arguments_sha256="x",
        tool_hash="y",
        policy_version="v1",
        requested_by="alice",
        approvers=["role:admin"],
        rule={"match": "files.*"},
        expires_at=2e9,
    )


async def test_a_new_file_gets_the_current_schema_version(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "new.db")
    await store.aclose()
    assert stored_versions(tmp_path / "new.db") == list(range(1, SQLiteStore.schema_version + 1))


async def test_a_version_1_file_migrates_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
    store = await open_store(f"sqlite:///{path}")
    try:
        run = await store.get_run("acme", "old-run")
        assert (run.roles, run.state, run.version, run.status) == (
            ["viewer"],
            {"step": 1},
            3,
            "paused",
        )
        assert await store.append_event("acme", "old-run", "step", {"n": 2}) == 2
        await store.create_approval(approval("ap-1"))  # tables added by a later migration
        decided = await store.decide_approval(
            "acme", "ap-1", ApprovalDecision(decision="approve", decided_by="bob")
        )
        assert decided.status == "approved"
        assert await store.begin_call("acme", "old-run", "c1") is True
    finally:
        await store.aclose()
    assert stored_versions(path) == list(range(1, SQLiteStore.schema_version + 1))


async def test_reopening_a_migrated_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = await SQLiteStore.open(path)
    await first.create_approval(approval("ap-1"))
    await first.aclose()
    second = await SQLiteStore.open(path)
    assert [a.id for a in await second.list_approvals("acme")] == ["ap-1"]
    await second.aclose()
    assert stored_versions(path) == list(range(1, SQLiteStore.schema_version + 1))


async def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (99);"
        )
    with pytest.raises(StoreError, match=r"schema version 99, newer .* upgrade penguiflow-agents"):
        await open_store(f"sqlite:///{path}")
    lazy = SQLiteStore(path)
    with pytest.raises(StoreError, match="99"):
        await lazy.list_runs("acme")  # a lazily opened store reports it on first use
    await lazy.aclose()


async def test_several_stores_opening_one_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "together.db"
    stores = await asyncio.gather(*(SQLiteStore.open(path) for _ in range(6)))
    for s in stores:
        await s.aclose()
    assert stored_versions(path) == list(range(1, SQLiteStore.schema_version + 1))


async def test_a_file_that_is_not_sqlite_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        await SQLiteStore.open(path)


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
async def fresh_schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A schema of this test's own, dropped afterwards."""
    schema = f"pf_mig_{uuid.uuid4().hex[:12]}"
    yield schema
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def pg_versions(dsn: str, schema: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY version')
    finally:
        await conn.close()
    return [r[0] for r in rows]


async def test_postgres_stores_opening_one_new_schema_at_once_migrate_it_once(
    postgres_dsn: str, fresh_schema: str
) -> None:
    stores = await asyncio.gather(
        *(PostgresStore.open(postgres_dsn, schema=fresh_schema) for _ in range(5))
    )
    await stores[0].create_approval(approval("ap-1"))
    assert [a.id for a in await stores[-1].list_approvals("acme")] == ["ap-1"]
    for s in stores:
        await s.aclose()
    assert await pg_versions(postgres_dsn, fresh_schema) == list(
        range(1, PostgresStore.schema_version + 1)
    )


async def test_a_postgres_schema_from_a_newer_release_is_refused(
    postgres_dsn: str, fresh_schema: str
) -> None:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{fresh_schema}"')
        await conn.execute(
            f'CREATE TABLE "{fresh_schema}".schema_version (version INTEGER NOT NULL)'
        )
        await conn.execute(f'INSERT INTO "{fresh_schema}".schema_version VALUES (42)')
    finally:
        await conn.close()
    with pytest.raises(StoreError, match=r"schema version 42, newer .* upgrade penguiflow-agents"):
        await open_store(f"{postgres_dsn}?schema={fresh_schema}")


async def test_a_mixed_case_postgres_schema_name_is_used_verbatim(postgres_dsn: str) -> None:
    schema = f"Pf_Mixed_{uuid.uuid4().hex[:8]}"
    store = await PostgresStore.open(postgres_dsn, schema=schema)
    try:
        await store.append_event("acme", "r", "k", {})
        assert [e.seq for e in await store.list_events("acme", "r")] == [1]
        assert await pg_versions(postgres_dsn, schema) == list(
            range(1, PostgresStore.schema_version + 1)
        )
    finally:
        await store.aclose()
        conn = await asyncpg.connect(postgres_dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest.mark.parametrize("schema", ['x"; DROP TABLE runs; --', "1abc", ""])
def test_a_postgres_schema_name_that_is_not_an_identifier_is_a_user_error(schema: str) -> None:
    with pytest.raises(UserError, match="plain identifier"):
        PostgresStore("postgresql://127.0.0.1/x", schema=schema or "-")
