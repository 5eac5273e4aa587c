"""The tool calls of one model turn: check, gate, run concurrently, observe.

Each call the model asks for ends in exactly one of three ways:

- refused before running (malformed JSON, unknown or invisible tool, arguments
  that fail the tool's schema or have no canonical form): an error observation
  for the model;
- waiting for a human (it matches an approval rule): an approval request, and
  the run pauses once the step's other calls are done;
- run through the registry (concurrently, at most ``max_parallel`` at once,
  within the run's deadline): its result, truncated for the model if large.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from penguiflow_agents.llm._json_actions import INVALID_ACTION_NAME
from penguiflow_agents.llm._types import LLMToolCall
from penguiflow_agents.planner import _prompts
from penguiflow_agents.planner._authorization import authorization_wait, needs_authorization
from penguiflow_agents.planner._context import Deps, Run, Stop
from penguiflow_agents.planner._sampling import run_sampler
from penguiflow_agents.planner._types import (
    PendingApproval,
    Step,
    ToolActivity,
    ToolCallFinished,
    ToolCallStarted,
)
from penguiflow_agents.tools._arguments import ArgumentProblem, prepare_arguments
from penguiflow_agents.tools._types import (
    PREPARED_FOR_KEY,
    CallContext,
    EventSink,
    ToolErrorKind,
    ToolMedia,
    ToolResult,
    ToolSpec,
)

__all__ = ["Catalog", "StepOutcome", "call_tool", "media_parts", "observe", "run_calls"]

# How long cancelled in-flight calls get to unwind after the deadline passed.
_CANCEL_GRACE_S = 5.0


@dataclass(slots=True, kw_only=True)
class Catalog:
    """The tools of one step: everything registered, and what this caller sees."""

    by_name: Mapping[str, ToolSpec]  # every registered tool
    visible: Sequence[ToolSpec]  # the caller's view, as shown to the model

    @property
    def visible_names(self) -> list[str]:
        return [s.name for s in self.visible]


@dataclass(slots=True, kw_only=True)
class StepOutcome:
    """What the calls of one turn produced (filled in while the events stream)."""

    done: dict[str, str]  # call id -> tool message content
    waiting: list[PendingApproval]
    failures: int = 0
    last_error: str | None = None


def _activity_sink(run: Run, call_id: str, name: str) -> EventSink | None:
    """Forward a running call's progress and retries to the run's stream and observers."""
    if not run.hears(ToolActivity.kind):
        return None

    async def sink(event: str, data: Mapping[str, Any]) -> None:
        await run.publish(
            ToolActivity(
                run_id=run.run_id, call_id=call_id, tool=name, event=event, data=dict(data)
            )
        )

    return sink


async def call_tool(
    deps: Deps,
    run: Run,
    call_id: str,
    name: str,
    args: Mapping[str, Any],
    prepared_for: ToolSpec | None = None,
) -> ToolResult:
    """One call through the registry; a registry that raises is turned into a failure.

    ``prepared_for``: the spec ``args`` were validated and normalised against (``_check``);
    the registry does not do it again while that spec is current."""
    ctx = CallContext(
        headers=run.headers,
        run_id=run.run_id,
        call_id=call_id,
        trace_id=run.trace_id,
        deadline=run.deadline,
        on_event=_activity_sink(run, call_id, name),
        deps=deps.app_deps,
        store=deps.store,
    )
    elicitor = deps.elicitor
    if elicitor is not None:  # a tool server's question goes to the person behind the run

        async def ask(question: Any) -> Any:
            return await elicitor(question, ctx)

        ctx.extra["elicit"] = ask
    # A tool server's sampling request is answered with this run's model (if its manifest allows).
    ctx.extra["sample"] = run_sampler(deps, run, call_id)
    if prepared_for is not None:
        ctx.extra[PREPARED_FOR_KEY] = prepared_for
    clock = run.clock
    start = clock.monotonic()
    try:
        result = await deps.registry.call(name, args, ctx)
    except Exception as exc:  # the catalog contract says never; keep the run alive anyway
        result = ToolResult.failure(
            name, ToolErrorKind.TOOL_ERROR, f"the tool raised {type(exc).__name__}: {exc}"
        )
    result.latency_s = clock.monotonic() - start
    if result.ok and result.media:  # shown to the model when the step closes
        _keep_media(deps, run, call_id, name, result)
    return result


def _keep_media(deps: Deps, run: Run, call_id: str, name: str, result: ToolResult) -> None:
    """Keep the call's images for the model, within the run's ``max_image_bytes``; past it
    they are left out and the result's text says so (the conversation, stored at every
    checkpoint and sent with every model turn, does not grow without bound)."""
    st = run.state
    size = sum(m.size for m in result.media)
    if st.media_bytes + size > deps.max_image_bytes:
        note = (
            f"[the {len(result.media)} image(s) of this result were not attached: the run "
            f"already shows the model {st.media_bytes} bytes of images and allows "
            f"{deps.max_image_bytes} (max_image_bytes)]"
        )
        if isinstance(result.output, str):
            result.output = f"{result.output}\n{note}"
        result.media = ()
        return
    st.media_bytes += size
    st.media[call_id] = media_parts(call_id, name, result.media)


def media_parts(call_id: str, name: str, media: Sequence[ToolMedia]) -> list[dict[str, Any]]:
    """A label naming the call, then its images as image_url content parts."""
    label = f"The image{'s' if len(media) > 1 else ''} returned by call {call_id} ({name}):"
    return [{"type": "text", "text": label}, *(m.part() for m in media)]


def observe(
    deps: Deps,
    catalog: Catalog,
    step: int,
    call_id: str,
    name: str,
    args: dict[str, Any],
    result: ToolResult,
) -> tuple[Step, str]:
    """The trajectory entry (whole result) and the model's view (truncated) of a result."""
    if result.ok:
        content = _prompts.render_output(result.output)
        record = Step(
            tool=name,
            arguments=args,
            outcome="ok",
            result=result.output,
            latency_s=result.latency_s,
            call_id=call_id,
            step=step,
        )
    else:
        kind = result.error_kind or ToolErrorKind.TOOL_ERROR
        spec = catalog.by_name.get(name)
        if kind == ToolErrorKind.INVALID_ARGUMENTS and spec is not None:
            content = _prompts.invalid_arguments(name, result.error or "", spec.input_schema)
        elif kind == ToolErrorKind.NOT_FOUND:
            content = _prompts.not_available(name, catalog.visible_names)
        else:
            content = _prompts.tool_failed(str(kind), result.error)
        record = Step(
            tool=name,
            arguments=args,
            outcome=str(kind),
            result=result.error,
            latency_s=result.latency_s,
            call_id=call_id,
            step=step,
        )
    return record, _prompts.truncate(content, deps.max_result_chars)


