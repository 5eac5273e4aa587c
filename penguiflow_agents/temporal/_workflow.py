"""``RunWorkflow``: one planner run as a Temporal workflow (workflow id = run id).

The workflow code is the planner's own loop (``planner._hosted``) over the
seams of ``_adapters``: model turns and tool calls are activities, the store
is reached through local activities, time and random ids come from the
workflow. While the run waits for approvals it costs nothing: the workflow
waits on a durable timer (the earliest expiry) or the ``decide`` update.

Updates (each refused, by its validator, like an unknown id when it names
another tenant):

- ``decide``: an approval decision. The validator refuses a decider the
  approval's rule refuses (not an approver, or the requester); the handler
  records it with ``ApprovalService.decide`` in a local activity (every rule
  of today: expiry, edits, racing deciders; the webhook outbox entries of the
  run's notify URLs in the same store write) and wakes the run;
- ``resume``: wake a paused run to settle decisions recorded elsewhere, or a
  call that waited for an authorization (after ``auth login``);
- ``cancel``: end the run as cancelled (in-flight activities are cancelled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from penguiflow_agents._identity import Headers, principal_key
    from penguiflow_agents.approvals import may_decide
    from penguiflow_agents.exceptions import PenguiflowError
    from penguiflow_agents.planner import ReactPlanner, RunResult
    from penguiflow_agents.planner import _hosted as hosted
    from penguiflow_agents.planner._context import Run
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.store._base import ApprovalRecord
    from penguiflow_agents.temporal._activities import DECIDE, SETUP
    from penguiflow_agents.temporal._adapters import (
        ActivityCatalog,
        ActivityLLM,
        ActivityStore,
        WorkflowClock,
        local,
    )

__all__ = ["WORKFLOW", "RunInput", "RunWorkflow"]

WORKFLOW = "penguiflow.run"
# The patch id under which a workflow writes a step's events with one local activity.
BATCHED_EVENTS = "penguiflow-batched-events"
# Past an approval's expiry, how long the run waits before settling it as expired.
EXPIRY_GRACE_S = 1.0


@dataclass(slots=True, kw_only=True)
class RunInput:
    """What ``submit`` starts a run with (JSON in the workflow's history)."""

    query: str
    tenant: str
    principal: str
    roles: list[str] = field(default_factory=list)
    model: str | None = None  # a --model value; None: the worker's default
    session_id: str | None = None
    trace_id: str | None = None
    task_queue: str = "penguiflow"
    heartbeat_s: float = 10.0
    max_steps: int = 12
    deadline_s: float | None = 300.0
    # Webhook URLs told of the run's approval requests and decisions (serve --notify),
    # besides each rule's own and the worker's (worker --notify).
    notify: list[str] = field(default_factory=list)
    # The submitter's W3C trace context: the activities' spans are its children.
    trace: dict[str, str] = field(default_factory=dict)


def _unknown(kind: str, ident: str) -> ApplicationError:
    # The words of NotFoundError, so a foreign id reads exactly like an unknown one.
    return ApplicationError(
        f"no {kind} with id {ident!r}", kind, ident, type="NotFoundError", non_retryable=True
    )


@workflow.defn(name=WORKFLOW)
class RunWorkflow:
    def __init__(self) -> None:
        self._tenant = ""
        self._approvals: dict[str, ApprovalRecord] = {}
        self._woken = False
        self._cancel: str | None = None
        self._stretch: asyncio.Task[RunResult] | None = None
        self._ended = False
        self._by: Headers | None = None
        self._policies_digest = ""
        self._policies: PolicySet | None = None
        self._notify: list[str] = []
        self._calls = 0  # tool calls scheduled in this run (their once-only keys)
        self._seen_events: dict[str, list[Any]] = {}  # per run: the event fence of its appends
        self._run: Run | None = None

    # -- the run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: RunInput) -> dict[str, Any]:
        self._tenant = inp.tenant
        headers = Headers(tenant=inp.tenant, principal=inp.principal, roles=inp.roles)
        run_id = workflow.info().workflow_id
        model = await self._setup(inp)
        planner = self._planner(inp, model)
        run = self._run = await hosted.start(
            planner,
            inp.query,
            headers=headers,
            run_id=run_id,
            session_id=inp.session_id,
            trace_id=inp.trace_id,
        )
        result = await self._drive(run, hosted.advance(planner, run))
        while result.status == "paused" and self._cancel is None:
            await self._wait(run)
            if self._cancel is not None:
                break
            model = await self._setup(inp)  # policies may have changed while it waited
            planner = self._planner(inp, model)
            result = await self._drive(run, hosted.proceed(planner, run, by=self._by))
        if result.status == "paused":  # cancelled while it waited for a decision
            result = await hosted.cancel(planner, run, self._cancel or "the run was cancelled.")
        self._ended = True
        return result.to_dict()

    async def _setup(self, inp: RunInput) -> str:
        setup = await local(SETUP, inp.model, self._policies_digest)
        if setup["policies"] is not None or self._policies is None:
            self._policies = PolicySet.from_documents(setup["policies"] or [])
            self._policies_digest = str(setup["policies_digest"])
        # the submitter's URLs, then the worker's (a history without them: none)
        self._notify = list(dict.fromkeys([*inp.notify, *(setup.get("notify") or [])]))
        return str(setup["model"])

    def _planner(self, inp: RunInput, model: str) -> ReactPlanner:
        def queue_of(source: str) -> str:
            return f"{inp.task_queue}.tools.{source}"

        return ReactPlanner(
            llm=ActivityLLM(model, heartbeat_s=inp.heartbeat_s, trace=inp.trace),
            registry=ActivityCatalog(
                queue_of=queue_of,
                heartbeat_s=inp.heartbeat_s,
                tenant=inp.tenant,
                trace=inp.trace,
                next_call=self._next_call,
            ),
            # A step's events in one local activity; runs started before that replay as they ran.
            store=ActivityStore(
                on_approval=self._remember,
                batch_events=workflow.patched(BATCHED_EVENTS),
                seen=self._seen_events,
            ),
            policies=self._policies,
            clock=WorkflowClock(),
            max_steps=inp.max_steps,
            deadline_s=inp.deadline_s,
            notify=self._notify,  # the outbox entries are written with the approval
            record_events=True,  # the event log (runs show, SSE) reads as on the other engines
        )

    def _next_call(self) -> int:
        self._calls += 1
        return self._calls

    def _remember(self, record: ApprovalRecord) -> None:
        self._approvals[record.id] = record

    async def _drive(self, run: Run, body: Coroutine[Any, Any, RunResult]) -> RunResult:
        """One stretch of the loop, in a task the ``cancel`` update can cancel."""
        self._stretch = asyncio.create_task(body)
        try:
            return await self._stretch
        except asyncio.CancelledError:
            if self._cancel is None:
                raise  # the workflow itself was cancelled (the planner recorded it)
            return run.state.result(run.run_id, "cancelled", error=self._cancel)
        finally:
            self._stretch = None

    async def _wait(self, run: Run) -> None:
        """Until a decision arrives, the earliest approval expires, or the run is cancelled.

        A wait for an authorization (OAuth) has no expiry: the run waits for the ``resume``
        update (``submit --resume``, ``POST /v1/runs/{id}/resume``) after ``auth login``.
        """
        paused = run.state.paused
        assert paused is not None
        expiries = [
            p.expires_at for p in paused.waiting if p.kind == "approval" and p.expires_at > 0
        ]
        timeout = None
        if expiries:
            seconds = max(min(expiries) - workflow.now().timestamp(), 0.0) + EXPIRY_GRACE_S
            timeout = timedelta(seconds=seconds)
        try:
            await workflow.wait_condition(
                lambda: self._woken or self._cancel is not None, timeout=timeout
            )
        except TimeoutError:
            pass  # an approval expired: settling the step tells the model so
        self._woken = False

    # -- updates ---------------------------------------------------------------------------

    @workflow.update(name="decide")
    async def decide(self, decision: dict[str, Any]) -> dict[str, Any]:
        try:
            # The run's notify URLs, never the caller's: a decision cannot redirect webhooks.
            record = await local(DECIDE, {**decision, "notify": self._notify}, attempts=1)
        except PenguiflowError as exc:
            from penguiflow_agents.temporal._activities import error_of

            raise error_of(exc) from None
        replayed = bool(record.pop("replayed", False))
        if replayed and not self._waits_for(str(decision["approval_id"])):
            return dict(record)  # the same decision again, for a request the run moved past
        self._by = Headers(
            tenant=self._tenant,
            principal=str(decision["principal"]),
            roles=list(decision.get("roles") or []),
        )
        self._woken = True
        return dict(record)

    def _waits_for(self, approval_id: str) -> bool:
        paused = self._run.state.paused if self._run is not None else None
        return paused is not None and any(p.id == approval_id for p in paused.waiting)

    @decide.validator
    def _check_decision(self, decision: dict[str, Any]) -> None:
        approval_id = str(decision.get("approval_id"))
        record = self._approvals.get(approval_id)
        if decision.get("tenant") != self._tenant or record is None:
            raise _unknown("approval", approval_id)
        if self._ended:
            raise ApplicationError(
                f"run {record.run_id!r} has ended; approval {approval_id!r} can no longer "
                "be decided.",
                type="ApprovalError",
                non_retryable=True,
            )
        principal = str(decision.get("principal"))
        roles = [str(r) for r in decision.get("roles") or []]
        requester = principal_key(principal) == principal_key(record.requested_by)
        if requester or not may_decide(record.approvers, principal, roles):
            who = ", ".join(record.approvers) or "nobody"
            raise ApplicationError(
                f"{principal!r} may not decide approval {approval_id!r}; it may be decided by: "
                f"{who} (never by its requester {record.requested_by!r}).",
                type="ApproverNotAllowedError",
                non_retryable=True,
            )

    @workflow.update(name="resume")
    async def resume(self, who: dict[str, Any]) -> None:
        self._by = Headers(
            tenant=self._tenant,
            principal=str(who.get("principal") or "anonymous"),
            roles=list(who.get("roles") or []),
        )
        self._woken = True

    @resume.validator
    def _check_resume(self, who: dict[str, Any]) -> None:
        if who.get("tenant") != self._tenant:
            raise _unknown("run", workflow.info().workflow_id)

    @workflow.update(name="cancel")
    async def cancel(self, who: dict[str, Any]) -> None:
        if self._cancel is None:
            self._cancel = f"the run was cancelled by {who.get('principal')!r}."
        if self._stretch is not None:
            self._stretch.cancel()

    @cancel.validator
    def _check_cancel(self, who: dict[str, Any]) -> None:
        if who.get("tenant") != self._tenant:
            raise _unknown("run", workflow.info().workflow_id)
