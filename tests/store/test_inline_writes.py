"""SQLite: the grouped writes of one event-loop iteration commit on the loop's own thread.

``_InlineWriter`` (issue #14): the frequent writes submitted during one iteration of the
loop that owns the inline connection run at its end in one transaction, and are
acknowledged only after its COMMIT. The loop never waits for a lock: when another
connection holds it, the group goes to the store thread, which waits; when the
transaction fails, nothing of it was written and each write runs again alone there.
Other event loops use the store thread (or take the connection over once its loop closed).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.exceptions import ConflictError, NotFoundError, StoreError
from penguiflow_agents.store import SQLiteStore, _sqlite
from penguiflow_agents.store._base import RunRecord

N = 40


def run(i: int) -> RunRecord:
    return RunRecord(
        run_id=f"run-{i}",
        tenant="acme",
        principal="alice",
        status="running",
        state={"step": i},
    )


def committed_versions(path: Path) -> dict[str, int]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT run_id, version FROM runs WHERE tenant = 'acme'"))


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def test_one_iterations_writes_commit_together_on_the_loops_thread_acked_after_commit(
    tmp_path: Path, groups: list[tuple[str, int]]
) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    seen_at_ack: dict[str, dict[str, int]] = {}
    try:
        created = await asyncio.gather(*(store.create_run(run(i)) for i in range(N)))
        assert store._inline is not None and store._inline.loop is asyncio.get_running_loop()
        me = threading.current_thread().name
        assert (me, N) in groups  # one transaction, on this thread
        groups.clear()
        stale = created[7]
        futures = []
        for record in created:
            record.state = {"step": "updated"}
            future = asyncio.ensure_future(store.update_run(record, expected_version=0))

            def ack(f: asyncio.Future[Any], run_id: str = record.run_id) -> None:
                seen_at_ack[run_id] = committed_versions(path)  # another connection's view

            future.add_done_callback(ack)
            futures.append(future)
        results = await asyncio.gather(
            *futures,
            store.update_run(stale, expected_version=0),  # the same version again
            store.create_run(run(3)),  # exists already
            store.update_run(run(99), expected_version=0),  # no such run
            return_exceptions=True,
        )
        assert groups == [(me, N + 3)]
        *updated, second, duplicate, missing = results
        assert all(isinstance(r, RunRecord) and r.version == 1 for r in updated)
        assert isinstance(second, ConflictError) and isinstance(duplicate, ConflictError)
        assert isinstance(missing, NotFoundError)
        # Acknowledged means committed: when each write was acknowledged, another connection
        # saw it (all of the group) at version 1.
        assert seen_at_ack == {r.run_id: {f"run-{i}": 1 for i in range(N)} for r in created}
        # The store thread's reads see the inline commits.
        assert (await store.get_run("acme", "run-7")).state == {"step": "updated"}
    finally:
        await store.aclose()


async def test_a_failed_inline_commit_acks_nothing_and_runs_each_write_once_on_the_thread(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    groups: list[tuple[str, int]],
    commit_fails_once: Any,
) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    try:
        created = [await store.create_run(run(i)) for i in range(N)]
        inline = store._inline
        assert inline is not None
        real = inline.conn
        failing = commit_fails_once(real)  # the group's COMMIT fails once
        monkeypatch.setattr(inline, "conn", failing)
        for record in created:
            record.state = {"step": "checkpoint"}
        results = await asyncio.gather(
            *(store.update_run(r, expected_version=r.version) for r in created)
        )
        assert failing.failed
        # Each write ran once more, alone, on the store thread: version 1, not 2.
        assert all(isinstance(r, RunRecord) and r.version == 1 for r in results)
        assert committed_versions(path) == {f"run-{i}": 1 for i in range(N)}
        assert integrity(path) == "ok"
    finally:
        await store.aclose()


async def test_a_locked_file_sends_the_group_to_the_thread_and_never_blocks_the_loop(
    tmp_path: Path, groups: list[tuple[str, int]]
) -> None:
    """Another connection holds the write lock: the loop goes on, the writes wait on the
    store thread and commit once (each exactly once) when the lock is released."""
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        created = [await store.create_run(run(i)) for i in range(N)]
        groups.clear()
        other.execute("BEGIN IMMEDIATE")  # the write lock, held
        other.execute(  # an event the held transaction writes first
            "INSERT INTO events (tenant, run_id, seq, kind, data, ts) "
            "VALUES ('acme', 'run-1', 1, 'other', '{}', 0)"
        )
        for record in created:
            record.state = {"step": "waited"}
        tasks = [
            asyncio.ensure_future(store.update_run(r, expected_version=r.version)) for r in created
        ]
        tasks.append(asyncio.ensure_future(store.append_event("acme", "run-1", "tick", {})))
        # The loop is not blocked: it runs other work while the writes wait for the lock.
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 5
        assert not any(t.done() for t in tasks)  # none acknowledged: none committed
        assert groups == []  # the inline transaction never began
        other.execute("COMMIT")
        *results, seq = await asyncio.gather(*tasks)
        assert all(r.version == 1 for r in results) and seq == 2  # after the other's
        assert committed_versions(path) == {f"run-{i}": 1 for i in range(N)}
        assert [e.kind for e in await store.list_events("acme", "run-1")] == ["other", "tick"]
        # Waited for on the store thread, as one group.
        assert [size for name, size in groups] == [N + 1]
        assert groups[0][0] != threading.current_thread().name
        # The next writes are inline again.
        groups.clear()
        await store.append_event("acme", "run-1", "tock", {})
        assert groups == [(threading.current_thread().name, 1)]
    finally:
        other.close()
        await store.aclose()


async def test_the_lock_held_by_another_process_sends_writes_to_the_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.readline(); "
        "c.execute('COMMIT')",
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        await store.create_run(run(0))  # before the lock: inline
        assert (await proc.stdout.readline()).strip() == b"locked"
        task = asyncio.ensure_future(store.append_event("acme", "run-0", "tick", {}))
        await asyncio.sleep(0.05)
        assert not task.done()
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        assert await task == 1
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await store.aclose()


async def test_closing_commits_the_pending_inline_writes_first(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    created = [await store.create_run(run(i)) for i in range(N)]
    tasks = [
        asyncio.ensure_future(store.update_run(r, expected_version=r.version)) for r in created
    ]
    await asyncio.sleep(0)  # submitted, not yet flushed
    assert store._inline is not None and len(store._inline._pending) == N
    await store.aclose()
    assert all(r.version == 1 for r in await asyncio.gather(*tasks))
    assert committed_versions(path) == {f"run-{i}": 1 for i in range(N)}
    with pytest.raises(StoreError, match="closed"):
        await store.append_event("acme", "run-1", "late", {})
    assert integrity(path) == "ok"


def test_a_store_used_from_several_event_loops_at_once(tmp_path: Path) -> None:
    """One loop owns the inline connection; the others write through the store thread. Every
    write commits exactly once and one run's events stay gapless."""
    path = tmp_path / "state.db"
    store = asyncio.run(SQLiteStore.open(path))  # its loop closes: nobody owns the connection
    asyncio.run(store.create_run(run(0)))  # a new loop takes the connection over
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        async def body() -> None:
            barrier.wait()
            for j in range(25):
                await asyncio.gather(
                    store.append_event("acme", "run-0", "tick", {"k": k, "j": j}),
                    store.create_run(run(1000 * (k + 1) + j)),
                )

        try:
            asyncio.run(body())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []

    async def check() -> None:
        events = await store.list_events("acme", "run-0")
        assert [e.seq for e in events] == list(range(1, 101))
        assert sorted((e.data["k"], e.data["j"]) for e in events) == [
            (k, j) for k in range(4) for j in range(25)
        ]
        assert len(committed_versions(path)) == 1 + 100
        await store.aclose()

    asyncio.run(check())
    assert integrity(path) == "ok"