def _refusal(
    step: int, call: LLMToolCall, outcome: str, content: str, limit: int
) -> tuple[Step, str]:
    record = Step(
        tool=call.name,
        arguments=dict(call.arguments or {}),
        outcome=outcome,
        result=content,
        call_id=call.id,
        step=step,
    )
    return record, _prompts.truncate(content, limit)


@dataclass(frozen=True, slots=True)
class _Ready:
    """A call that may run now, with its canonical arguments."""

    spec: ToolSpec
    call: LLMToolCall


@dataclass(slots=True)
class _ApprovalBudget:
    """How many more approval requests this turn may open (per run, per tenant)."""

    run_left: int
    tenant_left: int


async def _tenant_approvals_left(deps: Deps, run: Run) -> int:
    if deps.approvals is None:
        return 0
    pending = await deps.store.list_approvals(run.headers.tenant, status="pending")
    now = deps.clock.time()
    open_now = sum(1 for r in pending if r.expires_at >= now)
    return deps.max_pending_approvals_per_tenant - open_now


async def _check(
    deps: Deps,
    run: Run,
    catalog: Catalog,
    step: int,
    call: LLMToolCall,
    budget: _ApprovalBudget | None = None,
) -> tuple[Step, str] | PendingApproval | _Ready:
    """A refusal, an approval request, or a call that may run now.

    The arguments are validated and normalised (``prepare_arguments``) before
    the policy's ``when`` sees them; the approval binds, shows and the tool
    runs with those canonical arguments, never the raw ones.
    """
    limit = deps.max_result_chars
    spec = catalog.by_name.get(call.name)
    if spec is None and call.name == INVALID_ACTION_NAME and call.parse_error is not None:
        content = _prompts.invalid_action(
            call.parse_error, call.raw_arguments, catalog.visible_names
        )
        return _refusal(step, call, "invalid_arguments", content, limit)
    if spec is None:
        return _refusal(
            step, call, "not_found", _prompts.not_available(call.name, catalog.visible_names), limit
        )
    policies = deps.policies
    if policies is not None and not policies.is_visible(call.name, run.headers):
        await deps.store.append_event(
            run.headers.tenant,
            run.run_id,
            "policy_denied",
            {
                "tool": call.name,
                "call_id": call.id,
                "step": step,
                "principal": run.headers.principal,
                "roles": list(run.headers.roles),
            },
        )
        # Same words as for an unknown tool: the model cannot probe what exists.
        return _refusal(
            step, call, "denied", _prompts.not_available(call.name, catalog.visible_names), limit
        )
    if call.arguments is None:
        content = _prompts.malformed_arguments(
            call.name,
            call.parse_error or "not a JSON object",
            call.raw_arguments,
            spec.input_schema,
        )
        return _refusal(step, call, "invalid_arguments", content, limit)
    prepared = prepare_arguments(spec, call.arguments)
    if isinstance(prepared, ArgumentProblem):  # never gate, never run a call that cannot run
        problem = f"invalid arguments for {call.name!r}: {prepared.message}"
        content = _prompts.invalid_arguments(call.name, problem, spec.input_schema)
        return _refusal(step, call, "invalid_arguments", content, limit)
    call = dataclasses.replace(call, arguments=prepared)
    if policies is None or deps.approvals is None:
        return _Ready(spec, call)
    rule = policies.approval_rule(call.name, prepared, run.headers, risk=spec.risk)
    if rule is None:
        return _Ready(spec, call)
    if budget is not None:
        if budget.run_left <= 0 or budget.tenant_left <= 0:
            scope = "this run" if budget.run_left <= 0 else f"tenant {run.headers.tenant!r}"
            limit_n = (
                deps.max_pending_approvals_per_run
                if budget.run_left <= 0
                else deps.max_pending_approvals_per_tenant
            )
            content = _prompts.too_many_approvals(call.name, scope, limit_n)
            return _refusal(step, call, "too_many_approvals", content, limit)
        budget.run_left -= 1
        budget.tenant_left -= 1
    record = await deps.approvals.request(
        headers=run.headers,
        run_id=run.run_id,
        call_id=call.id,
        spec=spec,
        arguments=prepared,
        rule=rule,
    )
    return PendingApproval(
        id=record.id,
        tool=call.name,
        arguments=dict(prepared),
        call_id=call.id,
        approvers=list(record.approvers),
        reason=rule.reason,
        expires_at=record.expires_at,
    )


