"""``SQLiteStore``: the default state store, one SQLite file shared safely by many processes.

Each store owns one connection used from one dedicated worker thread, and a second
one on which the frequent writes of the event loop that first uses it commit in that
loop's own thread, one transaction per loop iteration (``_InlineWriter``): that one never
waits for a lock nor checkpoints (no fsync), a group finding the file locked goes to the
thread. The file runs in WAL mode; every
read-modify-write is a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's
single write lock up front, so two processes can never both win a claim, a
decision or a call. The schema is versioned (``schema_version`` table) and
migrated forward on open.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from ..exceptions import ConflictError, NotFoundError, PenguiflowError, StoreError
from . import _codec, _outbox
from ._base import (
    DEFAULT_PRUNE_BATCH,
    ENDED_STATUSES,
    ApprovalDecision,
    ApprovalRecord,
    CallRecord,
    OutboxEntry,
    RemoteBinding,
    RunRecord,
    StoredEvent,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")

DEFAULT_PATH = os.path.join(".penguiflow", "state.db")
# Longest a statement waits for another connection's write lock before failing.
BUSY_TIMEOUT_S = 30.0
# Pause between attempts to put a file another connection is creating in WAL mode (_wal_mode).
WAL_MODE_RETRY_S = 0.005
# The inline writer (``_InlineWriter``) asks the store thread for a checkpoint once the WAL
# holds more pages than this (SQLite's own wal_autocheckpoint default), checked every
# WAL_CHECK_EVERY of its commits.
WAL_CHECKPOINT_PAGES = 1000
WAL_CHECK_EVERY = 8
# At most this many writes per transaction committed on the event loop's thread: the rest go
# in the next iterations of the loop (other callbacks run in between), so that how long one
# group holds the loop does not grow with the number of runs writing at once (35-44 µs a
# write on a quiet 2-core machine; benchmarks/README.md, concurrent_runs).
INLINE_GROUP_MAX = 128

# Ordered migrations: entry i takes the schema from version i to version i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs, their event log, sessions.
    (
        """CREATE TABLE runs (
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, principal TEXT NOT NULL,
            roles TEXT NOT NULL, session_id TEXT, status TEXT NOT NULL, model TEXT NOT NULL,
            query TEXT NOT NULL, state TEXT NOT NULL, version INTEGER NOT NULL,
            claimed_by TEXT, claim_expires_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (tenant, run_id))""",
        "CREATE INDEX runs_by_status ON runs (tenant, status, created_at)",
        """CREATE TABLE events (
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
            kind TEXT NOT NULL, data TEXT NOT NULL, ts REAL NOT NULL,
            PRIMARY KEY (tenant, run_id, seq)) WITHOUT ROWID""",
        """CREATE TABLE sessions (
            tenant TEXT NOT NULL, session_id TEXT NOT NULL, messages TEXT NOT NULL,
            updated_at REAL NOT NULL, PRIMARY KEY (tenant, session_id))""",
    ),
    # 2: approval requests and exactly-once call bookkeeping.
    (
        """CREATE TABLE approvals (
            tenant TEXT NOT NULL, id TEXT NOT NULL, run_id TEXT NOT NULL, call_id TEXT NOT NULL,
            tool TEXT NOT NULL, arguments TEXT NOT NULL, arguments_sha256 TEXT NOT NULL,
            tool_hash TEXT NOT NULL, policy_version TEXT NOT NULL, requested_by TEXT NOT NULL,
            approvers TEXT NOT NULL, rule TEXT NOT NULL, input_schema TEXT NOT NULL,
            status TEXT NOT NULL, decision TEXT, created_at REAL NOT NULL, expires_at REAL NOT NULL,
            PRIMARY KEY (tenant, id))""",
        "CREATE INDEX approvals_by_created ON approvals (tenant, created_at)",
        "CREATE INDEX approvals_by_run ON approvals (tenant, run_id)",
        """CREATE TABLE calls (
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, call_id TEXT NOT NULL,
            status TEXT NOT NULL, result TEXT, started_at REAL NOT NULL,
            PRIMARY KEY (tenant, run_id, call_id)) WITHOUT ROWID""",
    ),
    # 3: the webhook outbox (written with the approval it announces).
    (
        """CREATE TABLE outbox (
            id TEXT NOT NULL PRIMARY KEY, event_id TEXT NOT NULL, tenant TEXT NOT NULL,
            url TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL,
            attempts INTEGER NOT NULL, next_attempt_at REAL NOT NULL, last_error TEXT,
            created_at REAL NOT NULL, finished_at REAL)""",
        "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
        "CREATE INDEX outbox_by_tenant ON outbox (tenant, created_at)",
    ),
    # 4: sealed credentials (OAuth tokens and client registrations of MCP sources).
    (
        """CREATE TABLE credentials (
            tenant TEXT NOT NULL, key TEXT NOT NULL, sealed TEXT NOT NULL,
            updated_at REAL NOT NULL, PRIMARY KEY (tenant, key)) WITHOUT ROWID""",
    ),
    # 5: retention finds ended runs by status and last write.
    ("CREATE INDEX runs_by_end ON runs (status, updated_at)",),
    # 6: remote tasks started for a trace (RemoteNode), to reattach after a takeover.
    (
        """CREATE TABLE remote_tasks (
            tenant TEXT NOT NULL, trace_id TEXT NOT NULL, key TEXT NOT NULL,
            agent_url TEXT NOT NULL, task_id TEXT NOT NULL, context_id TEXT NOT NULL,
            created_at REAL NOT NULL, PRIMARY KEY (tenant, trace_id, key)) WITHOUT ROWID""",
    ),
    # 7: each tool source's latest listing (``tools list`` starts from it).
    (
        """CREATE TABLE listings (
            source TEXT NOT NULL PRIMARY KEY, listing TEXT NOT NULL, updated_at REAL NOT NULL)""",
    ),
    # 8: running runs leave the index of ended runs: a checkpoint (a running run's write, which
    # moves updated_at) no longer rewrites an entry of it (an eighth of the statement's work).
    # Queries that use it say ``status <> 'running'`` (prune_runs).
    (
        "DROP INDEX runs_by_end",
        "CREATE INDEX runs_by_end ON runs (status, updated_at) WHERE status <> 'running'",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_RUN_COLUMNS = _codec.RUN_COLUMNS
_APPROVAL_COLUMNS = _codec.APPROVAL_COLUMNS
_OUTBOX_COLUMNS = _outbox.OUTBOX_COLUMNS


# update_run's writes. Parameters: principal, roles, session_id, status, model, query, state,
# claimed_by, claim_expires_at, tenant, run_id, the expected version, created_at, updated_at.
_UPDATE_RUN = (
    "UPDATE runs SET principal = ?1, roles = ?2, session_id = ?3, status = ?4, model = ?5, "
    "query = ?6, state = ?7, claimed_by = ?8, claim_expires_at = ?9, version = ?12 + 1, "
    "updated_at = ?14 WHERE tenant = ?10 AND run_id = ?11 AND version = ?12"
)
# The same when the status and created_at are the stored ones: a column that is not SET keeps
# SQLite from rewriting the indexes that hold it (runs_by_status).
_CHECKPOINT_RUN = (
    "UPDATE runs SET principal = ?1, roles = ?2, session_id = ?3, model = ?5, query = ?6, "
    "state = ?7, claimed_by = ?8, claim_expires_at = ?9, version = ?12 + 1, updated_at = ?14 "
    "WHERE tenant = ?10 AND run_id = ?11 AND version = ?12 AND created_at = ?13 AND status = ?4"
)


def _null_columns(sql: str, nulls: tuple[bool, ...]) -> str:
    """``sql`` (an update of a run) writing NULL, not a parameter, for each column of
    session_id, claimed_by and claim_expires_at flagged in ``nulls``."""
    for null, column in zip(
        nulls, ("session_id = ?3", "claimed_by = ?8", "claim_expires_at = ?9"), strict=True
    ):
        if null:
            sql = sql.replace(column, column.split(" = ")[0] + " = NULL")
    return sql


# update_run's statements (the checkpoint, the update where created_at matches, the update) by
# which of session_id, claimed_by and claim_expires_at are None: those are written as NULL and
# bound as 0 (unused), since a None parameter costs the sqlite3 module a failed adapter lookup
# (an exception raised and cleared: ~1 us, a third of the checkpoint statement's binding).
_RUN_WRITES = {
    nulls: (
        _null_columns(_CHECKPOINT_RUN, nulls),
        _null_columns(_UPDATE_RUN + " AND created_at = ?13", nulls),
        _null_columns(_UPDATE_RUN, nulls),
    )
    for nulls in itertools.product((False, True), repeat=3)
}

# prune_runs' batch of ended runs. Parameters: the ENDED_STATUSES, the time, the batch size.
# ``status <> 'running'`` is implied by them, and lets SQLite use runs_by_end (partial).
_PRUNE_BATCH = (
    "SELECT tenant, run_id FROM runs WHERE status <> 'running' AND "
    f"status IN ({', '.join('?' * len(ENDED_STATUSES))}) AND updated_at < ? LIMIT ?"
)

_COUNT_RUNNING = "SELECT COUNT(*) FROM runs WHERE status = ?"
_COUNT_ENDED_OR_PAUSED = "SELECT COUNT(*) FROM runs WHERE status <> 'running' AND status = ?"

_Outcome = tuple[Any, BaseException | None]  # (result, None) or (None, the exception raised)


class _StoreThread:
    """The one thread that runs a store's operations, in submission order.

    A hop to a thread costs more than most SQLite statements here (a wake-up
    and a self-pipe write per operation with ``run_in_executor``). Under
    concurrency, operations submitted while the thread is busy are taken as
    one batch, and the batch's results go back to each event loop with one
    ``call_soon_threadsafe``: one wake-up per batch, not per operation.

    Consecutive *grouped* operations of a batch (the frequent writes: run records,
    events, claims) are handed to ``run_group`` together, which commits them in one
    transaction (see ``SQLiteStore._run_group``); every other operation is its own
    transaction. Results are handed back only after the batch ran, so after its
    commit: a write acknowledged to its caller is committed.
    """

    def __init__(
        self,
        name: str,
        run_group: Callable[[list[Callable[[], Any]]], list[_Outcome]] | None = None,
    ) -> None:
        self._name = name
        self._run_group = run_group
        # The queue and the flags are shared under _lock. While the thread has nothing to do it
        # blocks on _wakeup (held whenever _sleeping is True), which a submitter releases: two
        # C-level locks, not a threading.Condition (Python code on every submit).
        self._lock = threading.Lock()
        self._wakeup = threading.Lock()
        self._wakeup.acquire()
        self._sleeping = False
        self._queue: deque[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any], bool]
        ]
        self._queue = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, fn: Callable[[], T], *, grouped: bool = False) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._stopping:
                raise StoreError("the SQLite store was closed; open a new store.")
            self._queue.append((loop, future, fn, grouped))
            self._start_or_wake()
        return future

    def _start_or_wake(self) -> None:
        """Under ``_lock``, with work queued: start the thread, or wake it if it sleeps."""
        if self._thread is None:
            # A daemon thread: a store left open does not hold the interpreter at exit
            # (each operation is a transaction, so a cut-off one leaves nothing half done).
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        elif self._sleeping:
            self._sleeping = False
            self._wakeup.release()

    def enqueue(
        self,
        loop: asyncio.AbstractEventLoop,
        items: list[tuple[asyncio.Future[Any], Callable[[], Any], bool]],
    ) -> None:
        """Queue operations whose futures exist already (of ``loop``), in order, as one
        submission: the inline writer's group handed over (``_InlineWriter.flush``)."""
        with self._lock:
            if self._stopping:
                stopped = StoreError("the SQLite store was closed; open a new store.")
                for future, _, _ in items:
                    if not future.done():
                        future.set_exception(stopped)
                return
            self._queue.extend((loop, future, fn, grouped) for future, fn, grouped in items)
            self._start_or_wake()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if self._sleeping:
                self._sleeping = False
                self._wakeup.release()

    def _serve(self) -> None:
        while True:
            with self._lock:
                batch = list(self._queue)
                self._queue.clear()
                if not batch:
                    if self._stopping:
                        return
                    self._sleeping = True
            if not batch:
                self._wakeup.acquire()  # until a submit (or stop) releases it
                continue
            outcomes = self._outcomes([(fn, grouped) for _, _, fn, grouped in batch])
            settled: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, Any]]] = {}
            for (loop, future, _, _), (result, exc) in zip(batch, outcomes, strict=True):
                settled.setdefault(loop, []).append((future, result, exc))
            for loop, results in settled.items():
                # A loop closed meanwhile has no one left waiting.
                with suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, results)

    def _outcomes(self, ops: list[tuple[Callable[[], Any], bool]]) -> list[_Outcome]:
        out: list[_Outcome] = []
        group: list[Callable[[], Any]] = []
        for fn, grouped in [*ops, (None, False)]:
            if grouped and fn is not None:
                group.append(fn)
                continue
            if len(group) > 1 and self._run_group is not None:
                out.extend(self._run_group(group))
            else:
                out.extend(_one(f) for f in group)
            group = []
            if fn is not None:
                out.append(_one(fn))
        return out


