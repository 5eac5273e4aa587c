"""One ``tools/call`` of the MCP gateway, as the caller may make it.

The checks are the planner's, at execution time: the tool must be visible to
the caller (a hidden tool is refused with the words used for an unknown one,
so a caller cannot probe what exists), the arguments are validated and
normalised (``prepare_arguments``) before any policy sees them, and the call
goes through ``ToolRegistry.call`` (the source's breaker, concurrency,
timeouts and retries).

A call that an approval rule gates is bound to its *call log*, a run id
derived from (tenant, principal, tool, canonical arguments): the same call
made again finds its approval there. It asks for one approval (the approvals
service binds it to the tool's definition hash, the arguments' hash and the
policy version), then waits up to ``mcp_approval_wait_s`` for the decision,
reporting progress while it waits. Approved: the binding is checked again and
the call runs *once* (``store.begin_call`` keyed by the approval id is the
gate, as for a planner's approved call); rejected: the decider's reason is
the error; undecided: an error naming the approval id, and the same call made
after the decision takes it up. A decision is used by one call only.

Every call appends one ``mcp_tool_call`` event to its call log, with the
caller (key id, principal, roles), the outcome and the approval id if any;
the approvals service appends ``approval_requested`` / ``approval_decided``
to the same log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from penguiflow_agents._identity import principal_key
from penguiflow_agents.approvals import iso_utc
from penguiflow_agents.server._auth import Caller
from penguiflow_agents.server._hub import wait_for
from penguiflow_agents.server._state import ServerState
from penguiflow_agents.store._base import ApprovalRecord
from penguiflow_agents.tools import CallContext, ToolResult, ToolSpec
from penguiflow_agents.tools._arguments import ArgumentProblem, prepare_arguments
from penguiflow_agents.tools._types import ToolMedia, sha256_json

__all__ = ["GatewayCalls", "Outcome", "Progress", "call_log_id"]

_log = structlog.get_logger("penguiflow_agents.server.mcp")

# Event kind of every gateway call in its call log.
CALL_EVENT = "mcp_tool_call"
# Prefix of call-log run ids (never a planner run's: those start with "run_").
CALL_LOG_PREFIX = "mcp_"
# Longest gap between two progress notifications while a call waits for its decision.
PROGRESS_EVERY_S = 5.0
# Longest wait for the event of a call its client cancelled (written under a shield).
RECORD_ON_CANCEL_S = 5.0
# Times a gated call starts over when identical calls took its decision first.
MAX_TAKEN = 3
# Pending approval requests a tenant may have open before gated calls are refused.
MAX_PENDING_PER_TENANT = 1000

Progress = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What the MCP client gets: a result (``ok``) or an error text, and the approval if any."""

    ok: bool
    text: str
    structured: Any = None
    outcome: str = "ok"
    approval_id: str | None = None
    # Images the tool returned (MCP image content, an http tool's image body), passed on to the
    # client as image content; never stored with the call's outcome.
    media: tuple[ToolMedia, ...] = ()


def call_log_id(tenant: str, principal: str, tool: str, arguments: Mapping[str, Any]) -> str:
    """The run id of the call log of (tenant, principal, tool, arguments)."""
    basis = json.dumps(
        [tenant, principal_key(principal), tool, sha256_json(dict(arguments))],
        separators=(",", ":"),
    )
    return CALL_LOG_PREFIX + hashlib.sha256(basis.encode()).hexdigest()[:32]


def unknown_tool(name: str) -> Outcome:
    """The refusal of a tool the caller cannot see, whether it exists or not."""
    return Outcome(ok=False, text=f"Unknown tool: {name}", outcome="not_found")


def _from_result(result: ToolResult, approval_id: str | None = None) -> Outcome:
    if result.ok:
        out = result.output
        text = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)
        structured = result.structured if isinstance(result.structured, dict) else None
        return Outcome(
            ok=True, text=text, structured=structured, approval_id=approval_id, media=result.media
        )
    return Outcome(
        ok=False,
        text=f"Error ({result.outcome}): {result.error}",
        outcome=result.outcome,
        approval_id=approval_id,
    )


def _edit_refusal(spec: ToolSpec, arguments: dict[str, Any]) -> str | None:
    """Why an approver's edited arguments cannot run as approved (not valid, or not canonical)."""
    prepared = prepare_arguments(spec, arguments)
    if isinstance(prepared, ArgumentProblem):
        return f"the approver's edited arguments are refused by {spec.name!r}: {prepared.message}"
    if prepared != arguments:
        return (
            f"the approver's edited arguments for {spec.name!r} are not in canonical form; the "
            "approval is void and the call was not run. Call the tool again to ask anew."
        )
    return None


