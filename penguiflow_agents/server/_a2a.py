"""``serve`` as an A2A agent: a2a-sdk's JSON-RPC dispatcher over the service's runs.

The A2A side is a2a-sdk's (``JsonRpcDispatcher``: JSON-RPC 2.0 parsing, the
1.0 methods ``SendMessage`` / ``SendStreamingMessage`` / ``GetTask`` /
``CancelTask`` / ``SubscribeToTask`` and, through its 0.3 adapter, the older
``message/send`` / ``message/stream`` / ``tasks/get`` / ``tasks/cancel`` /
``tasks/resubscribe``, SSE framing). What a task *is* is ours
(``RunsRequestHandler``): a task is a run of the caller, its id the run id,
started through the same ``RunExecutor`` as ``POST /v1/runs`` and read from
the store like ``GET /v1/runs/{id}``:

- the message's text (and data) parts are the query; its ``contextId`` is the
  run's session (history across tasks of one context); a message naming a
  ``taskId`` continues that run (a paused run is resumed: it goes on if its
  approvals were decided, else it stays ``input-required``; a running one is
  followed);
- run status → task state: running ``working``, paused ``input-required``
  (its message names each approval, its metadata lists them), completed
  ``completed`` (the answer is the ``answer`` artifact), failed ``failed``,
  cancelled ``canceled``; a run queued for workers is ``submitted``;
- streamed: the task first, then the answer's text as ``answer`` artifact
  chunks as the model writes it, a ``working`` status naming each tool call,
  and at the end the whole answer (``append: false``) and the final status;
- an unknown task id and another tenant's answer alike (``TaskNotFoundError``).

Identity comes from the bearer key like every route (``caller``); the route
puts the caller in the call context, and every read names its tenant.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import structlog
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.routes.common import ServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Artifact,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    HTTPAuthSecurityScheme,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    StringList,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    A2AError,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict
from starlette.requests import Request

from penguiflow_agents.exceptions import ConflictError, NotFoundError, PenguiflowError
from penguiflow_agents.planner import RunResult
from penguiflow_agents.server._auth import Caller
from penguiflow_agents.server._errors import ApiError
from penguiflow_agents.server._executor import RunRequest
from penguiflow_agents.server._feed import END_KINDS, follow_run
from penguiflow_agents.server._models import MAX_NAME, MAX_QUERY_CHARS
from penguiflow_agents.server._state import ServerState
from penguiflow_agents.store import RunRecord
from penguiflow_agents.worker._submit import result_of

__all__ = [
    "ANSWER_ARTIFACT",
    "RPC_PATH",
    "SKILL_ID",
    "RunsRequestHandler",
    "agent_card",
    "dispatcher",
    "task_of",
]

_log = structlog.get_logger("penguiflow_agents.server")

# Where the JSON-RPC endpoint is (the card names it).
RPC_PATH = "/a2a"
# The one skill: a run of the planner with the caller's tools and policy.
SKILL_ID = "run"
# The artifact holding a run's answer.
ANSWER_ARTIFACT = "answer"
# The card's security scheme: the service's bearer keys.
SECURITY_SCHEME = "bearer"

_STATES = {
    "running": TaskState.TASK_STATE_WORKING,
    "paused": TaskState.TASK_STATE_INPUT_REQUIRED,
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "cancelled": TaskState.TASK_STATE_CANCELED,
}
_ENDED = frozenset({"completed", "failed", "cancelled"})


def agent_card(base_url: str, *, version: str) -> AgentCard:
    """The service's Agent Card; ``base_url`` is where clients reach it (no trailing /)."""
    url = base_url.rstrip("/") + RPC_PATH
    return AgentCard(
        name="penguiflow-agents",
        description=(
            "Runs a tool-using planner under tenant policies, with durable human approvals. "
            "A task is a run of the caller (identified by its bearer key): the tools it may "
            "use and the approvals it needs are the caller's policy."
        ),
        version=version,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        security_schemes={
            SECURITY_SCHEME: SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="bearer",
                    description="An API key from `penguiflow-agents keys add` "
                    "(or an OIDC token when the server is configured for one).",
                )
            )
        },
        security_requirements=[SecurityRequirement(schemes={SECURITY_SCHEME: StringList()})],
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id=SKILL_ID,
                name="run",
                description=(
                    "Answer a question or carry out a task with the platform's tools, as the "
                    "caller: only the tools the caller's policy allows; calls that need a "
                    "human decision pause the task (input-required) until it is decided."
                ),
                tags=["planner", "tools", "approvals"],
                examples=["What time is it in Tokyo?"],
                input_modes=["text/plain", "application/json"],
                output_modes=["text/plain"],
            )
        ],
    )


