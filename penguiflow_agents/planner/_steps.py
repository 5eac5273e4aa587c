"""The pieces of a step: ids, the assistant message, closing a step, counting errors, and
settling a step left open by a pause (its decided calls) or by a dead owner (its calls in flight).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm._types import LLMToolCall
from penguiflow_agents.planner._approved import Approved, execute_approved, resolve
from penguiflow_agents.planner._authorization import resolve_authorization
from penguiflow_agents.planner._calls import Catalog, StepOutcome, run_calls
from penguiflow_agents.planner._context import Deps, Run, Stop
from penguiflow_agents.planner._state import PausedStep, RunState
from penguiflow_agents.planner._types import Step, ToolCallFinished, ToolCallStarted
from penguiflow_agents.tools._arguments import ArgumentProblem, prepare_arguments

__all__ = [
    "StillWaiting",
    "assistant_message",
    "bound_arguments",
    "close_step",
    "count_errors",
    "has_effects",
    "recover_inflight",
    "settle_paused",
    "unique_ids",
]


def has_effects(
    deps: Deps, catalog: Catalog, calls: Sequence[LLMToolCall], headers: Headers
) -> bool:
    """Whether a call of this turn may run a tool that is not idempotent, or ask for approval."""
    policies = deps.policies
    for call in calls:
        spec = catalog.by_name.get(call.name)
        if spec is None or call.arguments is None:
            continue  # refused before running: no effect
        if not spec.idempotent:
            return True
        if deps.approvals is None or policies is None:
            continue
        # Rules match the arguments the tool reads: a tool that normalises its arguments
        # (e.g. a path's ``..``) is asked about their canonical form, as _calls gates it.
        arguments: Any = call.arguments
        if spec.normalize is not None:
            arguments = prepare_arguments(spec, call.arguments)
            if isinstance(arguments, ArgumentProblem):
                continue  # refused before running: no effect
        if policies.approval_rule(call.name, arguments, headers, risk=spec.risk) is not None:
            return True
    return False


def count_errors(deps: Deps, st: RunState, *, failed: bool, last_error: str | None) -> None:
    """Count a step in which every call failed; ``Stop`` after ``max_consecutive_errors``."""
    if not failed:
        st.consecutive_errors = 0
        return
    st.consecutive_errors += 1
    st.last_error = last_error
    limit = deps.max_consecutive_errors
    if st.consecutive_errors >= limit:
        raise Stop(
            "failed",
            f"every tool call failed in {st.consecutive_errors} consecutive steps "
            f"(max_consecutive_errors={limit}); the last error was: {last_error}",
        )


async def recover_inflight(deps: Deps, run: Run, catalog: Catalog) -> None:
    """Settle the step that was running when the run's previous owner died;
    raises ``StillWaiting`` if some of its calls wait for a decision."""
    st = run.state
    inflight = st.inflight
    assert inflight is not None
    out = StepOutcome(done=inflight.done, waiting=[])
    calls = inflight.calls
    await deps.store.append_event(
        run.headers.tenant,
        run.run_id,
        "step_recovered",
        {"step": inflight.step, "call_ids": [c.id for c in calls if c.id not in out.done]},
    )
    await run_calls(deps, run, catalog, inflight.step, calls, out, recovering=True)
    order = [c.id for c in calls]
    if out.waiting:
        st.paused = PausedStep(step=inflight.step, order=order, done=out.done, waiting=out.waiting)
        raise StillWaiting
    results = [s for s in st.steps if s.step == inflight.step]
    close_step(st, order, out.done)
    last = next((out.done[s.call_id] for s in reversed(results) if not s.ok), None)
    count_errors(deps, st, failed=bool(results) and not any(s.ok for s in results), last_error=last)


async def settle_paused(deps: Deps, run: Run, catalog: Catalog) -> None:
    """Settle the decided calls of the paused step; raises ``StillWaiting`` if some still wait."""
    st = run.state
    paused = st.paused
    assert paused is not None
    still = []
    for pending in paused.waiting:
        resolved: tuple[Step, str] | Approved | None
        if pending.kind == "authorization":  # the owner authorized? then the call runs, once
            resolved = await resolve_authorization(deps, run, catalog, paused.step, pending)
        else:
            resolved = await resolve(deps, run, catalog, paused.step, pending)
        if resolved is None:
            still.append(pending)
            continue
        if isinstance(resolved, Approved):
            if run.hears(ToolCallStarted.kind):
                await run.publish(
                    ToolCallStarted(
                        run_id=run.run_id,
                        step=paused.step,
                        call_id=pending.call_id,
                        tool=pending.tool,
                        arguments=resolved.arguments,
                    )
                )
            resolved = await execute_approved(deps, run, catalog, paused.step, resolved)
        record, content = resolved
        paused.done[pending.call_id] = content
        st.steps.append(record)
        if run.call_finished(record):
            finished = ToolCallFinished(run_id=run.run_id, record=record)
            if not run.tell(finished):
                await run.publish(finished)
    if still:
        paused.waiting = still
        raise StillWaiting
    results = [s for s in st.steps if s.step == paused.step]
    failed = bool(results) and not any(s.ok for s in results)
    close_step(st, paused.order, paused.done)
    last = next((paused.done[s.call_id] for s in reversed(results) if not s.ok), None)
    count_errors(deps, st, failed=failed, last_error=last)


# What of an oversized arguments text the run keeps (and shows the model back).
_OVERSIZED_KEPT_CHARS = 500


def bound_arguments(calls: Sequence[LLMToolCall], limit: int) -> Sequence[LLMToolCall]:
    """The calls, those whose arguments are over ``limit`` characters (``max_argument_chars``)
    made unreadable: refused as ``invalid_arguments`` with a reason the model sees, never
    validated, shown to a policy or an approver, run or stored whole (the run keeps the
    text's first characters). ``calls`` itself when none is over.

    The size is the text's length; a text over the limit that parsed is measured again as
    compact JSON without ``\\u`` escapes (a provider may escape every non-ASCII character,
    six characters for one), so only what the model really sent counts."""
    for call in calls:
        if len(call.raw_arguments) > limit:
            break
    else:
        return calls  # the common path: one len() per call
    bounded = []
    for call in calls:
        size = _size(call, limit)
        bounded.append(call if size <= limit else _oversized(call, size, limit))
    return bounded


def _size(call: LLMToolCall, limit: int) -> int:
    size = len(call.raw_arguments)
    if size <= limit or call.arguments is None:
        return size
    return len(json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":")))


def _oversized(call: LLMToolCall, size: int, limit: int) -> LLMToolCall:
    return LLMToolCall(
        id=call.id,
        name=call.name,
        arguments=None,
        raw_arguments=f"{call.raw_arguments[:_OVERSIZED_KEPT_CHARS]}... [{size} characters in all]",
        parse_error=(
            f"the arguments are {size} characters long, over this planner's limit of {limit} "
            "(max_argument_chars); send smaller arguments, or split the work over several calls"
        ),
    )


def unique_ids(calls: Sequence[LLMToolCall], step: int) -> list[LLMToolCall]:
    """The calls with non-empty ids unique within the turn (results are matched by id)."""
    if len(calls) == 1 and calls[0].id:
        return [calls[0]]
    seen: set[str] = set()
    out = []
    for i, call in enumerate(calls):
        ident = call.id or f"call_{step}_{i + 1}"
        while ident in seen:
            ident = f"{ident}_{i + 1}"
        seen.add(ident)
        if ident != call.id:
            call = LLMToolCall(
                id=ident,
                name=call.name,
                arguments=call.arguments,
                raw_arguments=call.raw_arguments,
                parse_error=call.parse_error,
            )
        out.append(call)
    return out


def assistant_message(content: str | None, calls: Sequence[LLMToolCall]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.raw_arguments
                    if c.arguments is None
                    else json.dumps(c.arguments, ensure_ascii=False),
                },
            }
            for c in calls
        ],
    }


def close_step(st: RunState, order: Sequence[str], done: dict[str, str]) -> None:
    """Append the step's tool messages in the order the model asked for the calls, then
    one user message with the images those calls returned (tool messages hold text only)."""
    for call_id in order:
        st.messages.append({"role": "tool", "tool_call_id": call_id, "content": done[call_id]})
    if st.media:
        parts = [p for call_id in order for p in st.media.get(call_id, ())]
        if parts:
            st.messages.append({"role": "user", "content": parts})
        st.media = {}
    st.paused = None
    st.inflight = None


class StillWaiting(Exception):
    """A settled step still has calls waiting for a decision: the run pauses."""
