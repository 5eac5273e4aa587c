"""``TemporalEngine``: start runs on Temporal, decide their approvals, resume and cancel them.

Every method acts as a caller (``Headers``): a run or an approval of another
tenant fails exactly like an unknown id (``NotFoundError``), here and again
in the workflow's update validators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import (
    ApprovalError,
    ConflictError,
    NotFoundError,
    PenguiflowError,
    UserError,
)
from penguiflow_agents.planner import RunResult
from penguiflow_agents.store._base import ApprovalRecord, StateStore
from penguiflow_agents.temporal._activities import record_from_json
from penguiflow_agents.temporal._adapters import raise_ours
from penguiflow_agents.temporal._target import TemporalTarget
from penguiflow_agents.temporal._workflow import WORKFLOW, RunInput
from penguiflow_agents.webhooks import check_notify_url
from penguiflow_agents.worker._job import new_run_id

__all__ = ["TemporalEngine", "connect_client"]


async def connect_client(target: TemporalTarget) -> Client:
    """A client for ``target``; an unreachable service is a ``PenguiflowError`` saying where."""
    try:
        return await Client.connect(target.address, namespace=target.namespace)
    except Exception as exc:  # the SDK raises RuntimeError/RPCError: translate here
        raise PenguiflowError(
            f"cannot reach Temporal at {target.address!r} (namespace {target.namespace!r}): "
            f"{exc}. Start it (temporal server start-dev) or fix --engine."
        ) from None


class TemporalEngine:
    """The submitter's side of runs on Temporal (the run id is the workflow id)."""

    def __init__(self, client: Client, target: TemporalTarget) -> None:
        self.client = client
        self.target = target

    def __repr__(self) -> str:
        return f"TemporalEngine({str(self.target)!r})"

    @classmethod
    async def connect(cls, url: str | TemporalTarget) -> TemporalEngine:
        """Connect to ``temporal://HOST:PORT[?namespace=...&task_queue=...]``."""
        target = url if isinstance(url, TemporalTarget) else TemporalTarget.parse(url)
        return cls(await connect_client(target), target)

    async def submit(
        self,
        query: str,
        *,
        headers: Headers,
        model: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        max_steps: int = 12,
        deadline_s: float | None = 300.0,
        notify: Sequence[str] = (),
        trace: Mapping[str, str] | None = None,
    ) -> str:
        """Start a run of ``query`` as ``headers``; returns its run id (= workflow id).

        ``notify``: webhook URLs told of the run's approval requests and decisions,
        besides each rule's own and the worker's. ``trace``: the W3C trace context the
        run continues (``Telemetry.carrier()``): its activities' spans are children of it."""
        if not isinstance(query, str) or not query.strip():
            raise UserError(f"the query must be a non-empty string, got {query!r}.")
        for url in notify:
            try:
                check_notify_url(url)
            except ValueError as exc:
                raise UserError(f"notify URL: {exc}.") from None
        run_id = run_id or new_run_id()
        inp = RunInput(
            query=query,
            tenant=headers.tenant,
            principal=headers.principal,
            roles=list(headers.roles),
            model=model,
            session_id=session_id,
            task_queue=self.target.task_queue,
            heartbeat_s=self.target.heartbeat_s,
            max_steps=max_steps,
            deadline_s=deadline_s,
            notify=list(dict.fromkeys(notify)),
            trace=dict(trace or {}),
        )
        try:
            await self.client.start_workflow(
                WORKFLOW,
                inp,
                id=run_id,
                task_queue=self.target.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={"tenant": headers.tenant},
            )
        except WorkflowAlreadyStartedError:
            raise ConflictError(
                f"run {run_id!r} already exists; submit without a run id to start a new one."
            ) from None
        return run_id

    async def _handle(self, run_id: str, headers: Headers) -> WorkflowHandle[Any, Any]:
        """The run's workflow, if it is one of this tenant's; else ``NotFoundError``."""
        handle = self.client.get_workflow_handle(run_id)
        try:
            described = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise NotFoundError("run", run_id) from None
            raise PenguiflowError(f"Temporal refused to describe run {run_id!r}: {exc}") from None
        if (await described.memo_value("tenant", default=None)) != headers.tenant:
            raise NotFoundError("run", run_id)
        if described.status != WorkflowExecutionStatus.RUNNING:
            status = described.status.name.lower() if described.status else "unknown"
            raise ConflictError(f"run {run_id!r} has already ended ({status}).")
        return handle

    async def _update(self, handle: WorkflowHandle[Any, Any], name: str, arg: Any) -> Any:
        try:
            return await handle.execute_update(name, arg)
        except WorkflowUpdateFailedError as exc:
            raise_ours(exc.cause)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise ConflictError(f"run {handle.id!r} has already ended.") from None
            raise PenguiflowError(f"Temporal refused update {name!r}: {exc}") from None

    async def decide(
        self,
        store: StateStore,
        *,
        tenant: str,
        approval_id: str,
        principal: str,
        roles: Sequence[str],
        decision: str,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> ApprovalRecord:
        """Deliver a decision to the run waiting on it (the ``decide`` update).

        The approval is looked up for ``tenant`` (a foreign id is unknown); the
        workflow's validator refuses a decider the rule refuses, and the decision
        is recorded with every rule of ``ApprovalService.decide``.
        """
        approval = await store.get_approval(tenant, approval_id)
        try:
            handle = await self._handle(
                approval.run_id, Headers(tenant=tenant, principal=principal)
            )
        except (NotFoundError, ConflictError):
            raise ApprovalError(
                f"the run of approval {approval_id!r} ({approval.run_id!r}) is not waiting on "
                "Temporal (it ended, or it runs on another engine); decide it without --engine."
            ) from None
        data = await self._update(
            handle,
            "decide",
            {
                "tenant": tenant,
                "approval_id": approval_id,
                "principal": principal,
                "roles": list(roles),
                "decision": decision,
                "reason": reason,
                "arguments": None if arguments is None else dict(arguments),
            },
        )
        record: ApprovalRecord = record_from_json("approval", data)
        return record

    async def resume(self, run_id: str, *, headers: Headers) -> None:
        """Wake a paused run to settle decisions recorded without the engine."""
        handle = await self._handle(run_id, headers)
        await self._update(handle, "resume", headers.to_dict())

    async def cancel(self, run_id: str, *, headers: Headers) -> None:
        """End a running or paused run as cancelled."""
        handle = await self._handle(run_id, headers)
        await self._update(handle, "cancel", headers.to_dict())

    async def result(self, run_id: str, *, headers: Headers) -> RunResult:
        """Wait until the run ends (completed, failed or cancelled: not paused)."""
        handle = self.client.get_workflow_handle(run_id)
        try:
            described = await handle.describe()
        except RPCError:
            raise NotFoundError("run", run_id) from None
        if (await described.memo_value("tenant", default=None)) != headers.tenant:
            raise NotFoundError("run", run_id)
        return RunResult.from_dict(await handle.result())
