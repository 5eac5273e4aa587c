"""State stores: runs, their event log, sessions, approvals and exactly-once calls.

``open_store(url)`` picks an implementation from a URL: ``memory://``
(``MemoryStore``), ``sqlite:///path.db`` (``SQLiteStore``, the default
``sqlite:///.penguiflow/state.db``) or ``postgresql://...`` (``PostgresStore``,
the ``[postgres]`` extra). Every implementation follows ``StateStore``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import (
    APPROVAL_STATUSES,
    DEFAULT_PRUNE_BATCH,
    ENDED_STATUSES,
    OUTBOX_STATUSES,
    RUN_STATUSES,
    ApprovalDecision,
    ApprovalRecord,
    CallRecord,
    OutboxEntry,
    RemoteBinding,
    RunRecord,
    StateStore,
    StoredEvent,
)
from ._memory import MemoryStore
from ._open import DEFAULT_STORE_URL, open_store, redact_url

if TYPE_CHECKING:
    from ._postgres import PostgresStore
    from ._sqlite import SQLiteStore

__all__ = [
    "APPROVAL_STATUSES",
    "DEFAULT_PRUNE_BATCH",
    "DEFAULT_STORE_URL",
    "ENDED_STATUSES",
    "OUTBOX_STATUSES",
    "RUN_STATUSES",
    "ApprovalDecision",
    "ApprovalRecord",
    "CallRecord",
    "MemoryStore",
    "OutboxEntry",
    "PostgresStore",
    "RemoteBinding",
    "RunRecord",
    "SQLiteStore",
    "StateStore",
    "StoredEvent",
    "open_store",
    "redact_url",
]


def __getattr__(name: str) -> Any:
    # SQLite and PostgreSQL adapters load on first use (asyncpg is an optional extra).
    if name == "SQLiteStore":
        from ._sqlite import SQLiteStore

        return SQLiteStore
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
