"""``/v1/runs``: start a run, read it, follow its events, cancel or resume it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from penguiflow_agents.exceptions import NotFoundError, QuotaExceededError
from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._documents import queued_document, run_document
from penguiflow_agents.server._errors import ApiError
from penguiflow_agents.server._executor import RunRequest
from penguiflow_agents.server._feed import END_KINDS, follow_run, sse
from penguiflow_agents.server._models import ErrorBody, RunAccepted, RunCreate, RunDocument
from penguiflow_agents.server._state import ServerState, server_state
from penguiflow_agents.worker import new_run_id

__all__ = ["admit_run", "check_run_limit", "model_for", "router", "trace_context"]

# W3C trace context headers an incoming request may carry into its run.
_TRACE_HEADERS = ("traceparent", "tracestate")
# Longer values are ignored (a traceparent is 55 characters; tracestate at most 512 by spec).
_MAX_TRACE_HEADER = 512

# Seconds a caller over its concurrent-runs limit is asked to wait before trying again.
BUSY_RETRY_AFTER_S = 5

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (401, 403, 404, 409, 413, 422, 429)
}
# Events one JSON history answer holds (ask again with ``after`` for the rest).
DEFAULT_HISTORY_EVENTS = 1000
MAX_HISTORY_EVENTS = 10_000


router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=_ERRORS)

RunId = Annotated[str, Path(min_length=1, max_length=256, description="the run's id")]


async def _document(state: ServerState, tenant: str, run_id: str) -> dict[str, Any]:
    """The run document (404 for an unknown id and for another tenant's, alike)."""
    try:
        record = await state.store.get_run(tenant, run_id)
    except NotFoundError:
        if state.executor.is_queued(tenant, run_id):
            return queued_document(run_id, state.settings.model)
        raise
    return run_document(record, state.settings)


def model_for(state: ServerState, model: str | None) -> str | None:
    """The model a run may use (None: the server's); 422 for a model the server does not offer."""
    settings = state.settings
    if model is None or model == "default" or model == settings.model:
        return None
    if model in settings.allowed_models:
        return model
    offered = ", ".join(["default", *settings.allowed_models])
    raise ApiError(
        422,
        f"model {model!r} is not offered by this server; use one of: {offered}.",
        code="invalid_request",
    )


def trace_context(request: Request) -> dict[str, str] | None:
    """The request's W3C trace context (``traceparent``, ``tracestate``), for the run to
    continue; None when it has none (a malformed one is ignored by the propagator)."""
    found = {
        name: value
        for name in _TRACE_HEADERS
        if (value := request.headers.get(name)) and len(value) <= _MAX_TRACE_HEADER
    }
    return found if "traceparent" in found else None


async def check_run_limit(state: ServerState, who: Caller) -> None:
    """429 with Retry-After when the caller's key already has its limit of runs in progress."""
    limit = who.max_concurrent_runs
    if limit is not None and await state.executor.active(who.key_id) >= limit:
        raise ApiError(
            429,
            f"key {who.key_id!r} already has {limit} runs in progress (its limit); "
            f"retry when one has ended.",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
        )


async def admit_run(state: ServerState, tenant: str) -> str | None:
    """A run id admitted by the tenant's quotas; 429 with Retry-After when over one."""
    if state.quotas is None:
        return None
    run_id = new_run_id()
    try:
        await state.quotas.admit(tenant, run_id)
    except QuotaExceededError as exc:
        raise ApiError(
            429, str(exc), code="quota_exceeded", headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    return run_id


@router.post(
    "",
    status_code=202,
    response_model=RunAccepted | RunDocument,
    responses={
        200: {"model": RunDocument, "description": "with ?wait=true: the ended or paused run"}
    },
    summary="start a run",
)
async def start_run(
    body: RunCreate,
    request: Request,
    wait: Annotated[
        bool, Query(description="answer when the run has ended or paused (200, the run document)")
    ] = False,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> Any:
    headers = who.acting_for(
        body.user.principal if body.user else None, body.user.roles if body.user else ()
    )
    model = model_for(state, body.model)
    await check_run_limit(state, who)
    admitted = await admit_run(state, who.tenant)
    run_id = await state.executor.start(
        RunRequest(
            query=body.query,
            headers=headers,
            key_id=who.key_id,
            model=model,
            session_id=body.session_id,
            trace=trace_context(request),
            run_id=admitted,
        )
    )
    if not wait:
        return JSONResponse({"run_id": run_id, "status": "running"}, status_code=202)
    if not await state.executor.settled(who.tenant, run_id):
        async for _ in follow_run(state, who.tenant, run_id):
            pass  # until paused or run_finished
    return JSONResponse(await _document(state, who.tenant, run_id), status_code=200)


@router.get("/{run_id}", response_model=RunDocument, summary="the run document")
async def get_run(
    run_id: RunId, who: Caller = Depends(caller), state: ServerState = Depends(server_state)
) -> Any:
    return await _document(state, who.tenant, run_id)


@router.post("/{run_id}/cancel", response_model=RunDocument, summary="cancel a run")
async def cancel_run(
    run_id: RunId, who: Caller = Depends(caller), state: ServerState = Depends(server_state)
) -> Any:
    await _document(state, who.tenant, run_id)  # 404 first, for unknown and foreign ids alike
    await state.executor.cancel(who.tenant, run_id, headers=who.headers)
    return await _document(state, who.tenant, run_id)


@router.post(
    "/{run_id}/resume",
    response_model=RunDocument,
    summary="continue a paused run (its approvals decided); 409 while it executes",
)
async def resume_run(
    run_id: RunId, who: Caller = Depends(caller), state: ServerState = Depends(server_state)
) -> Any:
    await state.executor.resume(who.tenant, run_id, headers=who.headers, key_id=who.key_id)
    return await _document(state, who.tenant, run_id)


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}, "application/json": {}},
            "description": "one SSE event per run event; ends after paused or run_finished. "
            "With Accept: application/json, the stored history: {run_id, events: [{seq, kind, "
            "ts, run_id, data}], next_after, more}, paged with after and limit",
        }
    },
    summary="the run's events as Server-Sent Events (or its stored history as JSON)",
)
async def run_events(
    run_id: RunId,
    request: Request,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=32, description="resume after it")
    ] = None,
    after: Annotated[
        int, Query(ge=0, description="JSON history: only events after this sequence number")
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_HISTORY_EVENTS, description="JSON history: at most this many")
    ] = DEFAULT_HISTORY_EVENTS,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> Any:
    if _wants_json(request):  # the history, whatever the run's state (``runs events --json``)
        return JSONResponse(await _history(state, who.tenant, run_id, after, limit))
    after = 0
    if last_event_id is not None and last_event_id.strip():
        try:
            after = int(last_event_id)
        except ValueError:
            raise ApiError(
                422, f"Last-Event-ID must be an event id (an integer), got {last_event_id!r}."
            ) from None
        if after < 0:
            raise ApiError(422, f"Last-Event-ID must not be negative, got {last_event_id!r}.")
    await _document(state, who.tenant, run_id)  # 404 for unknown and foreign ids alike

    async def stream() -> AsyncIterator[bytes]:
        async for event in follow_run(state, who.tenant, run_id, after_seq=after):
            if event is None:
                yield b": keep-alive\n\n"
                continue
            yield sse(event.seq, event.kind, event.data)
            if event.kind in END_KINDS:
                return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _wants_json(request: Request) -> bool:
    """``Accept: application/json`` (and not ``text/event-stream``) asks for the history."""
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/event-stream" not in accept


async def _history(
    state: ServerState, tenant: str, run_id: str, after: int, limit: int
) -> dict[str, Any]:
    from penguiflow_agents.history import event_doc, run_events

    await _document(state, tenant, run_id)  # 404 for unknown and foreign ids alike
    try:
        events = await run_events(state.store, tenant, run_id, after_seq=after)
    except NotFoundError:  # accepted, still queued for a worker: nothing stored yet
        events = []
    page = events[:limit]
    return {
        "run_id": run_id,
        "events": [event_doc(e) for e in page],
        "next_after": page[-1].seq if page else after,
        "more": len(events) > limit,
    }