async def _tally(out: StepOutcome, record: Step, content: str, run: Run) -> None:
    out.done[record.call_id] = content
    run.state.steps.append(record)
    if not record.ok:
        out.failures += 1
        out.last_error = content
    if run.call_finished(record):
        finished = ToolCallFinished(run_id=run.run_id, record=record)
        if not run.tell(finished):
            await run.publish(finished)


async def _prior_approvals(deps: Deps, run: Run) -> dict[str, PendingApproval]:
    """call id -> the approval a dead owner already requested for it in this run."""
    if deps.approvals is None:
        return {}
    records = await deps.store.list_approvals(run.headers.tenant, run_id=run.run_id)
    return {
        r.call_id: PendingApproval(
            id=r.id,
            tool=r.tool,
            arguments=dict(r.arguments),
            call_id=r.call_id,
            approvers=list(r.approvers),
            reason=r.rule.get("reason"),
            expires_at=r.expires_at,
        )
        for r in records
    }


async def run_calls(
    deps: Deps,
    run: Run,
    catalog: Catalog,
    step: int,
    calls: Sequence[LLMToolCall],
    out: StepOutcome,
    *,
    recovering: bool = False,
) -> None:
    """Check, gate and run the calls of one turn; events go to ``run.emit`` as calls finish.

    ``recovering``: the step was in flight when the run's previous owner died.
    Calls with a result in ``out.done`` are settled; a call that already has an
    approval request waits for it (no second request); every other call that may
    run could have been running when the owner died, so it runs again only if its
    tool is idempotent (or resumable: it reattaches to the first call's work), else
    the model is told its outcome is unknown.
    """
    runnable: list[LLMToolCall] = []
    specs: dict[str, ToolSpec] = {}  # call id -> the spec its arguments were prepared for
    prior = await _prior_approvals(deps, run) if recovering else {}
    cap = deps.max_calls_per_turn
    budget = _ApprovalBudget(
        run_left=deps.max_pending_approvals_per_run - len(out.waiting),
        tenant_left=await _tenant_approvals_left(deps, run),
    )
    for index, call in enumerate(calls):
        if call.id in out.done:
            continue
        if call.id in prior:
            out.waiting.append(prior[call.id])
            continue
        if index >= cap:  # the model sees why, and may ask again in a later turn
            content = _prompts.too_many_calls(call.name, len(calls), cap)
            await _tally(
                out, *_refusal(step, call, "too_many_calls", content, deps.max_result_chars), run
            )
            continue
        checked = await _check(deps, run, catalog, step, call, budget)
        if isinstance(checked, _Ready):
            if recovering and not (checked.spec.idempotent or checked.spec.resumable):
                content = _prompts.unknown_outcome(call.name)
                await _tally(
                    out,
                    *_refusal(step, call, "unknown", content, deps.max_result_chars),
                    run,
                )
                continue
            runnable.append(checked.call)
            specs[checked.call.id] = checked.spec
        elif isinstance(checked, PendingApproval):
            out.waiting.append(checked)
        else:
            await _tally(out, checked[0], checked[1], run)
    if not runnable:
        return
    if run.hears(ToolCallStarted.kind):
        for call in runnable:
            await run.publish(
                ToolCallStarted(
                    run_id=run.run_id,
                    step=step,
                    call_id=call.id,
                    tool=call.name,
                    arguments=call.arguments or {},
                )
            )
    if len(runnable) > 1:
        await _run_parallel(deps, run, catalog, step, runnable, out, specs)
        return
    call = runnable[0]
    args = dict(call.arguments or {})
    try:
        async with run.deadline_scope():
            result = await call_tool(deps, run, call.id, call.name, args, specs.get(call.id))
    except TimeoutError:
        if not run.past_deadline():
            raise
        _cancelled(deps, run, catalog, step, [call], out)
        raise _deadline_stop(run, [call.name]) from None
    if needs_authorization(result):  # nothing ran: the run waits for the owner to authorize
        out.waiting.append(await authorization_wait(deps, run, call.id, call.name, args, result))
        return
    await _tally(out, *observe(deps, catalog, step, call.id, call.name, args, result), run)
    if not result.ok and run.past_deadline():  # the registry cut the call at the deadline
        raise _deadline_stop(run, [call.name])