def _text(value: str, *, task_id: str, context_id: str, message_id: str) -> Message:
    return Message(
        message_id=message_id,
        role=Role.ROLE_AGENT,
        parts=[Part(text=value)],
        task_id=task_id,
        context_id=context_id,
    )


def _pause_message(result: RunResult) -> str:
    parts = []
    for pending in result.pending_approvals:
        if pending.kind == "authorization":  # the user logs in to a tool source; no approver
            parts.append(
                f"the authorization of source {pending.source} by {pending.principal} "
                f"(POST /v1/auth/login/{pending.source}) for a call to {pending.tool}"
            )
            continue
        who = ", ".join(pending.approvers) or "an approver"
        why = f" ({pending.reason})" if pending.reason else ""
        parts.append(f"approval {pending.id} of a call to {pending.tool}{why}, by {who}")
    listed = "; ".join(parts) or "approvals"
    return (
        f"The run is waiting for {listed}. Decide with POST /v1/approvals/<id>/decision, "
        "then send a message with this taskId to continue it."
    )


def task_of(record: RunRecord | None, run_id: str, context_id: str) -> Task:
    """The A2A task of a run (``record`` None: accepted for workers, not started yet)."""
    result = result_of(record) if record is not None else None
    status_name = result.status if result is not None else ("running" if record is not None else "")
    task = Task(id=run_id, context_id=context_id)
    task.metadata.update({"run_id": run_id, "run_status": status_name or "queued"})
    state = _STATES.get(status_name, TaskState.TASK_STATE_SUBMITTED)
    task.status.CopyFrom(TaskStatus(state=state))
    task.status.timestamp.GetCurrentTime()
    if record is not None and record.query:
        task.history.append(
            Message(
                message_id=f"{run_id}:query",
                role=Role.ROLE_USER,
                parts=[Part(text=record.query)],
                task_id=run_id,
                context_id=context_id,
            )
        )
    if result is None:
        return task
    ids = {"task_id": run_id, "context_id": context_id, "message_id": f"{run_id}:{status_name}"}
    if status_name == "completed":
        task.artifacts.append(
            Artifact(
                artifact_id=ANSWER_ARTIFACT, name="answer", parts=[Part(text=result.answer or "")]
            )
        )
        if result.answer:
            task.status.message.CopyFrom(_text(result.answer, **ids))
    elif status_name == "paused":
        task.status.message.CopyFrom(_text(_pause_message(result), **ids))
        task.metadata.update(
            {
                "pending_approvals": [
                    json.loads(json.dumps(p.to_dict())) for p in result.pending_approvals
                ]
            }
        )
    elif result.error:
        task.status.message.CopyFrom(_text(result.error, **ids))
    return task


def _query_of(message: Message) -> str:
    pieces: list[str] = []
    for part in message.parts:
        if part.HasField("text"):
            pieces.append(part.text)
        elif part.HasField("data"):
            pieces.append(json.dumps(MessageToDict(part.data), ensure_ascii=False))
    query = "\n".join(p for p in pieces if p.strip())
    if not query.strip():
        raise InvalidParamsError(
            message="the message has no text (or data) part to run; send the question as a "
            "text part."
        )
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidParamsError(
            message=f"the message's text is {len(query)} characters; at most "
            f"{MAX_QUERY_CHARS} are accepted."
        )
    return query


def _who(context: ServerCallContext) -> tuple[ServerState, Caller]:
    state = context.state.get("penguiflow_state")
    who = context.state.get("penguiflow_caller")
    if not isinstance(state, ServerState) or not isinstance(who, Caller):
        raise InternalError(message="the A2A endpoint was called without an identity.")
    return state, who


