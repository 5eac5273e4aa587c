"""Run history read back from the store: lists, one run in detail, its events, usage, pruning.

The same functions back ``penguiflow-agents runs ...`` and the service's
``GET /v1/runs`` routes. Every function that takes a tenant sees only that
tenant's runs: a run id of another tenant is ``NotFoundError``, exactly like
an unknown one.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.planner._records import TERMINAL
from penguiflow_agents.planner._state import RunState
from penguiflow_agents.planner._types import RunResult
from penguiflow_agents.store._base import (
    DEFAULT_PRUNE_BATCH,
    RUN_STATUSES,
    ApprovalRecord,
    RunRecord,
    StateStore,
    StoredEvent,
)

__all__ = [
    "RunDetail",
    "RunSummary",
    "UsageReport",
    "event_doc",
    "list_runs",
    "prune_runs",
    "run_events",
    "show_run",
    "usage",
]


def _result(record: RunRecord) -> RunResult:
    """Where a stored run stands: its result when ended, its state so far otherwise."""
    state = record.state if isinstance(record.state, dict) else {}
    stored = state.get("result")
    if isinstance(stored, dict):
        return RunResult.from_dict(stored)
    if state.get("v") is not None and "messages" in state:
        try:
            status = record.status if record.status in RUN_STATUSES else "running"
            return RunState.from_dict(state, run_id=record.run_id).result(record.run_id, status)
        except Exception:  # a damaged state still lists, with what the record says
            pass
    return RunResult(status=record.status, run_id=record.run_id, model=record.model)


@dataclass(slots=True, kw_only=True)
class RunSummary:
    """One line of ``runs list``."""

    run_id: str
    status: str
    principal: str
    model: str
    query: str
    created_at: float
    updated_at: float
    steps: int
    tools: list[str]
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    session_id: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Start to end (pauses included) for an ended run; None while it runs or waits."""
        return self.updated_at - self.created_at if self.status in TERMINAL else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "principal": self.principal,
            "model": self.model,
            "query": self.query,
            "session_id": self.session_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "duration_s": self.duration_s,
            "steps": self.steps,
            "tools": list(self.tools),
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
            "cost": self.cost,
        }


def _summary(record: RunRecord, result: RunResult) -> RunSummary:
    tools: list[str] = []
    for step in result.steps:
        if step.tool not in tools:
            tools.append(step.tool)
    return RunSummary(
        run_id=record.run_id,
        status=record.status,
        principal=record.principal,
        model=record.model,
        query=record.query,
        session_id=record.session_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
        steps=len(result.steps),
        tools=tools,
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        cost=result.cost,
    )


async def list_runs(
    store: StateStore,
    tenant: str,
    *,
    status: str | None = None,
    since: float | None = None,
    tool: str | None = None,
    limit: int | None = None,
) -> list[RunSummary]:
    """The tenant's runs, newest first: of ``status``, created at or after ``since``
    (``time.time()``), that called ``tool`` (a namespaced name or a glob such as ``files.*``)."""
    import fnmatch

    if status is not None and status not in RUN_STATUSES:
        raise UserError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}.")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive integer, got {limit!r}.")
    records = await store.list_runs(tenant, status=status)
    out: list[RunSummary] = []
    for record in reversed(records):
        if since is not None and record.created_at < since:
            continue
        summary = _summary(record, _result(record))
        if tool is not None and not any(fnmatch.fnmatchcase(t, tool) for t in summary.tools):
            continue
        out.append(summary)
        if limit is not None and len(out) >= limit:
            break
    return out


@dataclass(slots=True, kw_only=True)
class RunDetail:
    """``runs show``: the run, its calls, its approvals and where time went."""

    summary: RunSummary
    result: RunResult
    approvals: list[ApprovalRecord] = field(default_factory=list)
    events: int = 0
    tool_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        doc = self.summary.to_dict()
        doc.update(
            answer=self.result.answer,
            error=self.result.error,
            calls=[
                {
                    "step": s.step,
                    "call_id": s.call_id,
                    "tool": s.tool,
                    "arguments": s.arguments,
                    "outcome": s.outcome,
                    "latency_s": s.latency_s,
                    "approval_id": s.approval_id,
                }
                for s in self.result.steps
            ],
            pending_approvals=[p.to_dict() for p in self.result.pending_approvals],
            approvals=[_approval_doc(a) for a in self.approvals],
            events=self.events,
            durations={
                "run_s": self.summary.duration_s,
                "tools_s": round(self.tool_seconds, 6),
                "approvals_wait_s": round(
                    sum(
                        a.decision.decided_at - a.created_at
                        for a in self.approvals
                        if a.decision is not None
                    ),
                    6,
                ),
            },
        )
        return doc


