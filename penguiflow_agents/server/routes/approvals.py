"""``/v1/approvals``: the caller's tenant's approval requests, decisions, and a live feed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import StreamingResponse

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import ConflictError, NotFoundError, PenguiflowError
from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._documents import approval_document
from penguiflow_agents.server._errors import ApiError
from penguiflow_agents.server._executor import DecidesApprovals
from penguiflow_agents.server._feed import approval_changes, sse
from penguiflow_agents.server._hub import wait_for
from penguiflow_agents.server._models import ApprovalDocument, DecisionBody, ErrorBody
from penguiflow_agents.server._state import ServerState, server_state

__all__ = ["resume_when_decided", "router"]

_log = structlog.get_logger("penguiflow_agents.server")

# Longest a decided run is watched for its pause before the server stops waiting to resume it.
RESUME_WATCH_S = 300.0

router = APIRouter(
    prefix="/v1/approvals",
    tags=["approvals"],
    responses={s: {"model": ErrorBody} for s in (401, 403, 404, 409, 422, 429)},
)

ApprovalId = Annotated[str, Path(min_length=1, max_length=256, description="the approval's id")]


@router.get("", response_model=list[ApprovalDocument], summary="the tenant's approval requests")
async def list_approvals(
    status: Annotated[Literal["pending", "approved", "rejected", "expired"] | None, Query()] = None,
    run_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> Any:
    records = await state.approvals.list(who.tenant, status=status, run_id=run_id)
    return [approval_document(r, state.approvals, who) for r in records]


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="the tenant's approval requests and decisions as Server-Sent Events",
)
async def approval_events(
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=32, description="resume after it"),
    ] = None,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> StreamingResponse:
    after = None
    if last_event_id is not None and last_event_id.strip():
        try:
            after = int(last_event_id)
        except ValueError:
            raise ApiError(
                422, f"Last-Event-ID must be an event id (an integer), got {last_event_id!r}."
            ) from None
        if after < 0:
            raise ApiError(422, f"Last-Event-ID must not be negative, got {last_event_id!r}.")

    async def stream() -> AsyncIterator[bytes]:
        async for kind, doc, event_id in approval_changes(state, who, after=after):
            if kind == "keepalive":
                yield b": keep-alive\n\n"
                continue
            yield sse(event_id, kind, doc)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{approval_id}", response_model=ApprovalDocument, summary="one approval request")
async def get_approval(
    approval_id: ApprovalId,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> Any:
    record = await state.approvals.get(who.tenant, approval_id)
    return approval_document(record, state.approvals, who)


@router.post(
    "/{approval_id}/decision",
    response_model=ApprovalDocument,
    summary="approve, reject (with a reason) or edit; the run resumes on its own",
)
async def decide(
    approval_id: ApprovalId,
    body: DecisionBody,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> Any:
    decision: dict[str, Any] = {
        "tenant": who.tenant,
        "approval_id": approval_id,
        "principal": who.headers.principal,
        "roles": list(who.headers.roles),
        "decision": body.decision,
        "reason": body.reason,
        "arguments": body.arguments if body.decision == "edit" else None,
    }
    if isinstance(state.executor, DecidesApprovals):  # the waiting run takes it (Temporal)
        record = await state.executor.decide(**decision)
        return approval_document(record, state.approvals, who)
    record = await state.approvals.decide(**decision)
    resume_when_decided(state, record.tenant, record.run_id, who.headers, who.key_id)
    return approval_document(record, state.approvals, who)


def resume_when_decided(
    state: ServerState, tenant: str, run_id: str, headers: Headers, key_id: str
) -> None:
    """In the background: once the run has paused and none of its approvals is pending,
    resume it (a decision can land before the run has finished pausing)."""
    tasks: set[asyncio.Task[None]] = state.extras.setdefault("resume_tasks", set())
    task = asyncio.create_task(_resume_when_decided(state, tenant, run_id, headers, key_id))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _resume_when_decided(
    state: ServerState, tenant: str, run_id: str, headers: Headers, key_id: str
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESUME_WATCH_S
    with state.hub.watch(tenant, run_id) as woken:
        while loop.time() < deadline:
            try:
                run = await state.store.get_run(tenant, run_id)
            except NotFoundError:
                return
            if run.status == "paused":
                if await state.approvals.list(tenant, status="pending", run_id=run_id):
                    return  # another decision will resume it
                with contextlib.suppress(ConflictError):
                    try:
                        await state.executor.resume(tenant, run_id, headers=headers, key_id=key_id)
                    except PenguiflowError as exc:
                        _log.warning("run.resume_failed", run_id=run_id, error=str(exc))
                return
            if run.status != "running":
                return
            await wait_for(woken, state.settings.poll_s)
