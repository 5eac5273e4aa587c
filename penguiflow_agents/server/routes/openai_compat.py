"""``POST /v1/chat/completions`` and ``GET /v1/models``: OpenAI-compatible chat over runs.

Any OpenAI client or chat UI can talk to the platform: a request is a run of
the caller (identity from the bearer key, like every route; the tools run
here, under the caller's policy), started through the same executor as
``POST /v1/runs`` and followed through the same event log as
``GET /v1/runs/{id}/events``, so it works with runs on workers too.

- the conversation: the last (user) message is the query; earlier messages
  are saved as the history of a fresh session that only this run reads
  (see ``_openai_wire``);
- ``"model": "default"`` (or the server's model name) is the server's
  ``--model``; another model must be one of ``--allow-model``;
- ``user``: with a key that may act for users, the run executes as that end
  user (with no roles); other keys' runs execute as the key, whatever
  ``user`` says (clients send it for their own bookkeeping). The body's
  ``penguiflow.user`` (``{"principal", "roles"}``, as ``user`` in
  ``POST /v1/runs``) names the end user with roles: 403 for a key that may
  not act for users or grant those roles;
- not streamed: the answer when the run ends or pauses; streamed: the text as
  the model writes it, ``[DONE]`` at the end; a run that pauses answers with
  a message naming each approval and a ``penguiflow`` field (run id, status,
  pending approvals). A client that goes away does not stop the run.

Errors have OpenAI's shape plus the service's code: ``{"error": {"message",
"type", "code", "param"}}``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from penguiflow_agents._identity import session_key
from penguiflow_agents.exceptions import NotFoundError, PenguiflowError
from penguiflow_agents.planner import RunResult
from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._errors import ApiError, status_of
from penguiflow_agents.server._executor import RunRequest
from penguiflow_agents.server._feed import END_KINDS, follow_run
from penguiflow_agents.server._openai_wire import (
    DEFAULT_MODEL,
    ChatCompletionRequest,
    ChunkStream,
    WireError,
    chat_completion,
    parse_request,
    to_conversation,
)
from penguiflow_agents.server._state import ServerState, server_state
from penguiflow_agents.server.routes.runs import admit_run, check_run_limit, model_for
from penguiflow_agents.worker._submit import result_of

__all__ = ["openai_error", "router"]

_log = structlog.get_logger("penguiflow_agents.server")

# OpenAI's error ``type`` by HTTP status.
_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
}
# Prefix of the sessions that carry a chat request's earlier messages.
SESSION_PREFIX = "chat-"

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `penguiflow-agents keys add` (the OpenAI client's api_key).",
)

_MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {
            "type": "string",
            "enum": ["system", "developer", "user", "assistant", "tool", "function"],
        },
        "content": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object"}},
                {"type": "null"},
            ]
        },
    },
}
_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "description": "'default': the server's model"},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE_SCHEMA},
        "stream": {"type": "boolean"},
        "stream_options": {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean"}},
        },
        "user": {"type": "string"},
    },
}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "string"},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for status in (401, 403, 413, 422, 429)
}

router = APIRouter(prefix="/v1", tags=["openai"])


def openai_error(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The OpenAI error shape, with the service's ``code``."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "code": code, "param": param}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


async def _identify(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> tuple[ServerState, Caller]:
    state = await server_state(request)
    return state, await caller(request, credentials, state)


def _refused(exc: Exception) -> JSONResponse:
    if isinstance(exc, ApiError):
        return openai_error(exc.status, exc.code, exc.message, headers=exc.headers)
    if isinstance(exc, WireError):
        return openai_error(422, "invalid_request", exc.message, param=exc.param)
    assert isinstance(exc, PenguiflowError)
    status, code = status_of(exc)
    if status >= 500:
        _log.error("chat.failed", error=type(exc).__name__)
        return openai_error(500, code, "the server failed to handle the request.")
    return openai_error(status, code, str(exc))


@router.post(
    "/chat/completions",
    summary="OpenAI-compatible chat completion (a run of the caller; streamed or not)",
    response_model=None,
    responses={
        200: {
            "description": "a chat.completion object, or with stream=true chat.completion.chunk events",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **_ERROR_RESPONSES,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _REQUEST_SCHEMA}},
        }
    },
)
async def chat_completions(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Response:
    try:
        state, who = await _identify(request, credentials)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise WireError(f"the request body is not valid JSON: {exc}.") from None
        chat = parse_request(body)
        conversation = to_conversation(chat)
        end_user = chat.penguiflow.user if chat.penguiflow is not None else None
        headers = who.headers
        if end_user is not None:
            headers = who.acting_for(end_user.principal, end_user.roles)
        elif chat.user and who.act_for_users:
            headers = who.acting_for(chat.user)
        model = model_for(state, None if chat.model == DEFAULT_MODEL else chat.model)
        await check_run_limit(state, who)
        session_id = None
        if conversation.history:
            session_id = SESSION_PREFIX + secrets.token_hex(12)
            # Sessions belong to (tenant, principal): store it where this caller's run reads it.
            key = session_key(headers.principal, session_id)
            await state.store.save_session(headers.tenant, key, conversation.history)
        run_id = await state.executor.start(
            RunRequest(
                query=conversation.query,
                headers=headers,
                key_id=who.key_id,
                model=model,
                session_id=session_id,
                run_id=await admit_run(state, headers.tenant),  # 429 over a tenant quota
            )
        )
    except (ApiError, WireError, PenguiflowError) as exc:
        return _refused(exc)
    created = int(time.time())
    if chat.stream:
        return StreamingResponse(
            _stream(state, headers.tenant, run_id, chat, created),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        async with asyncio.timeout(state.settings.wait_timeout_s):
            async for _ in follow_run(state, headers.tenant, run_id):
                pass  # until paused or run_finished
    except TimeoutError:
        pass  # answered as still running: GET /v1/runs/{id} has the rest
    result = await _result(state, headers.tenant, run_id)
    return JSONResponse(chat_completion(result, model=chat.model, created=created))


async def _result(state: ServerState, tenant: str, run_id: str) -> RunResult:
    try:
        record = await state.store.get_run(tenant, run_id)
    except NotFoundError:  # still queued for a worker
        return RunResult(status="running", run_id=run_id)
    return result_of(record) or RunResult(status="running", run_id=run_id)


async def _stream(
    state: ServerState, tenant: str, run_id: str, chat: ChatCompletionRequest, created: int
) -> AsyncIterator[str]:
    chunks = ChunkStream(
        run_id=run_id, model=chat.model, created=created, include_usage=chat.include_usage
    )
    for line in chunks.start():
        yield line
    try:
        async for event in follow_run(state, tenant, run_id):
            if event is None:
                yield ": keep-alive\n\n"
            elif event.kind in END_KINDS:
                break
            else:
                for line in chunks.on_entry(event.kind, event.data):
                    yield line
        lines = chunks.finish(await _result(state, tenant, run_id))
    except Exception as exc:  # the store failed under us: say so in the stream
        _log.error("chat.stream_failed", run_id=run_id, error=type(exc).__name__)
        message = f"the run {run_id} could not be followed; GET /v1/runs/{run_id} shows it."
        lines = chunks.error(
            {"error": {"message": message, "type": "server_error", "code": "internal"}}
        )
    for line in lines:
        yield line


@router.get(
    "/models",
    summary="the models a chat completion may name (OpenAI-compatible list)",
    responses=_ERROR_RESPONSES,
)
async def list_models(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Response:
    try:
        state, _ = await _identify(request, credentials)
    except (ApiError, PenguiflowError) as exc:
        return _refused(exc)
    created = int(state.started_at)
    names = [DEFAULT_MODEL, *state.settings.allowed_models]
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": "penguiflow-agents"}
                for name in names
            ],
        }
    )
