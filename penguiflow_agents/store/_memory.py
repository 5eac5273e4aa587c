"""``MemoryStore``: the state store in a Python dict, for tests and single-process use.

Every record goes in and comes out as a fresh copy (values normalized as a
JSON store would return them), so callers never share mutable state with the
store. One lock makes each method atomic across threads and event loops.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConflictError, NotFoundError, StoreError
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

__all__ = ["MemoryStore"]

_new = object.__new__


@dataclass(slots=True, kw_only=True)
class _StoredRun:
    """A run as the store keeps it: the state as JSON text (encoding validates it, and decoding is
    the copy each reader gets, cheaper than a deep copy), the roles as a tuple of their JSON
    values (strings, nearly always: a copy is ``list``)."""

    run_id: str
    tenant: str
    principal: str
    roles: tuple[Any, ...]
    session_id: str | None
    status: str
    model: str
    query: str
    state: str
    version: int
    claimed_by: str | None
    claim_expires_at: float | None
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, run: RunRecord, *, version: int, created_at: float) -> _StoredRun:
        """Built slot by slot (a keyword ``__init__`` of 14 fields is 4x as long, and every
        write makes one); tests/store's round trips check every field."""
        new: _StoredRun = _new(cls)
        new.run_id = run.run_id
        new.tenant = run.tenant
        new.principal = run.principal
        new.roles = tuple(_codec.normalized_roles(run))
        new.session_id = run.session_id
        new.status = run.status
        new.model = run.model
        new.query = run.query
        new.state = _codec.state_text(run)
        new.version = version
        new.claimed_by = run.claimed_by
        new.claim_expires_at = run.claim_expires_at
        new.created_at = new.updated_at = created_at
        return new

    def record(self) -> RunRecord:
        """A fresh copy; its state is decoded from the stored text when first read."""
        roles = list(self.roles)
        if not all(type(r) is str for r in roles):  # other JSON values: a deep copy
            roles = _codec.normalize(roles, what="run roles")
        return _codec.encoded_run(self, roles=roles, state_text=self.state)