async def _run_parallel(
    deps: Deps,
    run: Run,
    catalog: Catalog,
    step: int,
    calls: list[LLMToolCall],
    out: StepOutcome,
    specs: Mapping[str, ToolSpec],
) -> None:
    slots = asyncio.Semaphore(deps.max_parallel)

    async def bounded(call: LLMToolCall) -> ToolResult:
        async with slots:
            return await call_tool(
                deps, run, call.id, call.name, dict(call.arguments or {}), specs.get(call.id)
            )

    tasks = {asyncio.create_task(bounded(c)): c for c in calls}
    pending = set(tasks)
    failed: list[str] = []
    try:
        while pending:
            remaining = run.remaining()
            done, pending = await asyncio.wait(
                pending,
                timeout=None if remaining is None else max(remaining, 0.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:  # the run's deadline passed with calls in flight
                late = [tasks[t] for t in pending]
                _cancelled(deps, run, catalog, step, late, out)
                raise _deadline_stop(run, [c.name for c in late])
            for task in done:
                call = tasks[task]
                result = task.result()
                args = dict(call.arguments or {})
                if needs_authorization(result):
                    out.waiting.append(
                        await authorization_wait(deps, run, call.id, call.name, args, result)
                    )
                    continue
                if not result.ok:
                    failed.append(call.name)
                await _tally(
                    out, *observe(deps, catalog, step, call.id, call.name, args, result), run
                )
        if failed and run.past_deadline():  # the registry cut calls at the deadline
            raise _deadline_stop(run, failed)
    finally:
        if pending:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=_CANCEL_GRACE_S)


def _cancelled(
    deps: Deps,
    run: Run,
    catalog: Catalog,
    step: int,
    calls: Sequence[LLMToolCall],
    out: StepOutcome,
) -> None:
    for call in calls:
        result = ToolResult.failure(
            call.name,
            ToolErrorKind.CANCELLED,
            "the run's deadline passed while the call was running",
        )
        record, content = observe(
            deps, catalog, step, call.id, call.name, dict(call.arguments or {}), result
        )
        out.done[call.id] = content
        run.state.steps.append(record)


def _deadline_stop(run: Run, names: Sequence[str]) -> Stop:
    return Stop(
        "failed",
        f"the run's deadline of {run.deadline_s} s passed while calling {', '.join(names)}; "
        "the calls in flight were cancelled. Raise deadline_s or use faster tools.",
    )
