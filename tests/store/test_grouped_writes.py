"""SQLite: the frequent writes of one store-thread batch share one transaction (issue #14).

Each write of a group has a savepoint of its own: one that fails is rolled back
alone, the others commit, and every result is handed back only after the commit.
Also: the records a write returns decode their state only when read, and the
state text a writer hands over (``EncodedRunRecord``) is stored as it is.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.exceptions import ConflictError
from penguiflow_agents.store import MemoryStore, SQLiteStore
from penguiflow_agents.store._base import RunRecord
from penguiflow_agents.store._codec import EncodedRunRecord, encoded_run

N = 40


def run(i: int) -> RunRecord:
    return RunRecord(
        run_id=f"run-{i}",
        tenant="acme",
        principal="alice",
        status="running",
        state={"step": i, "messages": [{"role": "user", "content": f"q{i}"}]},
    )


def committed_versions(path: Path) -> dict[str, int]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT run_id, version FROM runs WHERE tenant = 'acme'"))


async def test_one_batch_of_writes_commits_together_and_a_failing_one_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"
    groups: list[int] = []
    group = SQLiteStore._run_group

    def counted(self: SQLiteStore, ops: list[Any]) -> Any:
        groups.append(len(ops))
        return group(self, ops)

    monkeypatch.setattr(SQLiteStore, "_run_group", counted)  # before the store takes it
    store = await SQLiteStore.open(path)
    try:
        created = await asyncio.gather(*(store.create_run(run(i)) for i in range(N)))
        # Every record written, and the stale write among them refused without harm to the rest.
        stale = created[7]
        for record in created:
            record.state = {"step": "updated"}
        results = await asyncio.gather(
            *(store.update_run(r, expected_version=r.version) for r in created),
            store.update_run(stale, expected_version=stale.version),  # the same version again
            store.create_run(run(3)),  # exists already
            return_exceptions=True,
        )
        assert max(groups) > 1  # writes did share transactions
        *updated, second, duplicate = results
        assert all(isinstance(r, RunRecord) and r.version == 1 for r in updated)
        assert isinstance(second, ConflictError) and isinstance(duplicate, ConflictError)
        # Acknowledged means committed: another connection sees every update.
        assert committed_versions(path) == {f"run-{i}": 1 for i in range(N)}
        assert (await store.get_run("acme", "run-7")).state == {"step": "updated"}
    finally:
        await store.aclose()


async def test_a_group_whose_transaction_fails_runs_each_write_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the group's COMMIT fails, nothing of it was written: each write runs again alone."""
    fail_next_group = [True]
    group = SQLiteStore._run_group

    def failing_commit(self: SQLiteStore, ops: list[Any]) -> Any:
        if not fail_next_group[0]:
            return group(self, ops)
        fail_next_group[0] = False
        conn = self._connection()
        real = conn

        failed = [False]

        class Wrapped:  # the group's COMMIT fails (the first COMMIT: its writes use savepoints)
            in_transaction = property(lambda _: real.in_transaction)

            def execute(self, sql: str, *args: Any) -> Any:
                if sql == "COMMIT" and not failed[0]:
                    failed[0] = True
                    raise sqlite3.OperationalError("disk I/O error (test)")
                return real.execute(sql, *args)

        monkeypatch.setattr(self, "_connection", lambda: Wrapped())
        try:
            return group(self, ops)
        finally:
            monkeypatch.setattr(self, "_connection", lambda: real)

    monkeypatch.setattr(SQLiteStore, "_run_group", failing_commit)  # before the store takes it
    store = await SQLiteStore.open(tmp_path / "state.db")
    try:
        await store.create_run(run(0))  # opens the connection
        created = await asyncio.gather(*(store.create_run(run(i)) for i in range(1, N)))
        assert not fail_next_group[0]  # a group's COMMIT did fail
        assert [r.run_id for r in created] == [f"run-{i}" for i in range(1, N)]
        assert committed_versions(tmp_path / "state.db") == {f"run-{i}": 0 for i in range(N)}
    finally:
        await store.aclose()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_state_text_is_stored_as_given_and_returned_records_decode_when_read(
    kind: str, tmp_path: Path
) -> None:
    store = MemoryStore() if kind == "memory" else await SQLiteStore.open(tmp_path / "s.db")
    try:
        record = await store.create_run(run(1))
        assert isinstance(record, EncodedRunRecord)
        assert record.state_text is not None  # not decoded yet
        assert record == await store.get_run("acme", "run-1")  # equality reads it
        assert record.state == {"step": 1, "messages": [{"role": "user", "content": "q1"}]}
        text = '{"step":2,"pair":[1,2]}'
        staged = encoded_run(record, roles=[], state_text=text)
        updated = await store.update_run(staged, expected_version=record.version)
        assert (await store.get_run("acme", "run-1")).state == {"step": 2, "pair": [1, 2]}
        updated.state["step"] = 99  # a copy: the store's row is untouched
        assert (await store.get_run("acme", "run-1")).state["step"] == 2
    finally:
        await store.aclose()
