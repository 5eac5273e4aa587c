"""``TemporalExecutor``: ``serve --engine temporal://...`` starts runs as Temporal workflows.

The same ``RunExecutor`` seam as the in-process and bus executors, over the
public ``TemporalEngine`` the CLI uses: ``start`` submits a workflow (the run
id is the workflow id), ``resume`` and ``cancel`` are its updates, and
approval decisions go to the waiting workflow (``decide``) instead of the
store, so the run goes on by itself. The workflow records the run, its events
and its approvals in the store, so documents and event streams read the store
as for runs on workers. Every call acts as the caller: another tenant's run or
approval fails like an unknown one (``NotFoundError``, 404).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import NotFoundError
from penguiflow_agents.server._executor import RunRequest
from penguiflow_agents.store import StateStore
from penguiflow_agents.store._base import ApprovalRecord
from penguiflow_agents.worker import new_run_id

if TYPE_CHECKING:
    from penguiflow_agents.temporal import TemporalEngine

__all__ = ["TemporalExecutor"]

_ENDED = ("completed", "failed", "cancelled")


class TemporalExecutor:
    """Runs are workflows on Temporal, executed by ``worker --engine temporal://...``."""

    def __init__(
        self, engine: TemporalEngine, store: StateStore, *, notify: Sequence[str] = ()
    ) -> None:
        self.engine = engine
        self._store = store
        self._notify = tuple(notify)  # serve --notify: told of every run's approvals
        self._submitted: dict[tuple[str, str], str] = {}  # (tenant, run id) -> key id

    async def active(self, key_id: str) -> int:
        count = 0
        for (tenant, run_id), owner in list(self._submitted.items()):
            if owner != key_id:
                continue
            try:
                record = await self._store.get_run(tenant, run_id)
            except NotFoundError:
                count += 1  # no worker has recorded it yet
                continue
            if record.status == "running":
                count += 1
            else:
                self._submitted.pop((tenant, run_id), None)
        return count

    def is_queued(self, tenant: str, run_id: str) -> bool:
        return (tenant, run_id) in self._submitted

    async def settled(self, tenant: str, run_id: str) -> bool:
        return False  # it executes on a worker: follow its events in the store

    async def start(self, request: RunRequest) -> str:
        run_id = request.run_id or new_run_id()
        self._submitted[(request.headers.tenant, run_id)] = request.key_id
        try:
            await self.engine.submit(
                request.query,
                headers=request.headers,
                model=request.model,
                session_id=request.session_id,
                run_id=run_id,
                notify=self._notify,
                trace=request.trace,
            )
        except BaseException:
            self._submitted.pop((request.headers.tenant, run_id), None)
            raise
        return run_id

    async def resume(self, tenant: str, run_id: str, *, headers: Headers, key_id: str) -> None:
        record = await self._store.get_run(tenant, run_id)  # a foreign id is unknown
        if record.status in _ENDED:
            return
        self._submitted[(tenant, run_id)] = key_id
        await self.engine.resume(run_id, headers=headers)

    async def cancel(self, tenant: str, run_id: str, *, headers: Headers) -> None:
        await self.engine.cancel(run_id, headers=headers)

    async def decide(
        self,
        *,
        tenant: str,
        approval_id: str,
        principal: str,
        roles: Sequence[str],
        decision: str,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> ApprovalRecord:
        """Deliver a decision to the workflow waiting on it (it resumes by itself)."""
        return await self.engine.decide(
            self._store,
            tenant=tenant,
            approval_id=approval_id,
            principal=principal,
            roles=roles,
            decision=decision,
            reason=reason,
            arguments=arguments,
        )

    async def aclose(self) -> None:
        self._submitted.clear()