async def test_the_wal_is_checkpointed_by_the_store_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline connection never checkpoints; past the threshold the thread does."""
    monkeypatch.setattr(_sqlite, "WAL_CHECKPOINT_PAGES", 8)
    monkeypatch.setattr(_sqlite, "WAL_CHECK_EVERY", 1)
    checkpoints: list[str] = []
    real = _sqlite._checkpoint

    def counted(conn: sqlite3.Connection) -> None:
        checkpoints.append(threading.current_thread().name)
        real(conn)

    monkeypatch.setattr(_sqlite, "_checkpoint", counted)
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    try:
        record = await store.create_run(run(0))
        for _ in range(200):
            record.state = {"blob": "x" * 2000, "v": record.version}
            record = await store.update_run(record, expected_version=record.version)
        assert checkpoints and threading.current_thread().name not in checkpoints
        assert committed_versions(path) == {"run-0": 200}
    finally:
        await store.aclose()
    assert integrity(path) == "ok"


async def test_a_large_iteration_is_committed_in_groups_of_at_most_the_cap(
    tmp_path: Path, groups: list[tuple[str, int]]
) -> None:
    """One group holds the loop for a bounded time: past INLINE_GROUP_MAX writes the rest go
    in the next iterations, in order, each acknowledged after its own commit."""
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    cap = _sqlite.INLINE_GROUP_MAX
    count = cap * 2 + 7
    try:
        created = await asyncio.gather(*(store.create_run(run(i)) for i in range(count)))
        me = threading.current_thread().name
        assert [size for name, size in groups if name == me] == [cap, cap, 7]
        assert len(created) == count and len(committed_versions(path)) == count
        # Pending writes past the cap are committed by aclose as well.
        groups.clear()
        for record in created:
            record.state = {"step": "closing"}
        pending = [asyncio.ensure_future(store.update_run(r, expected_version=0)) for r in created]
        await asyncio.sleep(0)  # submitted, none flushed yet
    finally:
        await store.aclose()
    done = await asyncio.gather(*pending)
    assert {r.version for r in done} == {1}
    assert set(committed_versions(path).values()) == {1}
    assert integrity(path) == "ok"