class MemoryStore:
    """An in-process ``StateStore``; nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._events: dict[tuple[str, str], list[StoredEvent]] = {}
        self._runs: dict[tuple[str, str], _StoredRun] = {}
        self._sessions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._credentials: dict[tuple[str, str], str] = {}
        self._remote: dict[tuple[str, str, str], RemoteBinding] = {}
        self._listings: dict[str, tuple[str, float]] = {}
        self._approvals: dict[tuple[str, str], ApprovalRecord] = {}
        self._calls: dict[tuple[str, str, str], CallRecord] = {}
        self._outbox: dict[str, OutboxEntry] = {}  # insertion order is creation order

    def __repr__(self) -> str:
        return "MemoryStore()"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this MemoryStore was closed; open a new store.")

    # -- events ---------------------------------------------------------

    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        payload = _codec.normalize(dict(data), what=f"data of event {kind!r}")
        ts = time.time()
        with self._lock:
            self._check_open()
            log = self._events.setdefault((tenant, run_id), [])
            seq = len(log) + 1
            log.append(
                StoredEvent(tenant=tenant, run_id=run_id, seq=seq, kind=kind, data=payload, ts=ts)
            )
            return seq

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        payloads = [
            (kind, _codec.normalize(dict(data), what=f"data of event {kind!r}"))
            for kind, data in events
        ]
        ts = time.time()
        with self._lock:
            self._check_open()
            log = self._events.setdefault((tenant, run_id), [])
            first = len(log) + 1
            for offset, (kind, payload) in enumerate(payloads):
                log.append(
                    StoredEvent(
                        tenant=tenant,
                        run_id=run_id,
                        seq=first + offset,
                        kind=kind,
                        data=payload,
                        ts=ts,
                    )
                )
            return list(range(first, first + len(payloads)))

    async def list_events(
        self, tenant: str, run_id: str, *, after_seq: int = 0
    ) -> list[StoredEvent]:
        with self._lock:
            self._check_open()
            log = self._events.get((tenant, run_id), [])
            return [copy.deepcopy(e) for e in log[max(after_seq, 0) :]]

    # -- runs -----------------------------------------------------------

    async def create_run(self, run: RunRecord) -> RunRecord:
        _codec.check_run_status(run.status)
        now = time.time()
        stored = _StoredRun.of(run, version=run.version, created_at=run.created_at or now)
        stored.updated_at = run.updated_at or now
        with self._lock:
            self._check_open()
            key = (run.tenant, run.run_id)
            if key in self._runs:
                raise ConflictError(
                    f"a run with id {run.run_id!r} already exists; use a fresh run id."
                )
            self._runs[key] = stored
            return stored.record()

    async def get_run(self, tenant: str, run_id: str) -> RunRecord:
        with self._lock:
            self._check_open()
            stored = self._run(tenant, run_id)
        return stored.record()

    async def list_runs(self, tenant: str, *, status: str | None = None) -> list[RunRecord]:
        if status is not None:
            _codec.check_run_status(status)
        with self._lock:
            self._check_open()
            runs = [
                r
                for (t, _), r in self._runs.items()
                if t == tenant and (status is None or r.status == status)
            ]
        runs.sort(key=lambda r: r.created_at)  # stable: ties keep creation order
        return [r.record() for r in runs]

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        _codec.check_run_status(run.status)
        new = _StoredRun.of(run, version=0, created_at=0.0)  # encoded outside the lock
        with self._lock:
            self._check_open()
            current = self._run(run.tenant, run.run_id)
            if current.version != expected_version:
                raise ConflictError(
                    f"run {run.run_id!r} is at version {current.version}, not {expected_version}: "
                    "another writer changed it first; reload it and retry."
                )
            new.version = current.version + 1
            new.created_at = current.created_at
            new.updated_at = time.time()
            self._runs[(run.tenant, run.run_id)] = new
        return new.record()

    async def claim_run(
        self, tenant: str, run_id: str, *, owner: str, from_statuses: Sequence[str], lease_s: float
    ) -> RunRecord | None:
        statuses = _codec.check_statuses(from_statuses)
        _codec.check_lease(lease_s)
        with self._lock:
            self._check_open()
            current = self._run(tenant, run_id)
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
        return current.record()

    def _run(self, tenant: str, run_id: str) -> _StoredRun:
        try:
            return self._runs[(tenant, run_id)]
        except KeyError:
            raise NotFoundError("run", run_id) from None

    # -- sessions -------------------------------------------------------

    async def load_session(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._check_open()
            return copy.deepcopy(self._sessions.get((tenant, session_id), []))

    async def save_session(
        self, tenant: str, session_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> None:
        stored = _codec.session_messages(messages)
        with self._lock:
            self._check_open()
            self._sessions[(tenant, session_id)] = stored

    # -- remote tasks -----------------------------------------------------

    async def bind_remote(self, binding: RemoteBinding) -> RemoteBinding:
        key = (binding.tenant, binding.trace_id, binding.key)
        with self._lock:
            found = self._remote.get(key)
            if found is None:
                found = dataclasses.replace(binding, created_at=binding.created_at or time.time())
                self._remote[key] = found
            return dataclasses.replace(found)

    async def get_remote(self, tenant: str, trace_id: str, key: str) -> RemoteBinding | None:
        with self._lock:
            found = self._remote.get((tenant, trace_id, key))
            return None if found is None else dataclasses.replace(found)

    # -- cached tool listings ---------------------------------------------

    async def put_listing(self, source: str, listing: Mapping[str, Any]) -> None:
        text = _codec.dumps(dict(listing), what=f"listing of source {source!r}")
        self._listings[source] = (text, time.time())

    async def get_listing(self, source: str) -> tuple[dict[str, Any], float] | None:
        found = self._listings.get(source)
        return None if found is None else _codec.listing_of(*found)

    # -- sealed credentials -----------------------------------------------

    async def put_credential(self, tenant: str, key: str, sealed: str) -> None:
        with self._lock:
            self._check_open()
            self._credentials[(tenant, key)] = sealed

    async def get_credential(self, tenant: str, key: str) -> str | None:
        with self._lock:
            self._check_open()
            return self._credentials.get((tenant, key))

    async def delete_credential(self, tenant: str, key: str) -> bool:
        with self._lock:
            self._check_open()
            return self._credentials.pop((tenant, key), None) is not None

    async def list_credentials(self, tenant: str, prefix: str = "") -> list[str]:
        with self._lock:
            self._check_open()
            return sorted(k for t, k in self._credentials if t == tenant and k.startswith(prefix))

    # -- approvals ------------------------------------------------------

    async def create_approval(
        self,
        approval: ApprovalRecord,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        new = _codec.prepare_new_approval(approval)
        entries = _outbox.prepare_entries(outbox)
        payloads = _event_payloads(events)
        with self._lock:
            self._check_open()
            key = (new.tenant, new.id)
            if key in self._approvals:
                raise ConflictError(
                    f"an approval with id {new.id!r} already exists; use a fresh id."
                )
            self._approvals[key] = new
            self._add_outbox(entries)
            self._add_events(new.tenant, new.run_id, payloads)
            return copy.deepcopy(new)

    async def get_approval(self, tenant: str, approval_id: str) -> ApprovalRecord:
        with self._lock:
            self._check_open()
            return copy.deepcopy(self._approval(tenant, approval_id))

    async def list_approvals(
        self, tenant: str, *, status: str | None = None, run_id: str | None = None
    ) -> list[ApprovalRecord]:
        if status is not None:
            _codec.check_approval_status(status)
        with self._lock:
            self._check_open()
            found = [
                a
                for (t, _), a in self._approvals.items()
                if t == tenant
                and (status is None or a.status == status)
                and (run_id is None or a.run_id == run_id)
            ]
            found.sort(key=lambda a: a.created_at)  # oldest first; ties keep creation order
            return [copy.deepcopy(a) for a in found]

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
        entries = _outbox.prepare_entries(outbox)
        payloads = _event_payloads(events)
        with self._lock:
            self._check_open()
            current = self._approval(tenant, approval_id)
            if current.status != "pending":
                raise _codec.already_decided(
                    approval_id, current.status, current.decision, current.expires_at
                )
            current.status = _codec.status_after(new)
            current.decision = new
            self._add_outbox(entries)
            self._add_events(tenant, current.run_id, payloads)
            return copy.deepcopy(current)

    def _add_events(
        self, tenant: str, run_id: str, payloads: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Append to a run's log; the caller holds the lock."""
        if not payloads:
            return
        ts = time.time()
        log = self._events.setdefault((tenant, run_id), [])
        for kind, payload in payloads:
            log.append(
                StoredEvent(
                    tenant=tenant, run_id=run_id, seq=len(log) + 1, kind=kind, data=payload, ts=ts
                )
            )

    def _approval(self, tenant: str, approval_id: str) -> ApprovalRecord:
        try:
            return self._approvals[(tenant, approval_id)]
        except KeyError:
            raise NotFoundError("approval", approval_id) from None

    # -- exactly-once calls ----------------------------------------------

    async def begin_call(self, tenant: str, run_id: str, call_id: str) -> bool:
        with self._lock:
            self._check_open()
            key = (tenant, run_id, call_id)
            if key in self._calls:
                return False
            self._calls[key] = CallRecord(
                tenant=tenant,
                run_id=run_id,
                call_id=call_id,
                status="executing",
                started_at=time.time(),
            )
            return True

    async def finish_call(
        self, tenant: str, run_id: str, call_id: str, result: Mapping[str, Any]
    ) -> None:
        payload = _codec.normalize(dict(result), what=f"result of call {call_id!r}")
        with self._lock:
            self._check_open()
            record = self._calls.get((tenant, run_id, call_id))
            if record is None:
                raise NotFoundError("call", call_id)
            if record.status == "done":
                raise ConflictError(
                    f"call {call_id!r} of run {run_id!r} was already finished; a call finishes once."
                )
            record.status = "done"
            record.result = payload

    async def get_call(self, tenant: str, run_id: str, call_id: str) -> CallRecord | None:
        with self._lock:
            self._check_open()
            record = self._calls.get((tenant, run_id, call_id))
            return None if record is None else copy.deepcopy(record)

    # -- webhook outbox ---------------------------------------------------

    def _add_outbox(self, entries: Sequence[OutboxEntry]) -> None:
        for entry in entries:  # an id already present is the same event to the same URL
            self._outbox.setdefault(entry.id, copy.deepcopy(entry))

    async def claim_outbox(self, *, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        _outbox.check_claim(lease_s, limit)
        with self._lock:
            self._check_open()
            due = [
                e
                for e in self._outbox.values()
                if e.status == "pending" and e.next_attempt_at <= now
            ]
            due.sort(key=lambda e: e.created_at)  # stable: ties keep creation order
            claimed = due[:limit]
            for entry in claimed:
                entry.next_attempt_at = now + lease_s
            return [copy.deepcopy(e) for e in claimed]

    async def record_outbox_attempt(self, entry: OutboxEntry) -> None:
        _outbox.check_outbox_status(entry.status)
        with self._lock:
            self._check_open()
            stored = self._outbox.get(entry.id)
            if stored is None:
                raise NotFoundError("outbox entry", entry.id)
            stored.status = entry.status
            stored.attempts = entry.attempts
            stored.next_attempt_at = entry.next_attempt_at
            stored.last_error = entry.last_error
            stored.finished_at = entry.finished_at

    async def list_outbox(
        self, *, tenant: str | None = None, status: str | None = None
    ) -> list[OutboxEntry]:
        if status is not None:
            _outbox.check_outbox_status(status)
        with self._lock:
            self._check_open()
            found = [
                e
                for e in self._outbox.values()
                if (tenant is None or e.tenant == tenant) and (status is None or e.status == status)
            ]
            found.sort(key=lambda e: e.created_at)
            return [copy.deepcopy(e) for e in found]

    # -- retention and counts ---------------------------------------------

    async def prune_runs(
        self, *, ended_before: float, batch_size: int = DEFAULT_PRUNE_BATCH
    ) -> int:
        _codec.check_batch_size(batch_size)
        deleted = 0
        while True:
            with self._lock:
                self._check_open()
                doomed = [
                    key
                    for key, run in self._runs.items()
                    if run.status in ENDED_STATUSES and run.updated_at < ended_before
                ][:batch_size]
                for key in doomed:
                    del self._runs[key]
                    self._events.pop(key, None)
                gone = set(doomed)
                for call_key in [k for k in self._calls if (k[0], k[1]) in gone]:
                    del self._calls[call_key]
                for approval_key, approval in list(self._approvals.items()):
                    if (approval.tenant, approval.run_id) in gone and approval.status != "pending":
                        del self._approvals[approval_key]
            deleted += len(doomed)
            if len(doomed) < batch_size:
                return deleted
            await asyncio.sleep(0)  # let live runs in between batches

    async def count_runs(self, *, status: str | None = None) -> int:
        if status is not None:
            _codec.check_run_status(status)
        with self._lock:
            self._check_open()
            return sum(1 for r in self._runs.values() if status is None or r.status == status)

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True


def _event_payloads(
    events: Sequence[tuple[str, Mapping[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    return [
        (kind, _codec.normalize(dict(data), what=f"data of event {kind!r}"))
        for kind, data in events
    ]