class GatewayCalls:
    """``tools/call`` of the gateway over the server's registry, policies, approvals and store."""

    def __init__(self, state: ServerState) -> None:
        self._state = state

    async def spec_of(self, name: str) -> ToolSpec | None:
        registry = self._state.registry
        spec = registry.get(name)
        if spec is None and "." in name and name.partition(".")[0] in registry.sources:
            await registry.list_tools()  # its source was not listed yet
            spec = registry.get(name)
        return spec

    async def call(
        self,
        who: Caller,
        name: str,
        arguments: Mapping[str, Any],
        progress: Progress,
    ) -> Outcome:
        state = self._state
        headers = who.headers
        call_id = "mcpc_" + secrets.token_hex(8)
        started = time.monotonic()
        spec = await self.spec_of(name)
        visible = state.policies.is_visible(name, headers)
        log_id = call_log_id(headers.tenant, headers.principal, name, arguments)
        if spec is None or not visible:
            outcome = unknown_tool(name)
            if not visible and spec is not None:
                outcome.outcome = "denied"  # recorded; the caller sees "unknown"
                _log.warning(
                    "policy.call_refused", tool=name, tenant=headers.tenant, key_id=who.key_id
                )
            elif visible:  # a name the caller may use whose source is down: say why
                refusal = await state.registry.check(name, arguments)
                if refusal is not None and refusal.outcome == "unavailable":
                    outcome = _from_result(refusal)
            await self._record(who, log_id, call_id, name, arguments, outcome, started)
            return outcome
        prepared = prepare_arguments(spec, arguments)
        if isinstance(prepared, ArgumentProblem):
            outcome = Outcome(
                ok=False,
                text=f"Error (invalid_arguments): invalid arguments for {name!r}: "
                f"{prepared.message}",
                outcome="invalid_arguments",
            )
            await self._record(who, log_id, call_id, name, arguments, outcome, started)
            return outcome
        rule = state.policies.approval_rule(name, prepared, headers, risk=spec.risk)
        log_id = call_log_id(headers.tenant, headers.principal, name, prepared)
        try:
            if rule is None:
                result = await state.registry.call(
                    name, prepared, self._context(who, call_id, progress)
                )
                outcome = _from_result(result)
            else:
                outcome = await self._gated(who, log_id, call_id, spec, prepared, rule, progress)
        except asyncio.CancelledError:  # the client went away or cancelled: still recorded
            gone = Outcome(ok=False, text="cancelled", outcome="cancelled")
            with anyio.CancelScope(shield=True), anyio.move_on_after(RECORD_ON_CANCEL_S):
                try:
                    await self._record(who, log_id, call_id, name, prepared, gone, started)
                except Exception:
                    _log.exception("mcp.call_event_failed", tool=name)
            raise
        await self._record(who, log_id, call_id, name, prepared, outcome, started)
        return outcome

    def _context(self, who: Caller, call_id: str, progress: Progress) -> CallContext:
        async def on_event(kind: str, data: Mapping[str, Any]) -> None:
            if kind == "tool.progress" and isinstance(data.get("progress"), int | float):
                total = data.get("total")
                message = data.get("message")
                await progress(
                    float(data["progress"]),
                    float(total) if isinstance(total, int | float) else None,
                    str(message) if message is not None else None,
                )

        return CallContext(headers=who.headers, call_id=call_id, on_event=on_event)

    async def _record(
        self,
        who: Caller,
        log_id: str,
        call_id: str,
        name: str,
        arguments: Mapping[str, Any],
        outcome: Outcome,
        started: float,
    ) -> None:
        headers = who.headers
        await self._state.store.append_event(
            headers.tenant,
            log_id,
            CALL_EVENT,
            {
                "call_id": call_id,
                "tool": name,
                "arguments_sha256": sha256_json(dict(arguments)),
                "key_id": who.key_id,
                "principal": headers.principal,
                "roles": list(headers.roles),
                "outcome": outcome.outcome,
                "approval_id": outcome.approval_id,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
            },
        )

    # -- gated calls -------------------------------------------------------------------------

    async def _open_approval(self, tenant: str, log_id: str) -> ApprovalRecord | None:
        """The oldest approval of this call log that no call has used yet (not expired)."""
        store = self._state.store
        for record in await self._state.approvals.list(tenant, run_id=log_id):
            if record.status == "expired" or record.damaged is not None:
                continue
            if await store.get_call(tenant, log_id, record.id) is None:
                return record
        return None

    async def _gated(
        self,
        who: Caller,
        log_id: str,
        call_id: str,
        spec: ToolSpec,
        arguments: dict[str, Any],
        rule: Any,
        progress: Progress,
    ) -> Outcome:
        for _ in range(MAX_TAKEN):
            outcome = await self._gated_once(who, log_id, call_id, spec, arguments, rule, progress)
            if outcome is not None:
                return outcome
        return Outcome(
            ok=False,
            text=f"Error (conflict): other calls of {spec.name!r} with the same arguments kept "
            "taking the approvals this call waited for; it was not run. Call it again.",
            outcome="conflict",
        )

    async def _gated_once(
        self,
        who: Caller,
        log_id: str,
        call_id: str,
        spec: ToolSpec,
        arguments: dict[str, Any],
        rule: Any,
        progress: Progress,
    ) -> Outcome | None:
        """The outcome, or None when another identical call took the decision first."""
        state = self._state
        tenant = who.tenant
        record = await self._open_approval(tenant, log_id)
        if record is None:
            pending = await state.approvals.list(tenant, status="pending")
            if len(pending) >= MAX_PENDING_PER_TENANT:
                return Outcome(
                    ok=False,
                    text=f"Error (too_many_approvals): tenant {tenant!r} has "
                    f"{len(pending)} approval requests open; the call of {spec.name!r} was not "
                    "run. Decide some first.",
                    outcome="too_many_approvals",
                )
            record = await state.approvals.request(
                headers=who.headers,
                run_id=log_id,
                call_id=call_id,
                spec=spec,
                arguments=arguments,
                rule=rule,
            )
        record = await self._decision(tenant, log_id, record, progress)
        status = record.status
        if status == "pending":
            return Outcome(
                ok=False,
                text=f"Error (approval_pending): the call of {spec.name!r} needs an approval "
                f"({rule.reason or 'policy rule ' + repr(rule.match)}); approval {record.id!r} "
                f"is still pending (it expires at {iso_utc(record.expires_at)}). Make the same "
                "call again once it is approved.",
                outcome="approval_pending",
                approval_id=record.id,
            )
        if status == "expired":
            return Outcome(
                ok=False,
                text=f"Error (expired): the call of {spec.name!r} was not run: approval "
                f"{record.id!r} expired at {iso_utc(record.expires_at)} without a decision.",
                outcome="expired",
                approval_id=record.id,
            )
        return await self._apply(who, log_id, spec, arguments, record)

    async def _decision(
        self, tenant: str, log_id: str, record: ApprovalRecord, progress: Progress
    ) -> ApprovalRecord:
        """The record once decided, or as it is when the wait is over (reporting progress)."""
        state = self._state
        wait_s = state.settings.mcp_approval_wait_s
        loop = asyncio.get_running_loop()
        start = loop.time()
        told = -PROGRESS_EVERY_S
        with state.hub.watch(tenant, log_id) as woken:
            while True:
                record = await state.approvals.get(tenant, record.id)
                waited = loop.time() - start
                if record.status != "pending" or waited >= wait_s:
                    return record
                if waited - told >= PROGRESS_EVERY_S:
                    told = waited
                    await progress(
                        round(waited, 3),
                        wait_s,
                        f"waiting for approval {record.id} (approvers: "
                        f"{', '.join(record.approvers) or 'nobody'})",
                    )
                # Woken by a decision made through this server; polled for one made elsewhere.
                step = min(PROGRESS_EVERY_S, state.settings.poll_s, wait_s - waited)
                await wait_for(woken, max(step, 0.01))

    async def _apply(
        self,
        who: Caller,
        log_id: str,
        spec: ToolSpec,
        arguments: dict[str, Any],
        record: ApprovalRecord,
    ) -> Outcome | None:
        """Use a decided approval: exactly one call takes it (``begin_call``); None for the
        others (they ask for an approval of their own)."""
        state = self._state
        store = state.store
        tenant = who.tenant
        decision = record.decision
        if not await store.begin_call(tenant, log_id, record.id):
            _log.info("mcp.approval_taken", approval_id=record.id, tool=spec.name)
            return None
        if record.status == "rejected":
            who_decided = decision.decided_by if decision else "an approver"
            reason = (decision.reason if decision else None) or "no reason given"
            outcome = Outcome(
                ok=False,
                text=f"Error (rejected): the call of {spec.name!r} was not run: "
                f"{who_decided!r} rejected it. Reason: {reason}",
                outcome="rejected",
                approval_id=record.id,
            )
            await store.finish_call(tenant, log_id, record.id, _stored(outcome))
            return outcome
        edited = decision is not None and decision.decision == "edit" and decision.arguments
        run_with = dict(decision.arguments or {}) if edited and decision else arguments
        current = await self.spec_of(spec.name)
        why = _edit_refusal(current, run_with) if edited and current is not None else None
        why = why or state.approvals.check_binding(
            record,
            spec=current,
            arguments=run_with,
            headers=who.headers,
            run_id=log_id,
            call_id=record.call_id,
        )
        if why is not None or current is None:
            outcome = Outcome(
                ok=False,
                text=f"Error (approval_void): {why or 'the tool is gone'}",
                outcome="approval_void",
                approval_id=record.id,
            )
        else:
            ctx = CallContext(headers=who.headers, run_id=log_id, call_id=record.call_id)
            result = await state.registry.call(spec.name, run_with, ctx)
            outcome = _from_result(result, record.id)
        await store.finish_call(tenant, log_id, record.id, _stored(outcome))
        await store.append_event(
            tenant,
            log_id,
            "approval_applied",
            {
                "approval_id": record.id,
                "call_id": record.call_id,
                "tool": spec.name,
                "outcome": outcome.outcome,
                "executed_here": why is None,
            },
        )
        return outcome


def _stored(outcome: Outcome) -> dict[str, Any]:
    return {
        "ok": outcome.ok,
        "text": outcome.text,
        "structured": outcome.structured,
        "outcome": outcome.outcome,
        "approval_id": outcome.approval_id,
    }
