"""Runs that wait for a person to authorize a tool source (OAuth), then call once.

A call whose source needs the run owner's authorization first (no token, a
refused refresh) reached no server: its result has kind
``authorization_required``. The run then pauses on it as on an approval
(``PendingApproval`` with ``kind="authorization"``, the source, who must
authorize, and the authorization URL), durably, with an
``authorization_requested`` event. Once that person has authorized (``auth
login`` in any process, or the service's callback), resuming the run makes the
call: *exactly once*, as an approved call, with ``store.begin_call`` keyed by
the wait's id and its attempt; unless the tool is no longer visible, or the
policy now asks for an approval of the call (the model is told to call again). An attempt that meets ``authorization_required``
again (the person has not authorized yet) ran nothing: it is recorded, and the
run keeps waiting with the new URL for the next attempt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from penguiflow_agents.planner import _prompts
from penguiflow_agents.planner._context import Deps, Run, jsonable
from penguiflow_agents.planner._types import PendingApproval, Step
from penguiflow_agents.tools._types import ToolErrorKind, ToolResult, sha256_json

if TYPE_CHECKING:
    from penguiflow_agents.planner._calls import Catalog

__all__ = ["authorization_wait", "needs_authorization", "resolve_authorization"]

# Attempts made in one resume (each one after the previous was found decided).
_MAX_ATTEMPTS_PER_RESUME = 3


def needs_authorization(result: ToolResult) -> bool:
    return result.error_kind == ToolErrorKind.AUTHORIZATION_REQUIRED


async def authorization_wait(
    deps: Deps, run: Run, call_id: str, name: str, args: dict[str, Any], result: ToolResult
) -> PendingApproval:
    """The wait for a call that needs authorization, with its ``authorization_requested`` event."""
    info = _info(result)
    pending = PendingApproval(
        id="auth_" + sha256_json({"run": run.run_id, "call": call_id})[:20],
        kind="authorization",
        tool=name,
        arguments=dict(args),
        call_id=call_id,
        reason=info.get("reason"),
        source=info.get("source"),
        principal=info.get("principal"),
        url=info.get("url"),
    )
    await _event(deps, run, "authorization_requested", pending)
    return pending


async def resolve_authorization(
    deps: Deps, run: Run, catalog: Catalog, step: int, pending: PendingApproval
) -> tuple[Step, str] | None:
    """None (still waiting; ``pending`` updated), or the call's result for the model."""
    from penguiflow_agents.planner._calls import call_tool, observe  # _calls imports this module

    tenant, run_id = run.headers.tenant, run.run_id
    spec = catalog.by_name.get(pending.tool)
    policies = deps.policies
    if spec is None or (policies is not None and not policies.is_visible(spec.name, run.headers)):
        content = (
            f"Error (denied): the call of {pending.tool!r} was not run: the tool is no longer "
            "available to this caller."
        )
        await _event(deps, run, "authorization_applied", pending, outcome="denied")
        return _not_run(step, pending, "denied", content, deps.max_result_chars)
    if (
        policies is not None
        and deps.approvals is not None
        and policies.approval_rule(spec.name, pending.arguments, run.headers, risk=spec.risk)
        is not None
    ):
        # No rule gated it when it paused: the policy changed meanwhile. Never run it ungated.
        content = (
            f"Error (approval_required): the call of {pending.tool!r} was not run: the policy "
            "now asks for an approval of it; call the tool again to ask for one."
        )
        await _event(deps, run, "authorization_applied", pending, outcome="approval_required")
        return _not_run(step, pending, "approval_required", content, deps.max_result_chars)
    store = deps.store
    for _ in range(_MAX_ATTEMPTS_PER_RESUME):
        key = f"{pending.id}#{pending.attempt}"
        called = True
        if await store.begin_call(tenant, run_id, key):
            result = await call_tool(deps, run, pending.call_id, spec.name, pending.arguments)
            await store.finish_call(tenant, run_id, key, jsonable(result.to_dict()))
        else:
            earlier = await store.get_call(tenant, run_id, key)
            if earlier is None or earlier.status != "done" or earlier.result is None:
                # Begun by a process that died, or running elsewhere right now.
                if not spec.idempotent:
                    content = _prompts.unknown_outcome(spec.name)
                    await _event(deps, run, "authorization_applied", pending, outcome="unknown")
                    return _not_run(step, pending, "unknown", content, deps.max_result_chars)
                result = await call_tool(deps, run, pending.call_id, spec.name, pending.arguments)
            else:
                result, called = ToolResult.from_dict(earlier.result), False
        if needs_authorization(result):
            fresh = _info(result)
            pending.attempt += 1
            pending.url = fresh.get("url") or pending.url
            pending.reason = fresh.get("reason") or pending.reason
            if called:
                return None  # refused just now: the person has not authorized yet
            continue  # an earlier attempt's refusal, read back: try anew
        record, content = observe(
            deps, catalog, step, pending.call_id, spec.name, pending.arguments, result
        )
        await _event(deps, run, "authorization_applied", pending, outcome=record.outcome)
        return record, content
    return None


def _info(result: ToolResult) -> dict[str, Any]:
    structured = result.structured if isinstance(result.structured, dict) else {}
    info = structured.get("authorization")
    return dict(info) if isinstance(info, dict) else {}


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
    )
    return record, _prompts.truncate(content, limit)


async def _event(deps: Deps, run: Run, kind: str, pending: PendingApproval, **extra: Any) -> None:
    await deps.store.append_event(
        run.headers.tenant,
        run.run_id,
        kind,
        {
            "authorization_id": pending.id,
            "call_id": pending.call_id,
            "tool": pending.tool,
            "source": pending.source,
            "principal": pending.principal,
            "url": pending.url,
            "reason": pending.reason,
            **extra,
        },
    )
