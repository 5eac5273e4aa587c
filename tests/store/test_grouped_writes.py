"""SQLite: the frequent writes of one store-thread batch share one transaction (issue #14).

A write of several statements has a savepoint of its own in the group, a write of one
statement (a checkpoint, a new run, an event) none (SQLite undoes a failing statement
alone): one that fails is rolled back alone, the others commit, and every result is handed
back only after the commit.
Also: the records a write returns decode their state only when read, and the
state text a writer hands over (``EncodedRunRecord``) is stored as it is.

These are the store thread's groups: the grouped writes go to the thread here
(``inline_writes`` off); tests/store/test_inline_writes.py has the event loop's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.exceptions import ConflictError, NotFoundError, StoreError
from penguiflow_agents.store import MemoryStore, SQLiteStore
from penguiflow_agents.store._base import RunRecord
from penguiflow_agents.store._codec import EncodedRunRecord, encoded_run

N = 40


@pytest.fixture(autouse=True)
def _on_the_store_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SQLiteStore, "inline_writes", False)


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
    tmp_path: Path, groups: list[tuple[str, int]]
) -> None:
    path = tmp_path / "state.db"
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
        assert max(size for _, size in groups) > 1  # writes did share transactions
        *updated, second, duplicate = results
        assert all(isinstance(r, RunRecord) and r.version == 1 for r in updated)
        assert isinstance(second, ConflictError) and isinstance(duplicate, ConflictError)
        # Acknowledged means committed: another connection sees every update.
        assert committed_versions(path) == {f"run-{i}": 1 for i in range(N)}
        assert (await store.get_run("acme", "run-7")).state == {"step": "updated"}
    finally:
        await store.aclose()


async def test_a_group_whose_transaction_fails_runs_each_write_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commit_fails_once: Any
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

        failing = commit_fails_once(real)  # the group's COMMIT fails (its writes use savepoints)
        monkeypatch.setattr(self, "_connection", lambda: failing)
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


def test_an_encoded_copy_has_every_field_of_the_record_and_its_state_text() -> None:
    full = RunRecord(
        run_id="r",
        tenant="t",
        principal="p",
        roles=["a"],
        session_id="s",
        status="paused",
        model="m",
        query="q",
        state={"step": 3},
        version=7,
        claimed_by="w",
        claim_expires_at=9.5,
        created_at=1.5,
        updated_at=2.5,
    )
    copy = encoded_run(full, roles=["a"], state_text='{"step":3}')
    assert copy == full  # every field (an unset slot would raise here)
    assert dataclasses.asdict(copy) == dataclasses.asdict(full)
    copy.state = {"step": 4}  # set before ever read: the text is dropped
    assert (copy.state, copy.state_text) == ({"step": 4}, None)


async def _one_group(store: SQLiteStore, *writes: Any) -> list[Any]:
    """Run ``writes`` (coroutines) as one batch of the store thread: queued while the thread
    is held by an operation that waits for them all to be submitted."""
    submitted = threading.Event()
    held = asyncio.ensure_future(store._run(lambda conn: submitted.wait(30)))
    await asyncio.sleep(0)  # the holding operation is queued first
    tasks = [asyncio.ensure_future(w) for w in writes]
    await asyncio.sleep(0)  # every write is queued
    submitted.set()
    await held
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def test_every_kind_of_run_write_in_one_group_gets_its_own_outcome(
    tmp_path: Path, groups: list[tuple[str, int]]
) -> None:
    """A write of one statement has no savepoint in a group: one that fails leaves the others.
    Checkpoints keeping the status, a status change, a record whose created_at is not the
    stored one, a stale version, a missing run and a row SQLite refuses, in one transaction."""
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    try:
        created = [await store.create_run(run(i)) for i in range(6)]
        keep, finish, other_created, stale, refused, _ = created
        keep.state = {"step": "kept"}
        finish.status, finish.state = "completed", {"step": "done"}
        other_created.created_at += 1.0  # not the stored one: written, the stored one returned
        stale.version -= 1
        refused.principal = None  # type: ignore[assignment]  # NOT NULL: SQLite refuses it
        missing = run(99)
        groups.clear()
        results = await _one_group(
            store,
            store.update_run(keep, expected_version=keep.version),
            store.update_run(finish, expected_version=finish.version),
            store.update_run(other_created, expected_version=other_created.version),
            store.update_run(stale, expected_version=stale.version),
            store.update_run(refused, expected_version=refused.version),
            store.update_run(missing, expected_version=0),
            store.create_run(run(0)),  # exists already
            store.append_event("acme", "run-5", "tick", {}),
        )
        assert [size for _, size in groups] == [8]  # one transaction
        kept, finished, other, conflict, refusal, not_found, duplicate, seq = results
        assert isinstance(kept, RunRecord) and kept.version == 1
        assert isinstance(finished, RunRecord) and finished.status == "completed"
        assert isinstance(other, RunRecord)
        assert (other.version, other.created_at) == (1, other_created.created_at - 1.0)
        assert isinstance(conflict, ConflictError) and isinstance(duplicate, ConflictError)
        assert isinstance(refusal, StoreError) and isinstance(not_found, NotFoundError)
        assert seq == 1
        # What another connection sees: the successful writes, the failed ones changed nothing.
        assert committed_versions(path) == {
            "run-0": 1,
            "run-1": 1,
            "run-2": 1,
            "run-3": 0,
            "run-4": 0,
            "run-5": 0,
        }
        assert (await store.get_run("acme", "run-0")).state == {"step": "kept"}
        assert (await store.get_run("acme", "run-1")).state == {"step": "done"}
        assert [r.run_id for r in await store.list_runs("acme", status="completed")] == ["run-1"]
        assert len(await store.list_runs("acme", status="running")) == 5
        assert integrity(path) == "ok"  # the indexes agree with the rows
    finally:
        await store.aclose()


async def test_a_group_of_checkpoints_whose_commit_fails_writes_each_once_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commit_fails_once: Any
) -> None:
    path = tmp_path / "state.db"
    store = await SQLiteStore.open(path)
    try:
        created = [await store.create_run(run(i)) for i in range(N)]
        real = store._connection()
        failing = commit_fails_once(real)  # the group's COMMIT fails once
        monkeypatch.setattr(store, "_connection", lambda: failing)
        for record in created:
            record.state = {"step": "checkpoint"}
        results = await _one_group(
            store, *(store.update_run(r, expected_version=r.version) for r in created)
        )
        assert failing.failed
        assert all(isinstance(r, RunRecord) and r.version == 1 for r in results)
        assert committed_versions(path) == {f"run-{i}": 1 for i in range(N)}
    finally:
        await store.aclose()


async def test_successive_checkpoints_of_a_run_in_one_group_apply_in_order(
    tmp_path: Path,
) -> None:
    """Two writes of one run in one batch: the second sees the first (the last state wins)."""
    store = await SQLiteStore.open(tmp_path / "state.db")
    try:
        first = await store.create_run(run(1))
        second = encoded_run(first, roles=[], state_text='{"step":"second"}')
        second.version = first.version + 1
        first.state = {"step": "first"}
        one, two = await _one_group(
            store,
            store.update_run(first, expected_version=0),
            store.update_run(second, expected_version=1),
        )
        assert (one.version, two.version) == (1, 2)
        stored = await store.get_run("acme", "run-1")
        assert (stored.version, stored.state) == (2, {"step": "second"})
    finally:
        await store.aclose()