def _approval_doc(a: ApprovalRecord) -> dict[str, Any]:
    decision = a.decision
    return {
        "id": a.id,
        "call_id": a.call_id,
        "tool": a.tool,
        "status": a.status,
        "requested_by": a.requested_by,
        "decided_by": decision.decided_by if decision else None,
        "decision": decision.decision if decision else None,
        "created_at": a.created_at,
        "decided_at": decision.decided_at if decision else None,
        "wait_s": (decision.decided_at - a.created_at) if decision else None,
    }


async def show_run(store: StateStore, tenant: str, run_id: str) -> RunDetail:
    """One run of ``tenant`` in detail (``NotFoundError`` for an unknown or foreign id)."""
    record = await store.get_run(tenant, run_id)
    result = _result(record)
    events = await store.list_events(tenant, run_id)
    approvals = await store.list_approvals(tenant, run_id=run_id)
    detail = RunDetail(
        summary=_summary(record, result), result=result, approvals=approvals, events=len(events)
    )
    detail.tool_seconds = sum(s.latency_s for s in result.steps)
    return detail


async def run_events(
    store: StateStore, tenant: str, run_id: str, *, after_seq: int = 0
) -> list[StoredEvent]:
    """The run's stored events after ``after_seq`` (``NotFoundError`` for an unknown or
    foreign run: events are only shown for a run the tenant owns)."""
    await store.get_run(tenant, run_id)
    return await store.list_events(tenant, run_id, after_seq=after_seq)


def event_doc(event: StoredEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "kind": event.kind,
        "ts": event.ts,
        "run_id": event.run_id,
        "data": event.data,
    }


@dataclass(slots=True, kw_only=True)
class UsageReport:
    """``runs usage``: one tenant's consumption since a time."""

    tenant: str
    since: float
    runs: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    tool_calls: Counter[str] = field(default_factory=Counter)  # outcome -> count
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "since": self.since,
            "runs": {"total": sum(self.runs.values()), **dict(sorted(self.runs.items()))},
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
            "cost": round(self.cost, 6),
            "tool_calls": {
                "total": sum(self.tool_calls.values()),
                **dict(sorted(self.tool_calls.items())),
            },
            "by_model": self.by_model,
        }


async def usage(store: StateStore, tenant: str, *, since: float) -> UsageReport:
    """Runs (by status), tokens, cost and tool calls (by outcome) of the tenant's runs
    created at or after ``since``."""
    report = UsageReport(tenant=tenant, since=since)
    for record in await store.list_runs(tenant):
        if record.created_at < since:
            continue
        result = _result(record)
        report.runs[record.status] += 1
        report.prompt_tokens += result.usage.prompt_tokens
        report.completion_tokens += result.usage.completion_tokens
        report.cost += result.cost or 0.0
        for step in result.steps:
            report.tool_calls[step.outcome] += 1
        model = report.by_model.setdefault(
            record.model or "?", {"runs": 0, "total_tokens": 0, "cost": 0.0}
        )
        model["runs"] += 1
        model["total_tokens"] += result.usage.total_tokens
        model["cost"] = round(model["cost"] + (result.cost or 0.0), 6)
    return report


async def prune_runs(
    store: StateStore, *, older_than_s: float, batch_size: int = DEFAULT_PRUNE_BATCH
) -> int:
    """Delete the runs (every tenant) that ended more than ``older_than_s`` seconds ago, with
    their events, calls and decided approvals. Paused and running runs are never deleted."""
    if not older_than_s > 0:
        raise UserError(f"older_than_s must be positive, got {older_than_s!r}.")
    return await store.prune_runs(ended_before=time.time() - older_than_s, batch_size=batch_size)
