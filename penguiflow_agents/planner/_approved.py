"""Turning the decision on a paused call into the tool result the model sees.

- still pending: the call keeps waiting (the run stays paused);
- rejected: the decider's reason is the tool's result; expired: says so;
- approved (or edited): the binding is checked again (still visible, same
  definition, same arguments, same policy version; edited arguments must be
  in the tool's canonical form, as the policy judged them); then the call runs
  *exactly once*: ``store.begin_call`` is the gate, keyed by the approval id.
  A call begun by a process that died before finishing it is not run again
  unless the tool is idempotent: the model is told its outcome is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from penguiflow_agents.approvals import iso_utc
from penguiflow_agents.exceptions import ConflictError
from penguiflow_agents.planner import _prompts
from penguiflow_agents.planner._calls import Catalog, call_tool, observe
from penguiflow_agents.planner._context import Deps, Run, jsonable
from penguiflow_agents.planner._observe import ApprovalResolved
from penguiflow_agents.planner._types import PendingApproval, Step
from penguiflow_agents.store._base import ApprovalRecord
from penguiflow_agents.tools._arguments import ArgumentProblem, prepare_arguments
from penguiflow_agents.tools._types import ToolResult, ToolSpec

__all__ = ["Approved", "execute_approved", "resolve"]


@dataclass(slots=True, kw_only=True)
class Approved:
    """An approved call whose binding still holds: run it."""

    pending: PendingApproval
    approval: ApprovalRecord
    spec: ToolSpec
    arguments: dict[str, Any]


def _not_run(
    step: int, pending: PendingApproval, outcome: str, content: str, limit: int
) -> tuple[Step, str]:
    record = Step(
        tool=pending.tool,
        arguments=dict(pending.arguments),
        outcome=outcome,
        result=content,
        call_id=pending.call_id,
        step=step,
        approval_id=pending.id,
    )
    return record, _prompts.truncate(content, limit)


async def resolve(
    deps: Deps, run: Run, catalog: Catalog, step: int, pending: PendingApproval
) -> tuple[Step, str] | Approved | None:
    """None (still pending), a result for the model (not run), or an approved call."""
    assert deps.approvals is not None
    tenant = run.headers.tenant
    approval = await deps.store.get_approval(tenant, pending.id)
    status = deps.approvals.effective_status(approval)
    limit = deps.max_result_chars
    if status == "pending":
        return None
    decision = approval.decision
    _resolved(run, pending, approval, status)
    if status == "expired":
        outcome, content = (
            "expired",
            f"Error (expired): the call of {pending.tool!r} was not run: its approval "
            f"{pending.id!r} expired at {iso_utc(approval.expires_at)} without a decision.",
        )
    elif status == "rejected":
        who = decision.decided_by if decision else "an approver"
        reason = (decision.reason if decision else None) or "no reason given"
        outcome, content = (
            "rejected",
            f"Error (rejected): the call of {pending.tool!r} was not run: {who!r} rejected it. "
            f"Reason: {reason}",
        )
    else:
        edited = (
            decision is not None and decision.decision == "edit" and decision.arguments is not None
        )
        arguments = (
            dict(decision.arguments or {}) if edited and decision else dict(pending.arguments)
        )
        spec = catalog.by_name.get(pending.tool)
        why = _edit_not_canonical(spec, arguments) if edited else None
        why = why or deps.approvals.check_binding(
            approval,
            spec=spec,
            arguments=arguments,
            headers=run.headers,
            run_id=run.run_id,
            call_id=pending.call_id,
        )
        if why is None and spec is not None:
            return Approved(pending=pending, approval=approval, spec=spec, arguments=arguments)
        outcome, content = "approval_void", f"Error (approval_void): {why or 'the tool is gone'}"
    await _applied(deps, run, pending, outcome, executed_here=False)
    return _not_run(step, pending, outcome, content, limit)


def _edit_not_canonical(spec: ToolSpec | None, arguments: dict[str, Any]) -> str | None:
    """Why an approver's edited arguments cannot run as approved, or None.

    The policy checked the edit as written; if the tool would read it
    differently (``/notes/../shared/x`` is ``/shared/x``), the approval did not
    cover what would run, so it is void rather than silently normalised.
    """
    if spec is None:
        return None
    prepared = prepare_arguments(spec, arguments)
    if isinstance(prepared, ArgumentProblem):
        return f"the approver's edited arguments are refused by {spec.name!r}: {prepared.message}"
    if prepared != arguments:
        return (
            f"the approver's edited arguments for {spec.name!r} are not in canonical form (the "
            f"tool reads them as {_prompts.render_output(prepared)}); the approval is void and "
            "the call was not run. Call the tool again to ask for a new approval."
        )
    return None


async def execute_approved(
    deps: Deps, run: Run, catalog: Catalog, step: int, approved: Approved
) -> tuple[Step, str]:
    """Run an approved call at most once across every process sharing the store."""
    tenant, run_id = run.headers.tenant, run.run_id
    pending, spec, args = approved.pending, approved.spec, approved.arguments
    key = pending.id  # one approval, one execution
    store = deps.store
    ran_here = False
    if await store.begin_call(tenant, run_id, key):
        result = await call_tool(deps, run, pending.call_id, spec.name, args)
        ran_here = True
        await store.finish_call(tenant, run_id, key, jsonable(result.to_dict()))
    else:
        earlier = await store.get_call(tenant, run_id, key)
        if earlier is not None and earlier.status == "done" and earlier.result is not None:
            result = ToolResult.from_dict(
                earlier.result
            )  # it ran; a process died before recording more
        elif spec.idempotent:
            result = await call_tool(deps, run, pending.call_id, spec.name, args)
            ran_here = True
            try:
                await store.finish_call(tenant, run_id, key, jsonable(result.to_dict()))
            except ConflictError:
                pass  # the other execution finished first; ours was a harmless repeat
        else:
            content = _prompts.unknown_outcome(spec.name, approved=True)
            await _applied(deps, run, pending, "unknown", executed_here=False)
            return _not_run(step, pending, "unknown", content, deps.max_result_chars)
    record, content = observe(deps, catalog, step, pending.call_id, spec.name, args, result)
    if args != pending.arguments:
        record.arguments = args
        content = (
            f"(The approver edited the arguments to {_prompts.render_output(args)}.)\n{content}"
        )
    record.approval_id = pending.id
    await _applied(deps, run, pending, record.outcome, executed_here=ran_here)
    return record, content


def _resolved(run: Run, pending: PendingApproval, approval: ApprovalRecord, status: str) -> None:
    """Tell the run's observers how long the approval waited and how it ended."""
    observed = run.observed
    if observed is None or not observed.active:
        return
    if status == "expired":
        decided_at = approval.expires_at
    else:
        decided_at = approval.decision.decided_at if approval.decision else approval.created_at
    observed.event(
        ApprovalResolved(
            run_id=run.run_id,
            approval_id=approval.id,
            call_id=pending.call_id,
            tool=pending.tool,
            status=status,
            requested_at=approval.created_at,
            decided_at=decided_at,
        )
    )


async def _applied(
    deps: Deps, run: Run, pending: PendingApproval, outcome: str, *, executed_here: bool
) -> None:
    await deps.store.append_event(
        run.headers.tenant,
        run.run_id,
        "approval_applied",
        {
            "approval_id": pending.id,
            "call_id": pending.call_id,
            "tool": pending.tool,
            "outcome": outcome,
            "executed_here": executed_here,
        },
    )