def _translate(exc: Exception) -> A2AError:
    """Our errors as A2A errors (the message says what to do; never a secret)."""
    if isinstance(exc, NotFoundError):
        return TaskNotFoundError()
    if isinstance(exc, ApiError):
        return InvalidRequestError(message=exc.message)
    if isinstance(exc, ConflictError | PenguiflowError):
        return InvalidRequestError(message=str(exc))
    _log.error("a2a.failed", error=type(exc).__name__)
    return InternalError(message="the server failed to handle the request.")


class RunsRequestHandler(RequestHandler):
    """A2A requests over the service's runs (see the module docstring)."""

    async def _record(self, state: ServerState, tenant: str, run_id: str) -> RunRecord | None:
        """The run, None while queued for workers; TaskNotFoundError otherwise (foreign too)."""
        if not run_id or len(run_id) > MAX_NAME:
            raise TaskNotFoundError()
        try:
            return await state.store.get_run(tenant, run_id)
        except NotFoundError:
            if state.executor.is_queued(tenant, run_id):
                return None
            raise TaskNotFoundError() from None

    async def _task(self, state: ServerState, tenant: str, run_id: str) -> Task:
        record = await self._record(state, tenant, run_id)
        context = (record.session_id if record is not None else None) or run_id
        return task_of(record, run_id, context)

    async def _start(
        self, state: ServerState, who: Caller, params: SendMessageRequest
    ) -> tuple[str, str]:
        """Start (or continue) the run the message asks for: ``(run id, context id)``."""
        from penguiflow_agents.server.routes.runs import admit_run, check_run_limit

        message = params.message
        if message.task_id:
            record = await self._record(state, who.tenant, message.task_id)
            if record is not None and record.status in _ENDED:
                raise InvalidParamsError(
                    message=f"task {message.task_id!r} has ended ({record.status}); send a new "
                    "message without taskId to start another."
                )
            if record is not None and record.status == "paused":
                try:
                    await check_run_limit(state, who)
                    await state.executor.resume(
                        who.tenant, message.task_id, headers=who.headers, key_id=who.key_id
                    )
                except ConflictError:
                    pass  # resumed by someone else (a decision resumes it): follow it
                except (ApiError, PenguiflowError) as exc:
                    raise _translate(exc) from None
            context = (record.session_id if record is not None else None) or message.task_id
            return message.task_id, context
        query = _query_of(message)
        session = message.context_id or None
        if session is not None and len(session) > MAX_NAME:
            raise InvalidParamsError(message=f"contextId is longer than {MAX_NAME} characters.")
        try:
            await check_run_limit(state, who)
            run_id = await state.executor.start(
                RunRequest(
                    query=query,
                    headers=who.headers,
                    key_id=who.key_id,
                    session_id=session,
                    trace=_trace(context_headers(params)),
                    run_id=await admit_run(state, who.tenant),  # over a tenant quota: refused
                )
            )
        except (ApiError, PenguiflowError) as exc:
            raise _translate(exc) from None
        return run_id, session or run_id

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        state, who = _who(context)
        run_id, _ = await self._start(state, who, params)
        if not params.configuration.return_immediately:
            await _settle(state, who.tenant, run_id)
        return await self._task(state, who.tenant, run_id)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any]:
        state, who = _who(context)
        run_id, context_id = await self._start(state, who, params)
        async for event in self._follow(state, who.tenant, run_id, context_id):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any]:
        state, who = _who(context)
        task = await self._task(state, who.tenant, params.id)
        async for event in self._follow(state, who.tenant, params.id, task.context_id):
            yield event

    async def _follow(
        self, state: ServerState, tenant: str, run_id: str, context_id: str
    ) -> AsyncIterator[Any]:
        yield await self._task(state, tenant, run_id)
        chunks = 0
        ids = {"task_id": run_id, "context_id": context_id}
        async for event in follow_run(state, tenant, run_id):
            if event is None:
                continue  # sse-starlette sends its own keep-alive pings
            if event.kind in END_KINDS:
                break
            if event.kind == "text_delta":
                text = str((event.data or {}).get("text") or "")
                if text:
                    yield TaskArtifactUpdateEvent(
                        task_id=run_id,
                        context_id=context_id,
                        artifact=Artifact(artifact_id=ANSWER_ARTIFACT, parts=[Part(text=text)]),
                        append=chunks > 0,
                    )
                    chunks += 1
            elif event.kind == "tool_call_started":
                tool = str((event.data or {}).get("tool") or "a tool")
                yield TaskStatusUpdateEvent(
                    task_id=run_id,
                    context_id=context_id,
                    status=TaskStatus(
                        state=TaskState.TASK_STATE_WORKING,
                        message=_text(f"calling {tool}", message_id=f"{run_id}:{event.seq}", **ids),
                    ),
                )
        final = await self._task(state, tenant, run_id)
        for artifact in final.artifacts:
            yield TaskArtifactUpdateEvent(
                task_id=run_id,
                context_id=context_id,
                artifact=artifact,
                append=False,
                last_chunk=True,
            )
        update = TaskStatusUpdateEvent(task_id=run_id, context_id=context_id, status=final.status)
        update.metadata.CopyFrom(final.metadata)
        yield update

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        state, who = _who(context)
        return await self._task(state, who.tenant, params.id)

    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        state, who = _who(context)
        record = await self._record(state, who.tenant, params.id)
        if record is not None and record.status in _ENDED:
            raise TaskNotCancelableError(
                message=f"task {params.id!r} has already ended ({record.status})."
            )
        try:
            await state.executor.cancel(who.tenant, params.id, headers=who.headers)
        except (ApiError, PenguiflowError) as exc:
            raise _translate(exc) from None
        return await self._task(state, who.tenant, params.id)

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        raise UnsupportedOperationError(message="listing tasks is not offered; GET /v1/runs is.")

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise UnsupportedOperationError(message="push notifications are not offered.")

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise UnsupportedOperationError(message="push notifications are not offered.")

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise UnsupportedOperationError(message="push notifications are not offered.")

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise UnsupportedOperationError(message="push notifications are not offered.")

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise UnsupportedOperationError(message="there is no extended agent card.")


