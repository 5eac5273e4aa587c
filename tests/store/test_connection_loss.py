"""PostgresStore when its connection is terminated mid-operation (``pg_terminate_backend``).

An operation whose connection is lost is tried again on a fresh connection when repeating it
is safe: reads and idempotent writes as they are; a write whose commit is ambiguous (the
server may have committed before the connection died) first checks whether it did, so a
repeat never doubles anything. A lost connection that outlasts the retries, or one under an
operation that is not safe to repeat, raises ``StoreUnavailableError`` (a ``StoreError``).

Two kinds of loss are driven on the real server: the statement is waiting (for a row lock
another connection holds) when its backend is terminated, so it did not commit; and the
statement commits, then its backend is terminated before the answer is used (the answer was
"lost"), as when the termination lands between the commit and the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from penguiflow_agents.exceptions import ConflictError, StoreError, StoreUnavailableError
from penguiflow_agents.store import PostgresStore, RunRecord, _postgres, open_store

from .conftest import PG_SCHEMA


@pytest.fixture
def app_name() -> str:
    return f"pf-connloss-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def pg(postgres_dsn: str, pg_store_url: str, app_name: str) -> AsyncIterator[PostgresStore]:
    store = await open_store(f"{pg_store_url}&application_name={app_name}")
    assert isinstance(store, PostgresStore)
    yield store
    await store.aclose()


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": PG_SCHEMA})
    yield conn
    await conn.close()


async def terminate(admin: asyncpg.Connection, app_name: str, *, waiting: bool) -> int:
    """Terminate the store's backends (those waiting on a lock only, with ``waiting``)."""
    return int(
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND ($2 = false OR wait_event_type = 'Lock')",
            app_name,
            waiting,
        )
    )


async def until_waiting(admin: asyncpg.Connection, app_name: str) -> None:
    for _ in range(500):
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = $1 AND wait_event_type = 'Lock'",
            app_name,
        )
        if waiting:
            return
        await admin.execute("SELECT pg_sleep(0.01)")
    raise AssertionError("the store's statement never waited on the lock")


