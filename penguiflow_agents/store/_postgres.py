"""``PostgresStore``: the shared state store on PostgreSQL (asyncpg, the ``[postgres]`` extra).

Every contested write is one conditional statement (``UPDATE ... WHERE
status = 'pending' RETURNING``, ``INSERT ... ON CONFLICT DO NOTHING``):
PostgreSQL re-checks the condition on the latest row version after waiting
for a concurrent writer, so exactly one of several racing processes wins.
Per-run event numbers come from a counter row bumped in the same statement
that inserts the event (gapless, unique). Tables live in one schema
(``penguiflow`` by default), migrated under an advisory lock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "PostgresStore needs asyncpg, which is not installed: pip install 'penguiflow-agents[postgres]'"
    ) from exc

from ..exceptions import (
    ConflictError,
    NotFoundError,
    PenguiflowError,
    StoreError,
    StoreUnavailableError,
    UserError,
)
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
from ._open import redact_url

__all__ = ["PostgresStore"]

T = TypeVar("T")

DEFAULT_SCHEMA = "penguiflow"
# What a failing server or connection raises (a connection terminated mid-operation can also
# leave asyncpg's protocol in a state it reports as an InternalClientError when the pool resets it).
_CONNECTION_FAILURES = (
    TimeoutError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
# The connection itself failed (lost, refused, server shutting down): transient, and retried
# where repeating the operation is safe. Other PostgreSQL errors (a constraint, a bad
# statement, a query cancelled on timeout) are not.
_CONNECTION_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.exceptions.AdminShutdownError,  # 57P01: pg_terminate_backend, fast shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up / in recovery
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
    asyncpg.InternalClientError,
)
# Pauses before the retries of an operation whose connection was lost (each on a fresh one).
RETRY_BACKOFF_S = (0.05, 0.25)
# What the connections show as application_name in pg_stat_activity, unless the DSN names one.
DEFAULT_APPLICATION_NAME = "penguiflow-agents"
# Longest wait to open one connection to the server.
CONNECT_TIMEOUT_S = 10.0
# Longest wait for a free pooled connection when every one is busy.
ACQUIRE_TIMEOUT_S = 30.0
# Longest a single statement may run (including waiting for a row lock) before failing.
COMMAND_TIMEOUT_S = 30.0
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Ordered migrations: entry i takes the schema from version i to version i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            ord BIGINT GENERATED ALWAYS AS IDENTITY,
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, principal TEXT NOT NULL,
            roles JSON NOT NULL, session_id TEXT, status TEXT NOT NULL, model TEXT NOT NULL,
            query TEXT NOT NULL, state JSON NOT NULL, version BIGINT NOT NULL,
            claimed_by TEXT, claim_expires_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant, run_id))""",
        "CREATE INDEX runs_by_status ON runs (tenant, status, created_at)",
        """CREATE TABLE event_seqs (
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, last_seq BIGINT NOT NULL,
            PRIMARY KEY (tenant, run_id))""",
        """CREATE TABLE events (
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, seq BIGINT NOT NULL,
            kind TEXT NOT NULL, data JSON NOT NULL, ts DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant, run_id, seq))""",
        """CREATE TABLE sessions (
            tenant TEXT NOT NULL, session_id TEXT NOT NULL, messages JSON NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant, session_id))""",
        """CREATE TABLE approvals (
            ord BIGINT GENERATED ALWAYS AS IDENTITY,
            tenant TEXT NOT NULL, id TEXT NOT NULL, run_id TEXT NOT NULL, call_id TEXT NOT NULL,
            tool TEXT NOT NULL, arguments JSON NOT NULL, arguments_sha256 TEXT NOT NULL,
            tool_hash TEXT NOT NULL, policy_version TEXT NOT NULL, requested_by TEXT NOT NULL,
            approvers JSON NOT NULL, rule JSON NOT NULL, input_schema JSON NOT NULL,
            status TEXT NOT NULL, decision JSON, created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant, id))""",
        "CREATE INDEX approvals_by_created ON approvals (tenant, created_at, ord)",
        "CREATE INDEX approvals_by_run ON approvals (tenant, run_id)",
        """CREATE TABLE calls (
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, call_id TEXT NOT NULL,
            status TEXT NOT NULL, result JSON, started_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant, run_id, call_id))""",
    ),
    # 2: the webhook outbox (written with the approval it announces).
    (
        """CREATE TABLE outbox (
            ord BIGINT GENERATED ALWAYS AS IDENTITY,
            id TEXT NOT NULL PRIMARY KEY, event_id TEXT NOT NULL, tenant TEXT NOT NULL,
            url TEXT NOT NULL, kind TEXT NOT NULL, payload JSON NOT NULL, status TEXT NOT NULL,
            attempts INTEGER NOT NULL, next_attempt_at DOUBLE PRECISION NOT NULL,
            last_error TEXT, created_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION)""",
        "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
        "CREATE INDEX outbox_by_tenant ON outbox (tenant, created_at, ord)",
    ),
    # 3: sealed credentials (OAuth tokens and client registrations of MCP sources).
    (
        """CREATE TABLE credentials (
            tenant TEXT NOT NULL, key TEXT NOT NULL, sealed TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant, key))""",
    ),
    # 4: retention finds ended runs by status and last write.
    ("CREATE INDEX runs_by_end ON runs (status, updated_at)",),
    # 5: remote tasks started for a trace (RemoteNode), to reattach after a takeover.
    (
        """CREATE TABLE remote_tasks (
            tenant TEXT NOT NULL, trace_id TEXT NOT NULL, key TEXT NOT NULL,
            agent_url TEXT NOT NULL, task_id TEXT NOT NULL, context_id TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant, trace_id, key))""",
    ),
    # 6: each tool source's latest listing (``tools list`` starts from it).
    (
        """CREATE TABLE listings (
            source TEXT NOT NULL PRIMARY KEY, listing TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_RUN_COLUMNS = _codec.RUN_COLUMNS
_APPROVAL_COLUMNS = _codec.APPROVAL_COLUMNS
_OUTBOX_COLUMNS = _outbox.OUTBOX_COLUMNS
# Held: claimable once the lease ran out; otherwise the status must be one of $n.
_CLAIMABLE = (
    "CASE WHEN status = 'running' AND claimed_by IS NOT NULL "
    "THEN claim_expires_at IS NOT NULL AND claim_expires_at <= {now} "
    "ELSE status = ANY({statuses}::text[]) END"
)


class PostgresStore:
    """A ``StateStore`` on PostgreSQL, shared by any number of processes.

    ``PostgresStore(dsn, schema=...)`` connects lazily on first use; ``await
    PostgresStore.open(dsn)`` connects and migrates at once. A ``schema``
    query parameter in the DSN (``postgresql://.../db?schema=mine``) picks the
    schema too. The connections show as ``application_name`` ``penguiflow-agents``
    in ``pg_stat_activity`` unless the DSN names another
    (``?application_name=billing-workers``, libpq's parameter): an operator can
    then tell (and, say, terminate) one deployment's connections from another's.
    """

    schema_version = SCHEMA_VERSION

    def __init__(
        self, dsn: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 10
    ) -> None:
        dsn, from_url = _split_schema(dsn)
        schema = schema or from_url or DEFAULT_SCHEMA
        if not _SCHEMA_NAME.fullmatch(schema):
            raise UserError(
                f"PostgreSQL schema name {schema!r} is not a plain identifier; use letters, digits and _."
            )
        self.schema = schema
        self.application_name = _application_name(dsn)
        self._dsn = dsn
        self._shown = redact_url(dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None
        self._pool_lock: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, dsn: str, *, schema: str | None = None, max_size: int = 10
    ) -> PostgresStore:
        """Connect, create the schema if needed and migrate it."""
        store = cls(dsn, schema=schema, max_size=max_size)
        try:
            await store._get_pool()
        except BaseException:
            await store.aclose()
            raise
        return store

    def __repr__(self) -> str:
        return f"PostgresStore({self._shown!r}, schema={self.schema!r})"

    # -- plumbing ---------------------------------------------------------

    async def _get_pool(self) -> Any:
        if self._closed:
            raise StoreError(f"the PostgreSQL store {self._shown!r} was closed; open a new store.")
        if self._pool is not None:
            return self._pool
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            if self._pool is None:
                try:
                    pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        timeout=CONNECT_TIMEOUT_S,
                        command_timeout=COMMAND_TIMEOUT_S,
                        server_settings={
                            "search_path": f'"{self.schema}"',
                            "application_name": self.application_name,
                        },
                    )
                except (
                    TimeoutError,
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    raise self._translate(exc) from None
                try:
                    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                        await _migrate(conn, self.schema, self._shown)
                except BaseException as exc:
                    await pool.close()
                    if isinstance(
                        exc, (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
                    ):
                        raise self._translate(exc) from None
                    raise
                self._pool = pool
        return self._pool

    async def _run(
        self,
        fn: Callable[[Any], Awaitable[T]],
        again: Callable[[Any], Awaitable[T]] | None = None,
    ) -> T:
        """``fn`` on a pooled connection. When the connection is lost mid-operation and
        ``again`` is given, ``again`` runs on a fresh connection (up to
        ``len(RETRY_BACKOFF_S)`` times): ``fn`` itself for reads and idempotent writes; for a
        write whose commit is ambiguous, a variant that first checks whether the lost attempt
        committed (so a repeat never doubles anything)."""
        pool = await self._get_pool()
        attempt = 0
        while True:
            try:
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                    return await (fn if attempt == 0 or again is None else again)(conn)
            except PenguiflowError:
                raise
            except _CONNECTION_FAILURES as exc:
                if (
                    again is None
                    or attempt >= len(RETRY_BACKOFF_S)
                    or not _connection_lost(exc)
                    or self._closed
                ):
                    raise self._translate(exc) from None
                await asyncio.sleep(RETRY_BACKOFF_S[attempt])
                attempt += 1

    def _translate(self, exc: BaseException) -> StoreError:
        detail = (
            "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
        )
        unavailable = isinstance(exc, TimeoutError) or _connection_lost(exc)
        return (StoreUnavailableError if unavailable else StoreError)(
            f"the PostgreSQL store {self._shown!r} (schema {self.schema!r}) failed: {detail}; "
            "check that the server is reachable and retry."
        )

    # -- retention and counts ---------------------------------------------

    async def prune_runs(
        self, *, ended_before: float, batch_size: int = DEFAULT_PRUNE_BATCH
    ) -> int:
        _codec.check_batch_size(batch_size)

        async def op(conn: Any) -> int:
            # Rows a live transaction holds are skipped (SKIP LOCKED): the next pass gets them.
            deleted = await conn.fetchval(
                "WITH doomed AS (SELECT tenant, run_id FROM runs "
                "  WHERE status = ANY($1::text[]) AND updated_at < $2 LIMIT $3 "
                "  FOR UPDATE SKIP LOCKED), "
                "e AS (DELETE FROM events x USING doomed d "
                "  WHERE x.tenant = d.tenant AND x.run_id = d.run_id), "
                "s AS (DELETE FROM event_seqs x USING doomed d "
                "  WHERE x.tenant = d.tenant AND x.run_id = d.run_id), "
                "c AS (DELETE FROM calls x USING doomed d "
                "  WHERE x.tenant = d.tenant AND x.run_id = d.run_id), "
                "a AS (DELETE FROM approvals x USING doomed d "
                "  WHERE x.tenant = d.tenant AND x.run_id = d.run_id AND x.status <> 'pending'), "
                "r AS (DELETE FROM runs x USING doomed d "
                "  WHERE x.tenant = d.tenant AND x.run_id = d.run_id RETURNING 1) "
                "SELECT COUNT(*) FROM r",
                list(ENDED_STATUSES),
                ended_before,
                batch_size,
            )
            return int(deleted)

        deleted = 0
        while True:  # one short transaction per batch
            n = await self._run(op, op)
            deleted += n
            if n < batch_size:
                return deleted

    async def count_runs(self, *, status: str | None = None) -> int:
        if status is not None:
            _codec.check_run_status(status)

        async def op(conn: Any) -> int:
            return int(
                await conn.fetchval(
                    "SELECT COUNT(*) FROM runs WHERE $1::text IS NULL OR status = $1", status
                )
            )

        return await self._run(op, op)

    async def aclose(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- events ---------------------------------------------------------

    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        payload = _codec.dumps(dict(data), what=f"data of event {kind!r}")
        ts = time.time()

        async def op(conn: Any) -> int:
            seq = await conn.fetchval(
                "WITH s AS (INSERT INTO event_seqs (tenant, run_id, last_seq) VALUES ($1, $2, 1) "
                "ON CONFLICT (tenant, run_id) DO UPDATE SET last_seq = event_seqs.last_seq + 1 "
                "RETURNING last_seq) "
                "INSERT INTO events (tenant, run_id, seq, kind, data, ts) "
                "SELECT $1, $2, s.last_seq, $3, $4, $5 FROM s RETURNING seq",
                tenant,
                run_id,
                kind,
                payload,
                ts,
            )
            return int(seq)

        async def again(conn: Any) -> int:  # the lost attempt may have appended it
            done = await _appended(conn, tenant, run_id, [kind], ts)
            return done[0] if done is not None else await op(conn)

        return await self._run(op, again)

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        payloads = _event_payloads(events)
        if not payloads:
            return []
        ts = time.time()

        async def op(conn: Any) -> list[int]:
            return await _insert_events(conn, tenant, run_id, payloads, ts)

        async def again(conn: Any) -> list[int]:  # the lost attempt may have appended them
            done = await _appended(conn, tenant, run_id, [k for k, _ in payloads], ts)
            return done if done is not None else await op(conn)

        return await self._run(op, again)

    async def list_events(
        self, tenant: str, run_id: str, *, after_seq: int = 0
    ) -> list[StoredEvent]:
        async def op(conn: Any) -> list[StoredEvent]:
            rows = await conn.fetch(
                "SELECT seq, kind, data, ts FROM events WHERE tenant = $1 AND run_id = $2 AND seq > $3 "
                "ORDER BY seq",
                tenant,
                run_id,
                after_seq,
            )
            return [
                StoredEvent(
                    tenant=tenant,
                    run_id=run_id,
                    seq=r[0],
                    kind=r[1],
                    data=_codec.loads(r[2]),
                    ts=r[3],
                )
                for r in rows
            ]

        return await self._run(op, op)

    # -- runs -----------------------------------------------------------

    async def create_run(self, run: RunRecord) -> RunRecord:
        new = _codec.prepare_new_run(run)

        async def op(conn: Any) -> RunRecord:
            inserted = await conn.fetchval(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({_marks(14)}) ON CONFLICT DO NOTHING RETURNING 1",
                *_codec.run_row(new),
            )
            if inserted is None:
                raise ConflictError(
                    f"a run with id {new.run_id!r} already exists; use a fresh run id."
                )
            return new

        async def again(conn: Any) -> RunRecord:  # the lost attempt may have created it
            row = await conn.fetchrow(
                "SELECT created_at, updated_at, claimed_by FROM runs WHERE tenant = $1 AND run_id = $2",
                new.tenant,
                new.run_id,
            )
            if row is not None and tuple(row) == (new.created_at, new.updated_at, new.claimed_by):
                return new
            return await op(conn)

        return await self._run(op, again)

    async def get_run(self, tenant: str, run_id: str) -> RunRecord:
        async def op(conn: Any) -> RunRecord:
            row = await conn.fetchrow(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE tenant = $1 AND run_id = $2", tenant, run_id
            )
            if row is None:
                raise NotFoundError("run", run_id)
            return _codec.run_from_row(row)

        return await self._run(op, op)

    async def list_runs(self, tenant: str, *, status: str | None = None) -> list[RunRecord]:
        if status is not None:
            _codec.check_run_status(status)

        async def op(conn: Any) -> list[RunRecord]:
            rows = await conn.fetch(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE tenant = $1 AND ($2::text IS NULL OR status = $2) "
                "ORDER BY created_at, ord",
                tenant,
                status,
            )
            return [_codec.run_from_row(r) for r in rows]

        return await self._run(op, op)

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        new = _codec.prepare_new_run(run)
        now = time.time()

        async def op(conn: Any) -> RunRecord:
            row = await conn.fetchrow(
                "UPDATE runs SET principal = $3, roles = $4, session_id = $5, status = $6, model = $7, "
                "query = $8, state = $9, version = version + 1, claimed_by = $10, claim_expires_at = $11, "
                "updated_at = $12 WHERE tenant = $1 AND run_id = $2 AND version = $13 "
                "RETURNING version, created_at",
                *_codec.run_row(new)[:9],
                new.claimed_by,
                new.claim_expires_at,
                now,
                expected_version,
            )
            if row is None:
                version = await conn.fetchval(
                    "SELECT version FROM runs WHERE tenant = $1 AND run_id = $2",
                    run.tenant,
                    run.run_id,
                )
                if version is None:
                    raise NotFoundError("run", run.run_id)
                raise ConflictError(
                    f"run {run.run_id!r} is at version {version}, not {expected_version}: "
                    "another writer changed it first; reload it and retry."
                )
            new.version, new.created_at, new.updated_at = row[0], row[1], now
            return new

        async def again(conn: Any) -> RunRecord:  # the lost attempt may have committed
            row = await conn.fetchrow(
                "SELECT version, created_at FROM runs WHERE tenant = $1 AND run_id = $2 "
                "AND version = $3 AND updated_at = $4 AND claimed_by IS NOT DISTINCT FROM $5",
                run.tenant,
                run.run_id,
                expected_version + 1,
                now,
                new.claimed_by,
            )
            if row is None:
                return await op(conn)
            new.version, new.created_at, new.updated_at = row[0], row[1], now
            return new

        return await self._run(op, again)

    async def claim_run(
        self, tenant: str, run_id: str, *, owner: str, from_statuses: Sequence[str], lease_s: float
    ) -> RunRecord | None:
        statuses = _codec.check_statuses(from_statuses)
        _codec.check_lease(lease_s)
        now = time.time()

        async def op(conn: Any) -> RunRecord | None:
            row = await conn.fetchrow(
                "UPDATE runs SET status = 'running', claimed_by = $3, claim_expires_at = $4, "
                "version = version + 1, updated_at = $5 WHERE tenant = $1 AND run_id = $2 AND "
                + _CLAIMABLE.format(now="$5", statuses="$6")
                + f" RETURNING {_RUN_COLUMNS}",
                tenant,
                run_id,
                owner,
                now + lease_s,
                now,
                statuses,
            )
            if row is not None:
                return _codec.run_from_row(row)
            exists = await conn.fetchval(
                "SELECT 1 FROM runs WHERE tenant = $1 AND run_id = $2", tenant, run_id
            )
            if exists is None:
                raise NotFoundError("run", run_id)
            return None

        async def again(conn: Any) -> RunRecord | None:  # the lost attempt may have claimed it
            row = await conn.fetchrow(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE tenant = $1 AND run_id = $2 "
                "AND status = 'running' AND claimed_by = $3 AND updated_at = $4",
                tenant,
                run_id,
                owner,
                now,
            )
            return _codec.run_from_row(row) if row is not None else await op(conn)

        return await self._run(op, again)

    # -- sessions -------------------------------------------------------

    async def load_session(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        async def op(conn: Any) -> list[dict[str, Any]]:
            text = await conn.fetchval(
                "SELECT messages FROM sessions WHERE tenant = $1 AND session_id = $2",
                tenant,
                session_id,
            )
            return [] if text is None else list(_codec.loads(text))

        return await self._run(op, op)

    async def save_session(
        self, tenant: str, session_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> None:
        text = _codec.dumps(_codec.session_messages(messages), what="session messages")

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO sessions (tenant, session_id, messages, updated_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (tenant, session_id) DO UPDATE SET messages = excluded.messages, "
                "updated_at = excluded.updated_at",
                tenant,
                session_id,
                text,
                time.time(),
            )

        await self._run(op, op)

    # -- remote tasks -----------------------------------------------------

    async def bind_remote(self, binding: RemoteBinding) -> RemoteBinding:
        async def op(conn: Any) -> RemoteBinding:
            await conn.execute(
                "INSERT INTO remote_tasks (tenant, trace_id, key, agent_url, task_id, "
                "context_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (tenant, trace_id, key) DO NOTHING",
                binding.tenant,
                binding.trace_id,
                binding.key,
                binding.agent_url,
                binding.task_id,
                binding.context_id,
                binding.created_at or time.time(),
            )
            found = await _remote_row(conn, binding.tenant, binding.trace_id, binding.key)
            assert found is not None
            return found

        return await self._run(op, op)

    async def get_remote(self, tenant: str, trace_id: str, key: str) -> RemoteBinding | None:
        async def op(conn: Any) -> RemoteBinding | None:
            return await _remote_row(conn, tenant, trace_id, key)

        return await self._run(op, op)

    # -- sealed credentials -----------------------------------------------

    async def put_credential(self, tenant: str, key: str, sealed: str) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO credentials (tenant, key, sealed, updated_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (tenant, key) DO UPDATE SET sealed = excluded.sealed, "
                "updated_at = excluded.updated_at",
                tenant,
                key,
                sealed,
                time.time(),
            )

        await self._run(op, op)

    async def get_credential(self, tenant: str, key: str) -> str | None:
        async def op(conn: Any) -> str | None:
            value = await conn.fetchval(
                "SELECT sealed FROM credentials WHERE tenant = $1 AND key = $2", tenant, key
            )
            return None if value is None else str(value)

        return await self._run(op, op)

    async def delete_credential(self, tenant: str, key: str) -> bool:
        async def op(conn: Any) -> bool:
            status = await conn.execute(
                "DELETE FROM credentials WHERE tenant = $1 AND key = $2", tenant, key
            )
            return str(status).endswith(" 1")

        return await self._run(op)

    async def list_credentials(self, tenant: str, prefix: str = "") -> list[str]:
        async def op(conn: Any) -> list[str]:
            rows = await conn.fetch(
                "SELECT key FROM credentials WHERE tenant = $1 AND left(key, $2) = $3 ORDER BY key",
                tenant,
                len(prefix),
                prefix,
            )
            return [str(r["key"]) for r in rows]

        return await self._run(op, op)

    # -- cached tool listings ---------------------------------------------

    async def put_listing(self, source: str, listing: Mapping[str, Any]) -> None:
        text = _codec.dumps(dict(listing), what=f"listing of source {source!r}")

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO listings (source, listing, updated_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (source) DO UPDATE SET listing = excluded.listing, "
                "updated_at = excluded.updated_at",
                source,
                text,
                time.time(),
            )

        await self._run(op, op)

    async def get_listing(self, source: str) -> tuple[dict[str, Any], float] | None:
        async def op(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT listing, updated_at FROM listings WHERE source = $1", source
            )

        row = await self._run(op, op)
        if row is None:
            return None
        return _codec.listing_of(str(row["listing"]), float(row["updated_at"]))

    # -- approvals ------------------------------------------------------

    async def create_approval(
        self,
        approval: ApprovalRecord,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        new = _codec.prepare_new_approval(approval)
        rows = [_outbox.entry_row(e) for e in _outbox.prepare_entries(outbox)]
        payloads = _event_payloads(events)
        ts = time.time()

        async def op(conn: Any) -> ApprovalRecord:
            async with conn.transaction():
                inserted = await conn.fetchval(
                    f"INSERT INTO approvals ({_APPROVAL_COLUMNS}) VALUES ({_marks(17)}) "
                    "ON CONFLICT DO NOTHING RETURNING 1",
                    *_codec.approval_row(new),
                )
                if inserted is None:
                    raise ConflictError(
                        f"an approval with id {new.id!r} already exists; use a fresh id."
                    )
                await _insert_outbox(conn, rows)
                await _insert_events(conn, new.tenant, new.run_id, payloads, ts)
            return new

        async def again(conn: Any) -> ApprovalRecord:  # the lost attempt may have committed
            row = await conn.fetchrow(
                "SELECT created_at, arguments_sha256, call_id FROM approvals "
                "WHERE tenant = $1 AND id = $2",
                new.tenant,
                new.id,
            )
            if row is not None and tuple(row) == (
                new.created_at,
                new.arguments_sha256,
                new.call_id,
            ):
                return new  # its outbox rows and events were in the same transaction
            return await op(conn)

        return await self._run(op, again)

    async def get_approval(self, tenant: str, approval_id: str) -> ApprovalRecord:
        async def op(conn: Any) -> ApprovalRecord:
            return await _get_approval(conn, tenant, approval_id)

        return await self._run(op, op)

    async def list_approvals(
        self, tenant: str, *, status: str | None = None, run_id: str | None = None
    ) -> list[ApprovalRecord]:
        if status is not None:
            _codec.check_approval_status(status)

        async def op(conn: Any) -> list[ApprovalRecord]:
            rows = await conn.fetch(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE tenant = $1 "
                "AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR run_id = $3) "
                "ORDER BY created_at, ord",
                tenant,
                status,
                run_id,
            )
            return [_codec.approval_from_row(r) for r in rows]

        return await self._run(op, op)

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
        status = _codec.status_after(new)
        rows = [_outbox.entry_row(e) for e in _outbox.prepare_entries(outbox)]
        payloads = _event_payloads(events)
        ts = time.time()

        async def op(conn: Any) -> ApprovalRecord:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE approvals SET status = $3, decision = $4 "
                    "WHERE tenant = $1 AND id = $2 AND status = 'pending' "
                    f"RETURNING {_APPROVAL_COLUMNS}",
                    tenant,
                    approval_id,
                    status,
                    _codec.decision_to_json(new),
                )
                if row is not None:
                    await _insert_outbox(conn, rows)
                    await _insert_events(conn, tenant, str(row["run_id"]), payloads, ts)
            if row is not None:
                return _codec.approval_from_row(row)
            current = await _get_approval(conn, tenant, approval_id)
            raise _codec.already_decided(
                approval_id, current.status, current.decision, current.expires_at
            )

        async def again(conn: Any) -> ApprovalRecord:  # the lost attempt may have committed
            row = await conn.fetchrow(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE tenant = $1 AND id = $2 "
                "AND status = $3 AND decision::text = $4",
                tenant,
                approval_id,
                status,
                _codec.decision_to_json(new),
            )
            return _codec.approval_from_row(row) if row is not None else await op(conn)

        return await self._run(op, again)

    # -- exactly-once calls ----------------------------------------------

    async def begin_call(self, tenant: str, run_id: str, call_id: str) -> bool:
        started_at = time.time()

        async def op(conn: Any) -> bool:
            inserted = await conn.fetchval(
                "INSERT INTO calls (tenant, run_id, call_id, status, result, started_at) "
                "VALUES ($1, $2, $3, 'executing', NULL, $4) ON CONFLICT DO NOTHING RETURNING 1",
                tenant,
                run_id,
                call_id,
                started_at,
            )
            return inserted is not None

        async def again(conn: Any) -> bool:  # the lost attempt may have begun it: then it is ours
            found = await conn.fetchval(
                "SELECT started_at FROM calls WHERE tenant = $1 AND run_id = $2 AND call_id = $3",
                tenant,
                run_id,
                call_id,
            )
            return found == started_at if found is not None else await op(conn)

        return await self._run(op, again)

    async def finish_call(
        self, tenant: str, run_id: str, call_id: str, result: Mapping[str, Any]
    ) -> None:
        payload = _codec.dumps(dict(result), what=f"result of call {call_id!r}")

        async def op(conn: Any) -> None:
            updated = await conn.fetchval(
                "UPDATE calls SET status = 'done', result = $4 "
                "WHERE tenant = $1 AND run_id = $2 AND call_id = $3 AND status = 'executing' RETURNING 1",
                tenant,
                run_id,
                call_id,
                payload,
            )
            if updated is not None:
                return
            exists = await conn.fetchval(
                "SELECT 1 FROM calls WHERE tenant = $1 AND run_id = $2 AND call_id = $3",
                tenant,
                run_id,
                call_id,
            )
            if exists is None:
                raise NotFoundError("call", call_id)
            raise ConflictError(
                f"call {call_id!r} of run {run_id!r} was already finished; a call finishes once."
            )

        async def again(conn: Any) -> None:  # the lost attempt may have finished it
            done = await conn.fetchval(
                "SELECT 1 FROM calls WHERE tenant = $1 AND run_id = $2 AND call_id = $3 "
                "AND status = 'done' AND result::text = $4",
                tenant,
                run_id,
                call_id,
                payload,
            )
            if done is None:
                await op(conn)

        await self._run(op, again)

    async def get_call(self, tenant: str, run_id: str, call_id: str) -> CallRecord | None:
        async def op(conn: Any) -> CallRecord | None:
            row = await conn.fetchrow(
                "SELECT status, result, started_at FROM calls "
                "WHERE tenant = $1 AND run_id = $2 AND call_id = $3",
                tenant,
                run_id,
                call_id,
            )
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

        return await self._run(op, op)

    # -- webhook outbox ---------------------------------------------------

    async def claim_outbox(self, *, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        _outbox.check_claim(lease_s, limit)

        async def op(conn: Any) -> list[OutboxEntry]:
            rows = await conn.fetch(
                "UPDATE outbox SET next_attempt_at = $2 WHERE id IN ("
                "SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 "
                "ORDER BY created_at, ord LIMIT $3 FOR UPDATE SKIP LOCKED) "
                f"RETURNING ord, {_OUTBOX_COLUMNS}",
                now,
                now + lease_s,
                limit,
            )
            ordered = sorted(rows, key=lambda r: (r["created_at"], r["ord"]))
            return [_outbox.entry_from_row(tuple(r)[1:]) for r in ordered]

        return await self._run(op)

    async def record_outbox_attempt(self, entry: OutboxEntry) -> None:
        _outbox.check_outbox_status(entry.status)

        async def op(conn: Any) -> None:
            updated = await conn.fetchval(
                "UPDATE outbox SET status = $2, attempts = $3, next_attempt_at = $4, "
                "last_error = $5, finished_at = $6 WHERE id = $1 RETURNING 1",
                entry.id,
                entry.status,
                entry.attempts,
                entry.next_attempt_at,
                entry.last_error,
                entry.finished_at,
            )
            if updated is None:
                raise NotFoundError("outbox entry", entry.id)

        await self._run(op, op)

    async def list_outbox(
        self, *, tenant: str | None = None, status: str | None = None
    ) -> list[OutboxEntry]:
        if status is not None:
            _outbox.check_outbox_status(status)

        async def op(conn: Any) -> list[OutboxEntry]:
            rows = await conn.fetch(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE ($1::text IS NULL OR tenant = $1) "
                "AND ($2::text IS NULL OR status = $2) ORDER BY created_at, ord",
                tenant,
                status,
            )
            return [_outbox.entry_from_row(r) for r in rows]

        return await self._run(op, op)


def _connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is the connection failing (not the statement). A timeout is not: the
    statement (or the wait for a free connection) took 30 s, and is not tried again."""
    if isinstance(exc, TimeoutError):  # an OSError too
        return False
    if isinstance(exc, _CONNECTION_LOST):
        return True
    # asyncpg's "connection is closed" / "connection was closed in the middle of operation";
    # a pooled connection the server closed between two statements of one operation is
    # detached from the pool at once: the next statement finds it "released back to the pool".
    text = str(exc)
    return isinstance(exc, asyncpg.InterfaceError) and (
        "closed" in text or "released back to the pool" in text
    )


def _event_payloads(events: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, str]]:
    return [
        (kind, _codec.dumps(dict(data), what=f"data of event {kind!r}")) for kind, data in events
    ]


async def _insert_events(
    conn: Any, tenant: str, run_id: str, payloads: Sequence[tuple[str, str]], ts: float
) -> list[int]:
    """Append events to a run's log (in the caller's transaction, if any); their seqs."""
    if not payloads:
        return []
    kinds = [kind for kind, _ in payloads]
    datas = [data for _, data in payloads]
    count = len(kinds)
    # one statement: reserve `count` sequence numbers, then insert the events after them
    rows = await conn.fetch(
        "WITH s AS (INSERT INTO event_seqs (tenant, run_id, last_seq) VALUES ($1, $2, $3) "
        "ON CONFLICT (tenant, run_id) DO UPDATE SET last_seq = event_seqs.last_seq + $3 "
        "RETURNING last_seq) "
        "INSERT INTO events (tenant, run_id, seq, kind, data, ts) "
        "SELECT $1, $2, s.last_seq - $3 + e.n, e.kind, e.data::json, $6 "
        "FROM s, unnest($4::text[], $5::text[]) WITH ORDINALITY AS e(kind, data, n) "
        "RETURNING seq",
        tenant,
        run_id,
        count,
        kinds,
        datas,
        ts,
    )
    return sorted(int(row["seq"]) for row in rows)


async def _appended(
    conn: Any, tenant: str, run_id: str, kinds: Sequence[str], ts: float
) -> list[int] | None:
    """The seqs of the events an attempt whose connection was lost appended (the run's events
    of that exact timestamp, of the same kinds in order), or None when it appended none."""
    rows = await conn.fetch(
        "SELECT seq, kind FROM events WHERE tenant = $1 AND run_id = $2 AND ts = $3 ORDER BY seq",
        tenant,
        run_id,
        ts,
    )
    if rows and [str(r["kind"]) for r in rows] == list(kinds):
        return [int(r["seq"]) for r in rows]
    return None


async def _insert_outbox(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """Insert outbox rows in the caller's transaction; an id already there is kept as is."""
    if rows:
        await conn.executemany(
            f"INSERT INTO outbox ({_OUTBOX_COLUMNS}) VALUES ({_marks(12)}) "
            "ON CONFLICT (id) DO NOTHING",
            rows,
        )


# -- schema ---------------------------------------------------------------------------------------


async def _migrate(conn: Any, schema: str, shown: str) -> None:
    async with conn.transaction():
        # One migrator at a time per schema, across every process.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"penguiflow_agents:{schema}"
        )
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_version (version INTEGER NOT NULL)'
        )
        current = await conn.fetchval(f'SELECT MAX(version) FROM "{schema}".schema_version') or 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the PostgreSQL schema {schema!r} at {shown!r} has schema version {current}, newer "
                f"than this version of penguiflow-agents understands ({SCHEMA_VERSION}); "
                "upgrade penguiflow-agents or use another schema."
            )
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        for version in range(current, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version + 1)


