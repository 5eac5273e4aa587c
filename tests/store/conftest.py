"""Fixtures for the store tests: one ``store`` fixture per implementation.

PostgreSQL tests share one schema per test session (a unique name, dropped at
the end), and every test uses its own tenant names, so tests never see each
other's rows and sessions running in parallel never touch each other's tables.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from penguiflow_agents.store import StateStore, _sqlite, open_store

PG_SCHEMA = f"pf_test_{uuid.uuid4().hex[:12]}"
_PG_USED: set[str] = set()


def pg_url(dsn: str, schema: str = PG_SCHEMA) -> str:
    """``dsn`` with the ``schema`` query parameter the store understands."""
    _PG_USED.add(dsn)
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}schema={schema}"


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(thread name, size) of every SQLite group transaction that began, on the event loop's
    thread (inline writes) or on the store thread."""
    seen: list[tuple[str, int]] = []
    in_group = _sqlite._in_group

    def counted(conn: sqlite3.Connection, ops: list[Any]) -> Any:
        seen.append((threading.current_thread().name, len(ops)))
        return in_group(conn, ops)

    monkeypatch.setattr(_sqlite, "_in_group", counted)
    return seen


class FailingCommit:
    """A SQLite connection whose first COMMIT fails with an I/O error (after the group's
    writes ran); ``failed`` says whether it did."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.failed = False

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error (test)")
        return self.real.execute(sql, *args)


@pytest.fixture
def commit_fails_once() -> type[FailingCommit]:
    """``commit_fails_once(conn)``: ``conn`` whose first COMMIT fails (``FailingCommit``)."""
    return FailingCommit


@pytest.fixture(scope="session", autouse=True)
def _drop_session_schema() -> Iterator[None]:
    yield
    for dsn in _PG_USED:
        asyncio.run(drop_schema(dsn, PG_SCHEMA))


@pytest.fixture
def pg_store_url(postgres_dsn: str) -> str:
    """A PostgreSQL store URL in this session's schema."""
    return pg_url(postgres_dsn)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for each implementation (PostgreSQL: this session's schema)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_store_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StateStore]:
    """The implementation under test, opened through ``open_store``."""
    s = await open_store(store_url)
    yield s
    await s.aclose()


@pytest.fixture
def tenant() -> str:
    return f"acme-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def other_tenant() -> str:
    return f"globex-{uuid.uuid4().hex[:8]}"