@contextlib.asynccontextmanager
async def answers_lost(
    monkeypatch: pytest.MonkeyPatch,
    admin: asyncpg.Connection,
    statement: str,
    *,
    times: int = 1,
) -> AsyncIterator[list[int]]:
    """The first ``times`` statements containing ``statement`` run (and commit), then their
    backend is terminated before the store sees the result: the store meets the real error of
    a dead connection. Yields the list of terminated backend pids."""
    killed: list[int] = []
    real_acquire = asyncpg.pool.Pool.acquire

    class LosesAnswer:
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            attr = getattr(self._conn, name)
            if name not in ("fetch", "fetchrow", "fetchval", "execute"):
                return attr

            async def call(query: str, *args: Any, **kwargs: Any) -> Any:
                result = await attr(query, *args, **kwargs)
                if statement in query and len(killed) < times:
                    pid = self._conn.get_server_pid()
                    killed.append(pid)
                    await admin.execute("SELECT pg_terminate_backend($1)", pid)
                    await self._conn.execute("SELECT 1")  # the dead connection's real error
                    raise AssertionError("the terminated connection still answered")
                return result

            return call

    @contextlib.asynccontextmanager
    async def acquire(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with real_acquire(self, *args, **kwargs) as conn:
            yield LosesAnswer(conn)

    monkeypatch.setattr(asyncpg.pool.Pool, "acquire", acquire)
    try:
        yield killed
    finally:
        monkeypatch.setattr(asyncpg.pool.Pool, "acquire", real_acquire)


async def new_run(pg: PostgresStore, tenant: str) -> RunRecord:
    return await pg.create_run(
        RunRecord(run_id=f"r-{uuid.uuid4().hex[:8]}", tenant=tenant, principal="alice")
    )


async def test_a_write_whose_connection_is_terminated_while_it_waits_succeeds_on_a_fresh_one(
    pg: PostgresStore, admin: asyncpg.Connection, app_name: str, tenant: str
) -> None:
    run = await new_run(pg, tenant)
    lock = admin.transaction()
    await lock.start()
    await admin.execute(
        f'SELECT 1 FROM "{PG_SCHEMA}".runs WHERE tenant = $1 AND run_id = $2 FOR UPDATE',
        tenant,
        run.run_id,
    )
    run.state = {"step": 1}
    write = asyncio.ensure_future(pg.update_run(run, expected_version=run.version))
    await until_waiting(admin, app_name)
    assert await terminate(admin, app_name, waiting=True) == 1
    await lock.rollback()
    saved = await asyncio.wait_for(write, 10)
    assert saved.version == run.version + 1
    again = await pg.get_run(tenant, run.run_id)
    assert (again.version, again.state) == (run.version + 1, {"step": 1})


async def test_every_connection_terminated_between_operations_is_replaced(
    pg: PostgresStore, admin: asyncpg.Connection, app_name: str, tenant: str
) -> None:
    run = await new_run(pg, tenant)
    assert await terminate(admin, app_name, waiting=False) >= 1
    assert (await pg.get_run(tenant, run.run_id)).run_id == run.run_id
    assert await pg.append_event(tenant, run.run_id, "note", {"n": 1}) == 1


@pytest.mark.parametrize(
    ("what", "statement"),
    [
        ("append_events", "INSERT INTO events"),
        ("update_run", "UPDATE runs"),
        ("begin_call", "INSERT INTO calls"),
        ("finish_call", "UPDATE calls"),
        ("claim_run", "UPDATE runs"),
        ("create_run", "INSERT INTO runs"),
    ],
)
async def test_a_write_that_committed_before_its_connection_died_is_not_done_twice(
    pg: PostgresStore,
    admin: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    tenant: str,
    what: str,
    statement: str,
) -> None:
    run = await new_run(pg, tenant)
    await pg.begin_call(tenant, run.run_id, "c-done")
    run.status, run.claimed_by = "paused", None
    run = await pg.update_run(run, expected_version=run.version)

    writes: dict[str, Callable[[], Awaitable[Any]]] = {
        "append_events": lambda: pg.append_events(
            tenant, run.run_id, [("a", {"i": 1}), ("b", {"i": 2})]
        ),
        "update_run": lambda: pg.update_run(run, expected_version=run.version),
        "begin_call": lambda: pg.begin_call(tenant, run.run_id, "c-new"),
        "finish_call": lambda: pg.finish_call(tenant, run.run_id, "c-done", {"ok": True}),
        "claim_run": lambda: pg.claim_run(
            tenant, run.run_id, owner="w1", from_statuses=["paused"], lease_s=60
        ),
        "create_run": lambda: pg.create_run(
            RunRecord(run_id="r-new", tenant=tenant, principal="alice")
        ),
    }
    async with answers_lost(monkeypatch, admin, statement) as killed:
        result = await writes[what]()
    assert len(killed) == 1  # the first attempt committed, then its connection died

    after = await pg.get_run(tenant, run.run_id)
    if what == "append_events":
        assert result == [1, 2]
        events = await pg.list_events(tenant, run.run_id)
        assert [(e.seq, e.kind) for e in events] == [(1, "a"), (2, "b")]
    elif what == "update_run":
        assert result.version == after.version == run.version + 1
    elif what == "begin_call":
        assert result is True  # the call was begun by this attempt: it is ours to run
        assert await pg.begin_call(tenant, run.run_id, "c-new") is False
    elif what == "finish_call":
        call = await pg.get_call(tenant, run.run_id, "c-done")
        assert call is not None and (call.status, call.result) == ("done", {"ok": True})
    elif what == "claim_run":
        assert result is not None and result.claimed_by == "w1"
        assert (after.status, after.claimed_by, after.version) == ("running", "w1", run.version + 1)
    else:
        assert result.run_id == "r-new"
        assert (await pg.get_run(tenant, "r-new")).version == result.version


async def test_a_repeat_of_a_committed_write_still_sees_a_real_conflict(
    pg: PostgresStore, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, tenant: str
) -> None:
    """The check is exact: another writer's version is a conflict, not our lost commit."""
    run = await new_run(pg, tenant)
    stale = await pg.get_run(tenant, run.run_id)
    await pg.update_run(run, expected_version=run.version)  # someone else writes first
    async with answers_lost(monkeypatch, admin, "SELECT version FROM runs") as killed:
        with pytest.raises(ConflictError, match="another writer changed it first"):
            await pg.update_run(stale, expected_version=stale.version)
    assert killed  # its conflict check was cut off, then made again


async def test_a_connection_lost_on_every_attempt_raises_store_unavailable(
    pg: PostgresStore, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, tenant: str
) -> None:
    run = await new_run(pg, tenant)
    attempts = 1 + len(_postgres.RETRY_BACKOFF_S)
    async with answers_lost(monkeypatch, admin, "FROM runs WHERE", times=attempts) as killed:
        with pytest.raises(StoreUnavailableError, match="reachable and retry"):
            await pg.get_run(tenant, run.run_id)
    assert len(killed) == attempts
    assert (await pg.get_run(tenant, run.run_id)).run_id == run.run_id


async def test_claim_outbox_is_not_repeated_after_a_lost_connection(
    pg: PostgresStore, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claiming outbox entries is not safe to repeat (a repeat would find them leased):
    the loss is reported, as unavailable."""
    async with answers_lost(monkeypatch, admin, "UPDATE outbox") as killed:
        with pytest.raises(StoreUnavailableError):
            await pg.claim_outbox(now=0.0, lease_s=1.0, limit=1)
    assert len(killed) == 1


async def test_a_statement_error_is_neither_retried_nor_unavailable(pg: PostgresStore) -> None:
    calls = 0

    async def bad(conn: Any) -> None:
        nonlocal calls
        calls += 1
        await conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(StoreError) as info:
        await pg._run(bad, bad)
    assert not isinstance(info.value, StoreUnavailableError)
    assert calls == 1


def test_a_timeout_is_unavailable_but_not_a_lost_connection(pg_store_url: str) -> None:
    """A statement (or pool wait) that timed out is not tried again (it took 30 s already),
    but it is the store being unavailable."""
    assert not _postgres._connection_lost(TimeoutError())
    assert _postgres._connection_lost(ConnectionResetError())
    assert _postgres._connection_lost(asyncpg.exceptions.AdminShutdownError("terminating"))
    assert not _postgres._connection_lost(asyncpg.exceptions.UniqueViolationError("dup"))
    store = PostgresStore(pg_store_url)
    assert isinstance(store._translate(TimeoutError()), StoreUnavailableError)
    assert "timed out" in str(store._translate(TimeoutError()))