class _InlineWriter:
    """Grouped writes of one event loop, committed on that loop's own thread (issue #14).

    The grouped writes submitted during one iteration of the loop are run at its end
    (``call_soon``) in one transaction on a connection of their own, and their futures
    are set after the COMMIT: an acknowledged write is committed. This saves each write the
    hop to the store thread and back (a wake-up, GIL hand-offs, ``call_soon_threadsafe``).

    The loop never waits for a lock: the connection has ``busy_timeout = 0``. If another
    connection holds the write lock (another process, or the store thread), the whole group
    goes to the store thread as it is (nothing of it was written), which waits for the lock;
    if the group's transaction fails after its BEGIN, nothing of it was written either and
    each write runs again alone on the store thread. The connection never checkpoints (a
    checkpoint fsyncs): when its WAL grows past ``wal_bytes`` it asks the store thread to.
    Only the loop that owns it uses it (``SQLiteStore._run``); other loops use the thread.
    """

    __slots__ = ("_checkpointing", "_commits", "_pending", "_store", "conn", "loop", "wal_bytes")

    def __init__(
        self, store: SQLiteStore, loop: asyncio.AbstractEventLoop, conn: sqlite3.Connection
    ) -> None:
        self._store = store
        self.loop = loop
        self.conn = conn
        self.wal_bytes = _wal_limit(conn)
        self._pending: list[tuple[asyncio.Future[Any], Callable[[sqlite3.Connection], Any]]] = []
        self._commits = 0
        self._checkpointing = False

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.loop.create_future()
        if not self._pending:
            self.loop.call_soon(self.flush)
        self._pending.append((future, fn))
        return future

    def flush(self) -> None:
        batch = self._pending
        if not batch:
            return
        if len(batch) > INLINE_GROUP_MAX:  # the rest after other callbacks had their turn
            batch, self._pending = batch[:INLINE_GROUP_MAX], batch[INLINE_GROUP_MAX:]
            self.loop.call_soon(self.flush)
        else:
            self._pending = []
        store, conn = self._store, self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except (sqlite3.Error, OSError):  # locked by another connection: the thread waits for it
            self._hand_over(batch, grouped=True)
            return
        outcomes = _in_group(
            conn, [functools.partial(store._in_thread, fn, conn) for _, fn in batch]
        )
        if outcomes is None:  # the transaction failed: nothing of it was written
            self._hand_over(batch, grouped=False)
            return
        _settle([(f, r, e) for (f, _), (r, e) in zip(batch, outcomes, strict=True)])
        self._commits += 1
        if not self._commits % WAL_CHECK_EVERY and not self._checkpointing:
            self._maybe_checkpoint()

    def _hand_over(
        self,
        batch: list[tuple[asyncio.Future[Any], Callable[[sqlite3.Connection], Any]]],
        *,
        grouped: bool,
    ) -> None:
        store = self._store
        store._thread.enqueue(
            self.loop,
            [(future, functools.partial(store._in_thread, fn), grouped) for future, fn in batch],
        )

    def _maybe_checkpoint(self) -> None:
        try:
            size = os.stat(self._store.path + "-wal").st_size
        except OSError:
            return
        # The WAL is cut back to wal_bytes when it restarts (journal_size_limit): past it, the
        # frames since the last checkpoint are more than the thread's own autocheckpoint allows.
        if size <= self.wal_bytes:
            return
        self._checkpointing = True
        future = self._store._thread.submit(functools.partial(self._store._in_thread, _checkpoint))
        future.add_done_callback(self._checkpointed)

    def _checkpointed(self, future: asyncio.Future[Any]) -> None:
        self._checkpointing = False
        if not future.cancelled():
            future.exception()  # retrieved: a failed checkpoint is retried at the next check

    def close(self) -> None:
        """Commit what is pending (or hand it to the thread); on the loop's thread, once the
        store no longer hands this writer anything (``SQLiteStore.aclose``)."""
        while self._pending:  # every group, not only the first INLINE_GROUP_MAX writes
            self.flush()


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _in_group(conn: sqlite3.Connection, ops: list[Callable[[], Any]]) -> list[_Outcome] | None:
    """Run ``ops`` in the transaction ``conn`` just began and commit it; each operation's
    outcome, or None if the transaction failed (rolled back: nothing of it was written)."""
    outcomes: list[_Outcome] = []
    try:
        for fn in ops:
            outcomes.append(_one(fn))
            if not conn.in_transaction:  # rolled back by SQLite: the group is void
                raise sqlite3.OperationalError("the group's transaction was rolled back")
        conn.execute("COMMIT")
    except sqlite3.Error:
        with suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return None
    return outcomes