def _split_schema(dsn: str) -> tuple[str, str | None]:
    """Take a ``schema=`` query parameter (ours, not libpq's) out of the DSN."""
    parts = urlsplit(dsn)
    if not parts.query:
        return dsn, None
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def _application_name(dsn: str) -> str:
    """The DSN's ``application_name`` (libpq's parameter), else ``penguiflow-agents``."""
    query = parse_qsl(urlsplit(dsn).query, keep_blank_values=True)
    return next((v for k, v in query if k == "application_name" and v), DEFAULT_APPLICATION_NAME)


def _marks(n: int) -> str:
    return ", ".join(f"${i}" for i in range(1, n + 1))


# -- lookups ----------------------------------------------------------------------------------------


async def _get_approval(conn: Any, tenant: str, approval_id: str) -> ApprovalRecord:
    row = await conn.fetchrow(
        f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE tenant = $1 AND id = $2",
        tenant,
        approval_id,
    )
    if row is None:
        raise NotFoundError("approval", approval_id)
    return _codec.approval_from_row(row)


async def _remote_row(conn: Any, tenant: str, trace_id: str, key: str) -> RemoteBinding | None:
    row = await conn.fetchrow(
        "SELECT agent_url, task_id, context_id, created_at FROM remote_tasks "
        "WHERE tenant = $1 AND trace_id = $2 AND key = $3",
        tenant,
        trace_id,
        key,
    )
    if row is None:
        return None
    return RemoteBinding(
        tenant=tenant,
        trace_id=trace_id,
        key=key,
        agent_url=str(row["agent_url"]),
        task_id=str(row["task_id"]),
        context_id=str(row["context_id"]),
        created_at=float(row["created_at"]),
    )