def context_headers(params: SendMessageRequest) -> dict[str, str]:
    """W3C trace context a caller put in the request's metadata (``traceparent``)."""
    found: dict[str, str] = {}
    fields = params.metadata.fields if params.HasField("metadata") else {}
    for name in ("traceparent", "tracestate"):
        value = fields.get(name)
        if value is not None and value.HasField("string_value"):
            found[name] = value.string_value[:512]
    return found


def _trace(found: dict[str, str]) -> dict[str, str] | None:
    return found if "traceparent" in found else None


async def _settle(state: ServerState, tenant: str, run_id: str) -> None:
    """Until the run ends or pauses (or ``wait_timeout_s``: then it is still ``working``)."""
    try:
        async with asyncio.timeout(state.settings.wait_timeout_s):
            if not await state.executor.settled(tenant, run_id):
                async for _ in follow_run(state, tenant, run_id):
                    pass
    except TimeoutError:
        pass


class _ContextBuilder(ServerCallContextBuilder):
    """The call context carries the caller the route resolved (and the server state)."""

    def build(self, request: Request) -> ServerCallContext:
        context = ServerCallContext()
        context.state["penguiflow_caller"] = getattr(request.state, "penguiflow_caller", None)
        context.state["penguiflow_state"] = getattr(request.app.state, "penguiflow", None)
        context.state["headers"] = {
            k: v for k, v in request.headers.items() if k.lower() != "authorization"
        }
        return context


def dispatcher(state: ServerState) -> JsonRpcDispatcher:
    """The app's dispatcher (one per app, kept in ``state.extras``)."""
    found = state.extras.get("a2a_dispatcher")
    if isinstance(found, JsonRpcDispatcher):
        return found
    made = JsonRpcDispatcher(
        request_handler=RunsRequestHandler(),
        context_builder=_ContextBuilder(),
        enable_v0_3_compat=True,
    )
    state.extras["a2a_dispatcher"] = made
    return made
