"""The state-store seam: runs, their append-only event log, sessions and approvals.

Every read and write takes the tenant: a store never returns another tenant's
object, and a foreign id raises the same ``NotFoundError`` as a missing one.
Records are plain dataclasses holding JSON-able values only; a store keeps no
secrets in clear (credentials arrive sealed, see ``put_credential``).

Implementations: ``MemoryStore`` (tests), ``SQLiteStore`` (default,
``sqlite:///.penguiflow/state.db``), ``PostgresStore`` (``postgresql://...``,
the ``[postgres]`` extra). ``open_store(url)`` picks one from a URL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "APPROVAL_STATUSES",
    "DEFAULT_PRUNE_BATCH",
    "ENDED_STATUSES",
    "OUTBOX_STATUSES",
    "RUN_STATUSES",
    "ApprovalDecision",
    "ApprovalRecord",
    "CallRecord",
    "OutboxEntry",
    "RunRecord",
    "StateStore",
    "StoredEvent",
]

RUN_STATUSES = ("running", "paused", "completed", "failed", "cancelled")
ENDED_STATUSES = ("completed", "failed", "cancelled")  # what retention may delete
# Runs deleted per transaction by prune_runs (each batch holds the store's write lock briefly).
DEFAULT_PRUNE_BATCH = 500
APPROVAL_STATUSES = ("pending", "approved", "rejected", "expired")
OUTBOX_STATUSES = ("pending", "delivered", "dead")


@dataclass(slots=True, kw_only=True)
class StoredEvent:
    tenant: str
    run_id: str
    seq: int  # 1, 2, 3... per run, assigned by the store
    kind: str
    data: dict[str, Any]
    ts: float  # time.time()


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """One planner run (or one flow trace). ``state`` is the resumable state."""

    run_id: str
    tenant: str
    principal: str
    roles: list[str] = field(default_factory=list)
    session_id: str | None = None
    status: str = "running"
    model: str = ""
    query: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    version: int = 0  # bumped by every successful write; used for compare-and-set
    claimed_by: str | None = None
    claim_expires_at: float | None = None  # time.time(); a dead claimer's lease runs out
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(slots=True, kw_only=True)
class ApprovalDecision:
    decision: str  # approve | reject | edit
    decided_by: str
    decided_roles: list[str] = field(default_factory=list)
    reason: str | None = None
    arguments: dict[str, Any] | None = None  # the edited arguments for "edit"
    decided_at: float = 0.0


@dataclass(slots=True, kw_only=True)
class ApprovalRecord:
    """A request for a human decision, bound to exactly one call (see DESIGN.md)."""

    id: str
    tenant: str
    run_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    arguments_sha256: str
    tool_hash: str
    policy_version: str
    requested_by: str
    approvers: list[str]
    rule: dict[str, Any]  # {"match": ..., "reason": ...}
    # The tool's schema when requested (edits are checked against it).
    input_schema: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    decision: ApprovalDecision | None = None
    created_at: float = 0.0
    expires_at: float = 0.0
    # Set when the stored row could not be read whole (says why); never decided or applied.
    damaged: str | None = None


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """Exactly-once bookkeeping for one gated call: begun, then finished."""

    tenant: str
    run_id: str
    call_id: str
    status: str  # executing | done
    result: dict[str, Any] | None = None
    started_at: float = 0.0


@dataclass(slots=True, kw_only=True)
class OutboxEntry:
    """One webhook delivery waiting in the store's outbox: one event to one URL.

    ``event_id`` is stable per event (the receiver's idempotency key) and is
    shared by the entries of the same event to several URLs. The outbox is
    the one cross-tenant table: a delivering process serves every tenant.
    """

    id: str  # unique per (event_id, url)
    event_id: str
    tenant: str
    url: str
    kind: str  # e.g. approval.requested, approval.decided
    payload: dict[str, Any]
    status: str = "pending"  # pending | delivered | dead
    attempts: int = 0
    next_attempt_at: float = 0.0  # time.time(); also the lease of a claimed entry
    last_error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None  # delivered or dead-lettered


@dataclass(slots=True, kw_only=True)
class RemoteBinding:
    """A remote task started for one step of a trace (``RemoteNode``): where it runs and
    its id there, so that a trace taken over elsewhere reattaches instead of sending again."""

    tenant: str
    trace_id: str
    key: str  # which remote step of the trace (the RemoteNode's name)
    agent_url: str
    task_id: str
    context_id: str = ""
    created_at: float = 0.0


@runtime_checkable
class StateStore(Protocol):
    # -- events ---------------------------------------------------------
    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        """Append an event; returns its per-run sequence number (1-based, gapless)."""
        ...

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        """Append ``(kind, data)`` events in order, in one store operation (all or none);
        returns their sequence numbers (consecutive, as ``append_event`` would give them)."""
        ...

    async def list_events(
        self, tenant: str, run_id: str, *, after_seq: int = 0
    ) -> list[StoredEvent]:
        """Events with ``seq > after_seq`` in seq order. No RunRecord is needed for a run_id."""
        ...

    # -- runs -----------------------------------------------------------
    async def create_run(self, run: RunRecord) -> RunRecord:
        """Store a new run as given (``version`` unchanged, 0 for a fresh record;
        ``created_at``/``updated_at`` filled with time.time() when 0) and return a copy.
        ConflictError if the tenant already has a run with that id."""
        ...

    async def get_run(self, tenant: str, run_id: str) -> RunRecord:
        """Raises NotFoundError for a missing or foreign run."""
        ...

    async def list_runs(self, tenant: str, *, status: str | None = None) -> list[RunRecord]:
        """The tenant's runs, oldest (``created_at``) first."""
        ...

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        """Write ``run`` if the stored version is ``expected_version``; else ConflictError.

        Returns the record with its new version."""
        ...

    async def claim_run(
        self, tenant: str, run_id: str, *, owner: str, from_statuses: Sequence[str], lease_s: float
    ) -> RunRecord | None:
        """Atomically take a run to work on it.

        Succeeds (status becomes "running", ``claimed_by=owner``, a lease of
        ``lease_s`` seconds, version bumped) when the run's status is in
        ``from_statuses``, or when it is "running" under a claim whose lease
        has run out (its worker died). Returns None when someone else holds it
        or its status does not allow it. Raises NotFoundError for a missing or
        foreign run."""
        ...

    # -- sessions -------------------------------------------------------
    async def load_session(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        """The saved messages, or [] for a session never saved."""
        ...

    async def save_session(
        self, tenant: str, session_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> None:
        """Replace the session's whole message list."""
        ...

    # -- approvals ------------------------------------------------------
    async def create_approval(
        self,
        approval: ApprovalRecord,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        """Store a new request as given (``created_at`` filled when 0). ConflictError
        if the tenant already has one with that id. Stores do not evaluate expiry:
        ``status`` stays "pending" past ``expires_at`` (the approvals service decides).
        ``outbox`` entries, and ``events`` (``(kind, data)``, appended to the log of the
        approval's run, as ``append_events``), are written in the same transaction (all
        or nothing)."""
        ...

    async def get_approval(self, tenant: str, approval_id: str) -> ApprovalRecord: ...

    async def list_approvals(
        self, tenant: str, *, status: str | None = None, run_id: str | None = None
    ) -> list[ApprovalRecord]:
        """The tenant's requests, oldest (``created_at``, then creation order) first."""
        ...

    async def decide_approval(
        self,
        tenant: str,
        approval_id: str,
        decision: ApprovalDecision,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        """Record a decision once, atomically.

        Raises AlreadyDecidedError (saying who decided what and when) if the
        request is not pending, NotFoundError if missing or foreign. Does not
        check approvers: that is the approvals service's job. ``outbox``
        entries and ``events`` (appended to the log of the approval's run) are
        written in the same transaction, only if the decision is."""
        ...

    # -- sealed credentials -----------------------------------------------
    async def put_credential(self, tenant: str, key: str, sealed: str) -> None:
        """Store (or replace) one credential. ``sealed`` is ciphertext made by
        ``penguiflow_agents.auth.SecretBox``: a store never sees a token in clear."""
        ...

    async def get_credential(self, tenant: str, key: str) -> str | None:
        """The sealed value, or None if there is none (or it is another tenant's)."""
        ...

    async def delete_credential(self, tenant: str, key: str) -> bool:
        """Remove one credential; False if there was none."""
        ...

    async def list_credentials(self, tenant: str, prefix: str = "") -> list[str]:
        """The tenant's credential keys that start with ``prefix``, sorted."""
        ...

    # -- remote tasks ----------------------------------------------------
    async def bind_remote(self, binding: RemoteBinding) -> RemoteBinding:
        """Record the remote task of ``(tenant, trace_id, key)``; the first binding wins:
        when one exists already it is returned unchanged (the caller then reattaches)."""
        ...

    async def get_remote(self, tenant: str, trace_id: str, key: str) -> RemoteBinding | None:
        """The remote task bound to ``(trace_id, key)``, or None (also for another tenant's)."""
        ...

    # -- cached tool listings ---------------------------------------------
    async def put_listing(self, source: str, listing: Mapping[str, Any]) -> None:
        """Keep a tool source's latest listing (JSON: its tools and what they were listed
        from), replacing the previous one; ``tools list`` shows it at once next time."""
        ...

    async def get_listing(self, source: str) -> tuple[dict[str, Any], float] | None:
        """The cached listing of ``source`` and when it was written (epoch seconds);
        None if there is none."""
        ...

    # -- exactly-once calls ----------------------------------------------
    async def begin_call(self, tenant: str, run_id: str, call_id: str) -> bool:
        """Mark a call as executing. False if it was already begun (by anyone)."""
        ...

    async def finish_call(
        self, tenant: str, run_id: str, call_id: str, result: Mapping[str, Any]
    ) -> None:
        """Mark a begun call done with its result. NotFoundError if never begun,
        ConflictError if already finished."""
        ...

    async def get_call(self, tenant: str, run_id: str, call_id: str) -> CallRecord | None:
        """The call's bookkeeping, or None if never begun."""
        ...

    # -- webhook outbox ---------------------------------------------------
    async def claim_outbox(self, *, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        """Take up to ``limit`` pending entries due at ``now`` (oldest first), atomically.

        Each one's ``next_attempt_at`` becomes ``now + lease_s``, so no other
        claimer takes it meanwhile, and a claimer that dies before recording
        the outcome gives it back when the lease runs out (at least once)."""
        ...

    async def record_outbox_attempt(self, entry: OutboxEntry) -> None:
        """Write an entry's ``status``, ``attempts``, ``next_attempt_at``, ``last_error``
        and ``finished_at`` (the outcome of one delivery attempt). NotFoundError if unknown."""
        ...

    async def list_outbox(
        self, *, tenant: str | None = None, status: str | None = None
    ) -> list[OutboxEntry]:
        """Outbox entries (oldest first), optionally of one tenant and/or status."""

    # -- retention and counts ---------------------------------------------
    async def prune_runs(
        self, *, ended_before: float, batch_size: int = DEFAULT_PRUNE_BATCH
    ) -> int:
        """Delete the runs of every tenant that ended (completed, failed, cancelled) and were
        last written before ``ended_before`` (``time.time()``), with their events, call records
        and decided approvals; one transaction per ``batch_size`` runs, so live runs are never
        blocked for long. Running and paused runs are never deleted. Returns how many runs."""
        ...

    async def count_runs(self, *, status: str | None = None) -> int:
        """How many runs, of every tenant, have ``status`` (every run when None)."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; later calls raise StoreError. Idempotent."""
        ...