def _one(fn: Callable[[], Any]) -> _Outcome:
    try:
        return (fn(), None)
    except BaseException as exc:  # handed to the awaiting task, raised there
        return (None, exc)


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in outcomes:
        if future.done():  # the awaiting task was cancelled
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


class SQLiteStore:
    """A ``StateStore`` in one SQLite file (default ``.penguiflow/state.db``).

    ``SQLiteStore(path)`` opens the file lazily on first use; ``await
    SQLiteStore.open(path)`` opens and migrates it at once (errors surface
    there). Several stores and several OS processes may share one file.
    """

    schema_version = SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
        path = os.fspath(path)
        # Resolved once, so a later chdir does not move the store.
        self.path = path if path == ":memory:" else os.path.abspath(path)
        self._thread = _StoreThread(
            f"penguiflow-sqlite {os.path.basename(self.path)}", self._run_group
        )
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        # The inline writer's connection, opened by the store thread with its own, and the
        # writer of the loop that uses it (the first loop with grouped writes; another one
        # takes it over once that loop is closed).
        self._iconn: sqlite3.Connection | None = None
        self._inline: _InlineWriter | None = None
        self._inline_lock = threading.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str] = DEFAULT_PATH) -> SQLiteStore:
        """Open (creating the directory and file if needed) and migrate the schema."""
        store = cls(path)
        try:
            await store._run(lambda conn: None)
        except BaseException:
            await store.aclose()
            raise
        return store

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- plumbing ---------------------------------------------------------

    # Grouped writes commit on the event loop's thread (``_InlineWriter``); False: on the
    # store thread only.
    inline_writes = True

    def _run(
        self, fn: Callable[[sqlite3.Connection], T], *, grouped: bool = False
    ) -> asyncio.Future[T]:
        """Run ``fn`` on the store thread; ``grouped``: a write that may share its transaction
        (and its commit) with the other grouped writes of the thread's batch, or, from the
        loop that owns the inline writer, of the loop's iteration (``_InlineWriter``).

        Awaited by the caller (a future, not a coroutine: one level less for every write to
        pass through when its task resumes); a closed store raises here, in the caller."""
        if self._closed:
            raise StoreError(f"the SQLite store {self.path!r} was closed; open a new store.")
        if grouped and self._iconn is not None:
            inline = self._inline
            loop = asyncio.get_running_loop()
            if inline is None or inline.loop is not loop:
                inline = self._take_inline(loop)
            if inline is not None:
                return inline.submit(fn)
        return self._thread.submit(functools.partial(self._in_thread, fn), grouped=grouped)

    def _take_inline(self, loop: asyncio.AbstractEventLoop) -> _InlineWriter | None:
        """The inline writer for ``loop``: a new one if no open loop owns the connection."""
        with self._inline_lock:
            inline = self._inline
            if inline is not None and (inline.loop is loop or not inline.loop.is_closed()):
                return inline if inline.loop is loop else None
            conn = self._iconn
            if conn is None or self._closed:
                return None
            # A closed loop runs no callback of its writer: the connection is free (a write
            # left pending there was never acknowledged; nothing of it was written).
            if conn.in_transaction:
                conn.rollback()
            self._inline = _InlineWriter(self, loop, conn)
            return self._inline

    def _run_group(self, ops: list[Callable[[], Any]]) -> list[_Outcome]:
        """Run grouped writes in one transaction, each in a savepoint of its own (``_write``),
        or none for a write of one statement (``_write(single=True)``, ``_one_write``: SQLite
        undoes a failing statement alone): one that fails is rolled back alone and the
        others commit together. If the
        transaction itself fails (its BEGIN or COMMIT, or SQLite rolled it back after an
        I/O error), nothing of it was written: each operation runs again in a transaction
        of its own, as it would have without the group."""
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except (sqlite3.Error, OSError, PenguiflowError):
            return [_one(fn) for fn in ops]
        outcomes = _in_group(conn, ops)
        return outcomes if outcomes is not None else [_one(fn) for fn in ops]

    def _in_thread(
        self, fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection | None = None
    ) -> T:
        """``fn`` on the store thread's connection, or on ``conn`` (the inline writer's)."""
        try:
            if conn is None:
                conn = self._conn if self._conn is not None else self._connection()
            return fn(conn)
        except PenguiflowError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _translate(exc, self.path) from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._closed:
                raise StoreError(f"the SQLite store {self.path!r} was closed; open a new store.")
            self._conn = _connect(self.path)
            if self.inline_writes and self.path != ":memory:":
                with suppress(sqlite3.Error, OSError):
                    self._iconn = _connect_inline(self.path)
        return self._conn

    # -- retention and counts ---------------------------------------------

    async def prune_runs(
        self, *, ended_before: float, batch_size: int = DEFAULT_PRUNE_BATCH
    ) -> int:
        _codec.check_batch_size(batch_size)
        ended = tuple(ENDED_STATUSES)

        def op(conn: sqlite3.Connection) -> int:
            with _write(conn):
                doomed = conn.execute(_PRUNE_BATCH, (*ended, ended_before, batch_size)).fetchall()
                conn.executemany("DELETE FROM events WHERE tenant = ? AND run_id = ?", doomed)
                conn.executemany("DELETE FROM calls WHERE tenant = ? AND run_id = ?", doomed)
                conn.executemany(
                    "DELETE FROM approvals WHERE tenant = ? AND run_id = ? AND status != 'pending'",
                    doomed,
                )
                conn.executemany("DELETE FROM runs WHERE tenant = ? AND run_id = ?", doomed)
            return len(doomed)

        deleted = 0
        while True:  # one short write transaction per batch: live runs write in between
            n = await self._run(op)
            deleted += n
            if n < batch_size:
                return deleted

    async def count_runs(self, *, status: str | None = None) -> int:
        if status is not None:
            _codec.check_run_status(status)

        def op(conn: sqlite3.Connection) -> int:
            if status is None:
                return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
            # A status other than running is counted in runs_by_end (partial: running runs are
            # not in it; the implied term lets SQLite use it, e.g. the paused-runs gauge).
            sql = _COUNT_RUNNING if status == "running" else _COUNT_ENDED_OR_PAUSED
            return int(conn.execute(sql, (status,)).fetchone()[0])

        return await self._run(op)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # The inline writer's pending writes commit (or go to the thread, ahead of the close).
        with self._inline_lock:
            inline, self._inline = self._inline, None
        iconn = self._iconn
        if inline is not None and not inline.loop.is_closed():
            if inline.loop is asyncio.get_running_loop():
                inline.close()
            else:  # another loop's: it flushes on its own thread, and keeps the connection
                iconn = None
                with suppress(RuntimeError):
                    inline.loop.call_soon_threadsafe(inline.close)

        def close() -> None:
            if iconn is not None:  # first: the last connection closed checkpoints the WAL
                iconn.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._thread.submit(close)
        finally:
            self._thread.stop()

    # -- events ---------------------------------------------------------

    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        payload = _codec.dumps(dict(data), what=f"data of event {kind!r}")
        ts = time.time()

        def op(conn: sqlite3.Connection) -> int:
            with _write(conn, single=True):
                (last,) = conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant = ? AND run_id = ?",
                    (tenant, run_id),
                ).fetchone()
                seq = int(last) + 1
                conn.execute(
                    "INSERT INTO events (tenant, run_id, seq, kind, data, ts) VALUES (?, ?, ?, ?, ?, ?)",
                    (tenant, run_id, seq, kind, payload, ts),
                )
            return seq

        return await self._run(op, grouped=True)

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        payloads = _event_payloads(events)
        if not payloads:
            return []
        ts = time.time()

        def op(conn: sqlite3.Connection) -> list[int]:
            with _write(conn):
                return _insert_events(conn, tenant, run_id, payloads, ts)

        return await self._run(op, grouped=True)

    async def list_events(
        self, tenant: str, run_id: str, *, after_seq: int = 0
    ) -> list[StoredEvent]:
        def op(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                "SELECT seq, kind, data, ts FROM events WHERE tenant = ? AND run_id = ? AND seq > ? ORDER BY seq",
                (tenant, run_id, after_seq),
            ).fetchall()
            return [
                StoredEvent(tenant=tenant, run_id=run_id, seq=s, kind=k, data=_codec.loads(d), ts=t)
                for s, k, d, t in rows
            ]

        return await self._run(op)

    # -- runs -----------------------------------------------------------

    async def create_run(self, run: RunRecord) -> RunRecord:
        new = _codec.prepare_new_run(run)
        row = _codec.run_row(new)

        def op(conn: sqlite3.Connection) -> RunRecord:
            try:
                with _write(conn, single=True):
                    conn.execute(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({_marks(14)})", row)
            except sqlite3.IntegrityError:
                raise ConflictError(
                    f"a run with id {new.run_id!r} already exists; use a fresh run id."
                ) from None
            return new

        return await self._run(op, grouped=True)

    async def get_run(self, tenant: str, run_id: str) -> RunRecord:
        return await self._run(lambda conn: _get_run(conn, tenant, run_id))

    async def list_runs(self, tenant: str, *, status: str | None = None) -> list[RunRecord]:
        if status is not None:
            _codec.check_run_status(status)

        def op(conn: sqlite3.Connection) -> list[RunRecord]:
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE tenant = ?"
            args: list[Any] = [tenant]
            if status is not None:
                sql += " AND status = ?"
                args.append(status)
            rows = conn.execute(sql + " ORDER BY created_at, rowid", args).fetchall()
            return [_codec.run_from_row(r) for r in rows]

        return await self._run(op)

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        # Encoded once, outside the write lock; the record returned decodes the same text
        # when its state is first read (a checkpointing planner never reads it).
        _codec.check_run_status(run.status)
        roles, role_list = _codec.run_roles(run)
        state = _codec.state_text(run)
        session_id, claimed_by, expires = run.session_id, run.claimed_by, run.claim_expires_at
        checkpoint_sql, same_created_sql, update_sql = _RUN_WRITES[
            session_id is None, claimed_by is None, expires is None
        ]
        # A running record is most likely a checkpoint (its status the stored one), any other
        # one a run that ends or pauses: the statement that most likely matches goes first.
        first, then = (
            (checkpoint_sql, same_created_sql)
            if run.status == "running"
            else (same_created_sql, checkpoint_sql)
        )
        values = (
            run.principal,
            roles,
            0 if session_id is None else session_id,  # None: written as NULL (_RUN_WRITES)
            run.status,
            run.model,
            run.query,
            state,
            0 if claimed_by is None else claimed_by,
            0 if expires is None else expires,
            run.tenant,
            run.run_id,
            expected_version,
            run.created_at,
        )

        def op(conn: sqlite3.Connection) -> RunRecord:
            now = time.time()
            args = (*values, now)
            # One statement when the record is the stored run at the expected version (its
            # created_at is then the stored one): the planner's checkpoints, which keep the
            # status (the row's index by status is then left as it is), and its last write.
            if _one_write(conn, first, args) == 1 or _one_write(conn, then, args) == 1:
                created_at = run.created_at
            else:
                with _write(conn):
                    found = conn.execute(
                        "SELECT version, created_at FROM runs WHERE tenant = ? AND run_id = ?",
                        (run.tenant, run.run_id),
                    ).fetchone()
                    if found is None:
                        raise NotFoundError("run", run.run_id)
                    version, created_at = found
                    if version != expected_version:
                        raise ConflictError(
                            f"run {run.run_id!r} is at version {version}, not {expected_version}: "
                            "another writer changed it first; reload it and retry."
                        )
                    # At the expected version, but created_at differs from the record's.
                    conn.execute(update_sql, args)
            new = _codec.encoded_run(run, roles=role_list, state_text=state)
            new.version, new.created_at, new.updated_at = expected_version + 1, created_at, now
            return new

        return await self._run(op, grouped=True)

    async def claim_run(
        self, tenant: str, run_id: str, *, owner: str, from_statuses: Sequence[str], lease_s: float
    ) -> RunRecord | None:
        statuses = _codec.check_statuses(from_statuses)
        _codec.check_lease(lease_s)

        def op(conn: sqlite3.Connection) -> RunRecord | None:
            with _write(conn):
                current = _get_run(conn, tenant, run_id)
                now = time.time()
                if not _codec.claimable(
                    current.status, current.claimed_by, current.claim_expires_at, statuses, now
                ):
                    return None
                current.status = "running"
                current.claimed_by = owner
                current.claim_expires_at = now + lease_s
                current.version += 1
                current.updated_at = now
                conn.execute(
                    "UPDATE runs SET status = 'running', claimed_by = ?, claim_expires_at = ?, version = ?, "
                    "updated_at = ? WHERE tenant = ? AND run_id = ?",
                    (owner, current.claim_expires_at, current.version, now, tenant, run_id),
                )
            return current

        return await self._run(op, grouped=True)

    # -- sessions -------------------------------------------------------

    async def load_session(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            row = conn.execute(
                "SELECT messages FROM sessions WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            return [] if row is None else list(_codec.loads(row[0]))

        return await self._run(op)

    async def save_session(
        self, tenant: str, session_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> None:
        text = _codec.dumps(_codec.session_messages(messages), what="session messages")

        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "INSERT INTO sessions (tenant, session_id, messages, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (tenant, session_id) DO UPDATE SET messages = excluded.messages, "
                    "updated_at = excluded.updated_at",
                    (tenant, session_id, text, time.time()),
                )

        await self._run(op, grouped=True)

    # -- remote tasks -----------------------------------------------------

    async def bind_remote(self, binding: RemoteBinding) -> RemoteBinding:
        def op(conn: sqlite3.Connection) -> RemoteBinding:
            with _write(conn):
                conn.execute(
                    "INSERT INTO remote_tasks (tenant, trace_id, key, agent_url, task_id, "
                    "context_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (tenant, trace_id, key) DO NOTHING",
                    (
                        binding.tenant,
                        binding.trace_id,
                        binding.key,
                        binding.agent_url,
                        binding.task_id,
                        binding.context_id,
                        binding.created_at or time.time(),
                    ),
                )
                found = _remote_row(conn, binding.tenant, binding.trace_id, binding.key)
            assert found is not None
            return found

        return await self._run(op)

    async def get_remote(self, tenant: str, trace_id: str, key: str) -> RemoteBinding | None:
        def op(conn: sqlite3.Connection) -> RemoteBinding | None:
            return _remote_row(conn, tenant, trace_id, key)

        return await self._run(op)

    # -- sealed credentials -----------------------------------------------

    async def put_credential(self, tenant: str, key: str, sealed: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "INSERT INTO credentials (tenant, key, sealed, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (tenant, key) DO UPDATE SET sealed = excluded.sealed, "
                    "updated_at = excluded.updated_at",
                    (tenant, key, sealed, time.time()),
                )

        await self._run(op)

    async def get_credential(self, tenant: str, key: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT sealed FROM credentials WHERE tenant = ? AND key = ?", (tenant, key)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(op)

    async def delete_credential(self, tenant: str, key: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                cur = conn.execute(
                    "DELETE FROM credentials WHERE tenant = ? AND key = ?", (tenant, key)
                )
            return cur.rowcount > 0

        return await self._run(op)

    async def list_credentials(self, tenant: str, prefix: str = "") -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT key FROM credentials WHERE tenant = ? AND substr(key, 1, ?) = ? ORDER BY key",
                (tenant, len(prefix), prefix),
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self._run(op)

    # -- cached tool listings ---------------------------------------------

    async def put_listing(self, source: str, listing: Mapping[str, Any]) -> None:
        text = _codec.dumps(dict(listing), what=f"listing of source {source!r}")

        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "INSERT INTO listings (source, listing, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET listing = excluded.listing, "
                    "updated_at = excluded.updated_at",
                    (source, text, time.time()),
                )

        await self._run(op)

    async def get_listing(self, source: str) -> tuple[dict[str, Any], float] | None:
        def op(conn: sqlite3.Connection) -> tuple[str, float] | None:
            row = conn.execute(
                "SELECT listing, updated_at FROM listings WHERE source = ?", (source,)
            ).fetchone()
            return None if row is None else (str(row[0]), float(row[1]))

        found = await self._run(op)
        return None if found is None else _codec.listing_of(*found)

    # -- approvals ------------------------------------------------------

    async def create_approval(
        self,
        approval: ApprovalRecord,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        new = _codec.prepare_new_approval(approval)
        row = _codec.approval_row(new)
        rows = [_outbox.entry_row(e) for e in _outbox.prepare_entries(outbox)]
        payloads = _event_payloads(events)
        ts = time.time()

        def op(conn: sqlite3.Connection) -> ApprovalRecord:
            try:
                with _write(conn):
                    conn.execute(
                        f"INSERT INTO approvals ({_APPROVAL_COLUMNS}) VALUES ({_marks(17)})", row
                    )
                    _insert_outbox(conn, rows)
                    _insert_events(conn, new.tenant, new.run_id, payloads, ts)
            except sqlite3.IntegrityError:
                raise ConflictError(
                    f"an approval with id {new.id!r} already exists; use a fresh id."
                ) from None
            return new

        return await self._run(op)

    async def get_approval(self, tenant: str, approval_id: str) -> ApprovalRecord:
        return await self._run(lambda conn: _get_approval(conn, tenant, approval_id))

    async def list_approvals(
        self, tenant: str, *, status: str | None = None, run_id: str | None = None
    ) -> list[ApprovalRecord]:
        if status is not None:
            _codec.check_approval_status(status)

        def op(conn: sqlite3.Connection) -> list[ApprovalRecord]:
            sql = f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE tenant = ?"
            args: list[Any] = [tenant]
            if status is not None:
                sql += " AND status = ?"
                args.append(status)
            if run_id is not None:
                sql += " AND run_id = ?"
                args.append(run_id)
            rows = conn.execute(sql + " ORDER BY created_at, rowid", args).fetchall()
            return [_codec.approval_from_row(r) for r in rows]

        return await self._run(op)

    async def decide_approval(
        self,
        tenant: str,
        approval_id: str,
        decision: ApprovalDecision,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        new = _codec.prepare_decision(decision)
        rows = [_outbox.entry_row(e) for e in _outbox.prepare_entries(outbox)]
        payloads = _event_payloads(events)
        ts = time.time()

        def op(conn: sqlite3.Connection) -> ApprovalRecord:
            with _write(conn):
                current = _get_approval(conn, tenant, approval_id)
                if current.status != "pending":
                    raise _codec.already_decided(
                        approval_id, current.status, current.decision, current.expires_at
                    )
                current.status = _codec.status_after(new)
                current.decision = new
                conn.execute(
                    "UPDATE approvals SET status = ?, decision = ? WHERE tenant = ? AND id = ?",
                    (current.status, _codec.decision_to_json(new), tenant, approval_id),
                )
                _insert_outbox(conn, rows)
                _insert_events(conn, tenant, current.run_id, payloads, ts)
            return current

        return await self._run(op)

    # -- exactly-once calls ----------------------------------------------

    async def begin_call(self, tenant: str, run_id: str, call_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                cur = conn.execute(
                    "INSERT INTO calls (tenant, run_id, call_id, status, result, started_at) "
                    "VALUES (?, ?, ?, 'executing', NULL, ?) ON CONFLICT DO NOTHING",
                    (tenant, run_id, call_id, time.time()),
                )
            return cur.rowcount == 1

        return await self._run(op, grouped=True)

    async def finish_call(
        self, tenant: str, run_id: str, call_id: str, result: Mapping[str, Any]
    ) -> None:
        payload = _codec.dumps(dict(result), what=f"result of call {call_id!r}")

        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                row = conn.execute(
                    "SELECT status FROM calls WHERE tenant = ? AND run_id = ? AND call_id = ?",
                    (tenant, run_id, call_id),
                ).fetchone()
                if row is None:
                    raise NotFoundError("call", call_id)
                if row[0] == "done":
                    raise ConflictError(
                        f"call {call_id!r} of run {run_id!r} was already finished; a call finishes once."
                    )
                conn.execute(
                    "UPDATE calls SET status = 'done', result = ? WHERE tenant = ? AND run_id = ? AND call_id = ?",
                    (payload, tenant, run_id, call_id),
                )

        await self._run(op, grouped=True)

    async def get_call(self, tenant: str, run_id: str, call_id: str) -> CallRecord | None:
        def op(conn: sqlite3.Connection) -> CallRecord | None:
            row = conn.execute(
                "SELECT status, result, started_at FROM calls WHERE tenant = ? AND run_id = ? AND call_id = ?",
                (tenant, run_id, call_id),
            ).fetchone()
            if row is None:
                return None
            return CallRecord(
                tenant=tenant,
                run_id=run_id,
                call_id=call_id,
                status=row[0],
                result=_codec.loads(row[1]),
                started_at=row[2],
            )

        return await self._run(op)

    # -- webhook outbox ---------------------------------------------------

    async def claim_outbox(self, *, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        _outbox.check_claim(lease_s, limit)

        def op(conn: sqlite3.Connection) -> list[OutboxEntry]:
            with _write(conn):
                rows = conn.execute(
                    f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' "
                    "AND next_attempt_at <= ? ORDER BY created_at, rowid LIMIT ?",
                    (now, limit),
                ).fetchall()
                entries = [_outbox.entry_from_row(r) for r in rows]
                for entry in entries:
                    entry.next_attempt_at = now + lease_s
                conn.executemany(
                    "UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                    [(e.next_attempt_at, e.id) for e in entries],
                )
            return entries

        return await self._run(op)

    async def record_outbox_attempt(self, entry: OutboxEntry) -> None:
        _outbox.check_outbox_status(entry.status)

        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                cur = conn.execute(
                    "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, "
                    "last_error = ?, finished_at = ? WHERE id = ?",
                    (
                        entry.status,
                        entry.attempts,
                        entry.next_attempt_at,
                        entry.last_error,
                        entry.finished_at,
                        entry.id,
                    ),
                )
                if cur.rowcount != 1:
                    raise NotFoundError("outbox entry", entry.id)

        await self._run(op)

    async def list_outbox(
        self, *, tenant: str | None = None, status: str | None = None
    ) -> list[OutboxEntry]:
        if status is not None:
            _outbox.check_outbox_status(status)

        def op(conn: sqlite3.Connection) -> list[OutboxEntry]:
            rows = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE (? IS NULL OR tenant = ?) "
                "AND (? IS NULL OR status = ?) ORDER BY created_at, rowid",
                (tenant, tenant, status, status),
            ).fetchall()
            return [_outbox.entry_from_row(r) for r in rows]

        return await self._run(op)


def _event_payloads(events: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, str]]:
    return [
        (kind, _codec.dumps(dict(data), what=f"data of event {kind!r}")) for kind, data in events
    ]


def _insert_events(
    conn: sqlite3.Connection,
    tenant: str,
    run_id: str,
    payloads: Sequence[tuple[str, str]],
    ts: float,
) -> list[int]:
    """Append events to a run's log inside the caller's write transaction; their seqs."""
    if not payloads:
        return []
    (last,) = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant = ? AND run_id = ?",
        (tenant, run_id),
    ).fetchone()
    first = int(last) + 1
    conn.executemany(
        "INSERT INTO events (tenant, run_id, seq, kind, data, ts) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (tenant, run_id, first + offset, kind, payload, ts)
            for offset, (kind, payload) in enumerate(payloads)
        ],
    )
    return list(range(first, first + len(payloads)))


def _insert_outbox(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert outbox rows in the caller's transaction; an id already there is kept as is."""
    if rows:
        conn.executemany(
            f"INSERT INTO outbox ({_OUTBOX_COLUMNS}) VALUES ({_marks(12)}) "
            "ON CONFLICT (id) DO NOTHING",
            rows,
        )


# -- connection, schema ---------------------------------------------------------------------------


def _connect(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        os.makedirs(os.path.dirname(path), exist_ok=True)
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if path != ":memory:":
            _wal_mode(conn)
        # In WAL mode NORMAL survives a killed process (not a power cut) without an fsync per commit.
        conn.execute("PRAGMA synchronous = NORMAL")
        # A WAL restarted by this connection is cut back to what it holds between checkpoints
        # (so its size tells the inline writer when to ask for one: _InlineWriter).
        conn.execute(f"PRAGMA journal_size_limit = {_wal_limit(conn)}")
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _wal_mode(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, retried while the file is locked: SQLite fails it at once
    (no busy wait) when another connection is creating the file and migrating it (stores
    opening one new file together), until BUSY_TIMEOUT_S."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(WAL_MODE_RETRY_S)


def _connect_inline(path: str) -> sqlite3.Connection:
    """The inline writer's connection to a file ``_connect`` opened (WAL, migrated): it never
    waits for a lock (busy_timeout 0) nor checkpoints, and cuts the WAL back when it restarts
    it (so the WAL's size tells how much it holds: ``_InlineWriter._maybe_checkpoint``)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA journal_size_limit = {_wal_limit(conn)}")
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal mode {mode}, not WAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _wal_limit(conn: sqlite3.Connection) -> int:
    """Bytes of WAL_CHECKPOINT_PAGES pages of the file."""
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    return WAL_CHECKPOINT_PAGES * int(page_size)


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    with _write(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the state file {path!r} has schema version {current}, newer than this version of "
                f"penguiflow-agents understands ({SCHEMA_VERSION}); upgrade penguiflow-agents "
                "or point --store at another file."
            )
        for version in range(current, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))


@contextmanager
def _write(conn: sqlite3.Connection, *, single: bool = False) -> Iterator[None]:
    """One write transaction holding SQLite's write lock from its first statement; inside a
    group's transaction (``SQLiteStore._run_group``), a savepoint of its own.

    ``single``: the operation writes with one statement, its last (it may read before it),
    so inside a group it needs no savepoint: SQLite undoes a failing statement alone (a
    constraint error keeps the transaction; an error that ends it voids the whole group,
    which ``_run_group`` then runs again write by write), and nothing else of the operation
    was written. Each statement costs the store thread a release of the GIL and a wait to take
    it back from the event loop's thread: a savepoint and its release are two more."""
    if conn.in_transaction:
        if single:
            yield
            return
        conn.execute("SAVEPOINT op")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            raise
        conn.execute("RELEASE op")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _one_write(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> int:
    """Run one write statement; the rows it changed. Inside a group's transaction it needs no
    savepoint: SQLite undoes a failing statement alone (a constraint error keeps the
    transaction; an error that ends it voids the group, which ``SQLiteStore._run_group`` then
    runs again write by write). Alone, its own ``BEGIN IMMEDIATE`` transaction (``_write``)."""
    if conn.in_transaction:
        return int(conn.execute(sql, args).rowcount)
    with _write(conn):
        return int(conn.execute(sql, args).rowcount)


def _translate(exc: sqlite3.Error | OSError, path: str) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the state file {path!r} stayed locked by another process for more than {BUSY_TIMEOUT_S:g} s "
            f"({text}); retry, or check for a stuck process holding it."
        )
    return StoreError(f"the state file {path!r} could not be used: {type(exc).__name__}: {text}.")


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# -- lookups ----------------------------------------------------------------------------------------


def _get_run(conn: sqlite3.Connection, tenant: str, run_id: str) -> RunRecord:
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE tenant = ? AND run_id = ?", (tenant, run_id)
    ).fetchone()
    if row is None:
        raise NotFoundError("run", run_id)
    return _codec.run_from_row(row)


def _get_approval(conn: sqlite3.Connection, tenant: str, approval_id: str) -> ApprovalRecord:
    row = conn.execute(
        f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE tenant = ? AND id = ?",
        (tenant, approval_id),
    ).fetchone()
    if row is None:
        raise NotFoundError("approval", approval_id)
    return _codec.approval_from_row(row)


def _remote_row(
    conn: sqlite3.Connection, tenant: str, trace_id: str, key: str
) -> RemoteBinding | None:
    row = conn.execute(
        "SELECT agent_url, task_id, context_id, created_at FROM remote_tasks "
        "WHERE tenant = ? AND trace_id = ? AND key = ?",
        (tenant, trace_id, key),
    ).fetchone()
    if row is None:
        return None
    return RemoteBinding(
        tenant=tenant,
        trace_id=trace_id,
        key=key,
        agent_url=str(row[0]),
        task_id=str(row[1]),
        context_id=str(row[2]),
        created_at=float(row[3]),
    )
