"""``transport: a2a``: the skills of a remote A2A agent as tools (on ``a2a-sdk``'s client).

The source reads the agent's card (``<url>/.well-known/agent-card.json``);
each skill is a tool ``<source>.<skill id>`` taking ``{"message": "..."}``.
A call is one A2A task: the message is sent (streamed when the card says the
agent streams, else sent with ``returnImmediately`` and polled), and its end
is the tool's outcome:

- ``completed``: the text of the task's artifacts (the ``answer`` one when
  there is one), else of its last status message;
- ``input-required``: the agent's question goes to the person behind the call
  like an MCP elicitation (``CallContext.extra["elicit"]``); their answer is
  sent to the same task, which goes on. No one to ask, or no answer: a
  ``tool_error`` quoting the question;
- ``auth-required``: ``authorization_required`` (the run pauses like on an OAuth
  source; the status message's first URL is where to authorize). Resuming the
  run calls again, which reattaches to the same task (see below);
- ``failed`` / ``rejected``: a ``tool_error`` with the agent's message;
  ``canceled`` by the agent: ``cancelled``;
- the agent cannot be reached, or the connection drops: ``unavailable``
  (so the breaker counts it); a client timeout: ``timeout``.

A call that is cancelled (the run cancelled, its timeout or deadline) cancels
the remote task (``CancelTask``, shielded, bounded by ``CANCEL_TIMEOUT_S``).
The card's endpoint must be on the manifest URL's origin: credentials are
never sent where a card alone says. The call carries the run's W3C trace
context in the message metadata (``traceparent``), and the skill id
(``skill``). Protection (semaphore, timeouts, breaker, retries) is
``ProtectedSource``'s, as for every source.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError
from google.protobuf.json_format import MessageToDict

from penguiflow_agents._log import get_logger
from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._types import (
    CallContext,
    ToolErrorKind,
    ToolResult,
    ToolSpec,
    trace_headers,
)

__all__ = ["CANCEL_TIMEOUT_S", "CARD_TTL_S", "A2AToolSource", "RemoteTask", "answer_text"]

log = get_logger("penguiflow_agents.tools.a2a")

# How long a fetched card is used before it is read again (a failed re-read keeps the old one).
CARD_TTL_S = 60.0
# Longest wait for the remote agent to acknowledge a cancel when a call is cancelled.
CANCEL_TIMEOUT_S = 5.0
# Polling interval for an agent that does not stream.
POLL_S = 0.25
# Longest remote message quoted in a tool error.
_QUOTE_CHARS = 500
# Questions one call answers before it gives up (an agent asking forever).
MAX_QUESTIONS = 5

_INTERRUPTED = (TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED)
_TERMINAL = (
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
)

_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "minLength": 1, "description": "what to ask the agent"}
    },
    "required": ["message"],
    "additionalProperties": False,
}
_ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "description": "your answer to the agent"}},
    "required": ["answer"],
}


def _cut(text: str) -> str:
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "…"


def _parts_text(parts: Any) -> str:
    pieces = []
    for part in parts:
        if part.HasField("text"):
            pieces.append(part.text)
        elif part.HasField("data"):
            pieces.append(json.dumps(MessageToDict(part.data), ensure_ascii=False))
        elif part.HasField("url"):
            pieces.append(part.url)
    return "\n".join(pieces)


@dataclass(slots=True)
class RemoteTask:
    """A remote task as the stream told it so far (artifact chunks joined in order)."""

    id: str = ""
    context_id: str = ""
    state: int = TaskState.TASK_STATE_SUBMITTED
    message: str = ""
    artifacts: dict[str, list[str]] = field(default_factory=dict)
    chunks: int = 0  # text chunks streamed so far
    pending: asyncio.Future[None] | None = None  # the on_known call in progress
    known: asyncio.Event = field(default_factory=asyncio.Event)  # set once ``id`` is

    # Told once the id is known (a2a sources bind it to the call); must not raise.
    on_known: Callable[[RemoteTask], Awaitable[None]] | None = None

    def _named(self, task_id: str) -> None:
        if task_id and not self.id:
            self.id = task_id
            self.known.set()
            if self.on_known is not None:
                self.pending = asyncio.ensure_future(self.on_known(self))

    def take(self, event: StreamResponse) -> str | None:
        """Fold one stream event in; the text chunk it carried, if any."""
        if event.HasField("task"):
            self.take_task(event.task)
        elif event.HasField("status_update"):
            update = event.status_update
            self._named(update.task_id)
            self.state = update.status.state
            if update.status.HasField("message"):
                self.message = _parts_text(update.status.message.parts)
        elif event.HasField("artifact_update"):
            piece = event.artifact_update
            self._named(piece.task_id)
            chunk = _parts_text(piece.artifact.parts)
            key = piece.artifact.artifact_id
            if piece.append:
                self.artifacts.setdefault(key, []).append(chunk)
            else:
                self.artifacts[key] = [chunk]
            return chunk if piece.append or not piece.last_chunk else None
        elif event.HasField("message"):
            self.state = TaskState.TASK_STATE_COMPLETED
            self.message = _parts_text(event.message.parts)
        return None

    def take_task(self, task: Task) -> None:
        self._named(task.id)
        self.context_id = task.context_id
        self.state = task.status.state
        if task.status.HasField("message"):
            self.message = _parts_text(task.status.message.parts)
        if task.artifacts:
            self.artifacts = {a.artifact_id: [_parts_text(a.parts)] for a in task.artifacts}

    @property
    def settled(self) -> bool:
        return self.state in _TERMINAL or self.state in _INTERRUPTED


def answer_text(task: RemoteTask) -> str:
    """What a completed task answered: its ``answer`` artifact, all artifacts, or its message."""
    if "answer" in task.artifacts:
        return "".join(task.artifacts["answer"])
    if task.artifacts:
        return "\n".join("".join(chunks) for chunks in task.artifacts.values())
    return task.message


def same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.hostname, x.port) == (y.scheme, y.hostname, y.port)


class A2AToolSource:
    """The skills of the A2A agent at ``url`` as tools (see the module docstring)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        shown_url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self._shown = shown_url or url  # as written in the manifest (no secret values)
        self._headers = dict(headers or {})
        self._http = http
        self._own_http = http is None
        self._card: AgentCard | None = None
        self._card_at = 0.0
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_manifest(cls, manifest: SourceManifest) -> A2AToolSource:
        headers = manifest.resolved_headers()
        if manifest.auth is not None:
            auth = manifest.auth.resolved(file=manifest.path)
            headers["Authorization"] = f"Bearer {auth.token}"
        url = manifest.resolved_url()
        assert url is not None  # the manifest requires it
        return cls(manifest.name, url, headers=headers, shown_url=manifest.url)

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            # Per-call limits are ProtectedSource's; this only bounds one request's silence.
            self._http = httpx.AsyncClient(
                headers=self._headers, timeout=httpx.Timeout(30.0, read=None)
            )
        return self._http

    async def card(self) -> AgentCard:
        """The agent's card (read again after ``CARD_TTL_S``; the last one if that fails)."""
        async with self._lock:
            fresh = self._card is not None and time.monotonic() - self._card_at < CARD_TTL_S
            if fresh:
                assert self._card is not None
                return self._card
            try:
                card = await A2ACardResolver(self._http_client(), self.url).get_agent_card()
            except Exception as exc:
                if self._card is not None:
                    log.warning("a2a.card_stale", source=self.name, error=type(exc).__name__)
                    self._card_at = time.monotonic()
                    return self._card
                raise _unreachable(self.name, self._shown, exc) from None
            self._check_endpoints(card)
            if self._card is None or card.SerializeToString() != self._card.SerializeToString():
                self._client = None
            self._card, self._card_at = card, time.monotonic()
            return card

    def _check_endpoints(self, card: AgentCard) -> None:
        ours = [i for i in card.supported_interfaces if same_origin(i.url, self.url)]
        if not ours:
            raise ToolSourceError(
                f"the agent card of source {self.name!r} ({self._shown}) names no JSON-RPC "
                "endpoint on that origin; credentials are only sent to the manifest's origin, "
                "so set url: to the agent's own address."
            )
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(ours)

    async def _a2a(self) -> tuple[Client, AgentCard]:
        card = await self.card()
        if self._client is None:
            config = ClientConfig(httpx_client=self._http_client(), streaming=True)
            self._client = ClientFactory(config).create(card)
        return self._client, card

    async def list_tools(self) -> list[ToolSpec]:
        card = await self.card()
        specs = []
        for skill in card.skills:
            text = skill.description or skill.name or skill.id
            if skill.examples:
                text += " Examples: " + "; ".join(skill.examples[:3])
            specs.append(
                ToolSpec(
                    name=skill.id,
                    source=self.name,
                    description=text,
                    input_schema=_INPUT_SCHEMA,
                    binding={"transport": "a2a", "skill": skill.id, "agent": card.name},
                    resumable=True,  # a call made again reattaches to its bound task
                )
            )
        return specs

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        qualified = f"{self.name}.{tool}"
        text = str(arguments.get("message") or "")
        try:
            client, card = await self._a2a()
        except ToolSourceError as exc:
            return ToolResult.failure(qualified, ToolErrorKind.UNAVAILABLE, str(exc))
        if not any(s.id == tool for s in card.skills):
            return ToolResult.failure(
                qualified,
                ToolErrorKind.NOT_FOUND,
                f"the agent of source {self.name!r} has no skill {tool!r} (any more).",
            )
        task = RemoteTask()
        binding = _Binding.of(ctx, qualified, self.url)
        reattach = False
        if binding is not None:
            found = await binding.find()
            if found:  # the same call, made again after a takeover: reattach to its task
                task.take_task(Task(id=found[0], context_id=found[1]))
                task.state = TaskState.TASK_STATE_WORKING
                reattach = True
                log.info("a2a.reattach", source=self.name, task_id=found[0])
        try:
            for _ in range(MAX_QUESTIONS + 1):
                request = _request(text, tool, ctx, task)
                exchange = asyncio.ensure_future(
                    self._exchange(
                        client, card, request, task, ctx, qualified, binding, reattach=reattach
                    )
                )
                reattach = False
                try:
                    # Shielded: a cancelled call first learns the task id (the stream may not
                    # have named it yet), then cancels the remote task, then the exchange.
                    await asyncio.shield(exchange)
                except asyncio.CancelledError:
                    await _abandon(client, exchange, task, self.name)
                    raise
                if task.state != TaskState.TASK_STATE_INPUT_REQUIRED:
                    break
                answer = await self._ask(ctx, task)
                if answer is None:
                    return ToolResult.failure(
                        qualified,
                        ToolErrorKind.TOOL_ERROR,
                        f"the agent asks for input ({_cut(task.message)!r}) and no one "
                        "answered; its task stays open. Ask the user, then call again with "
                        "the answer in the message.",
                    )
                text = answer
            return _outcome(qualified, task, self.name, ctx)
        except A2AClientTimeoutError:
            return ToolResult.failure(
                qualified, ToolErrorKind.TIMEOUT, f"the agent of source {self.name!r} timed out."
            )
        except A2AClientError as exc:
            if str(exc).startswith(("HTTP Error 401", "HTTP Error 403")):
                return ToolResult.failure(
                    qualified,
                    ToolErrorKind.TOOL_ERROR,
                    f"the agent of source {self.name!r} refused the credentials "
                    f"({str(exc)[:14]}); check auth: in {self.name}'s manifest.",
                )
            return _unreachable(self.name, self._shown, exc).result(qualified)
        except A2AError as exc:  # the agent answered with a JSON-RPC error
            message = getattr(exc, "message", None) or type(exc).__name__
            return ToolResult.failure(
                qualified,
                ToolErrorKind.TOOL_ERROR,
                f"the agent of source {self.name!r} refused the request: {_cut(str(message))}",
            )
        except (httpx.HTTPError, OSError) as exc:
            return _unreachable(self.name, self._shown, exc).result(qualified)

    async def _exchange(
        self,
        client: Client,
        card: AgentCard,
        request: SendMessageRequest,
        task: RemoteTask,
        ctx: CallContext,
        qualified: str,
        binding: _Binding | None = None,
        *,
        reattach: bool = False,
    ) -> None:
        """One message to the task (or, ``reattach``, its stream again) and what it led to,
        folded into ``task``; the task is bound (``binding``) as soon as it is known."""
        if binding is not None:
            task.on_known = binding.bind
        try:
            if reattach:
                await self._resubscribe(client, task, ctx, qualified)
            elif card.capabilities.streaming:
                async for chunk in self._stream(client, request, task):
                    task.chunks += 1
                    await _emit_chunk(ctx, qualified, chunk, task.chunks)
            else:
                await self._poll(client, request, task)
        except A2AError as exc:
            # An answer to a question may find the task already ended (a decision
            # elsewhere resumed it): its end is the outcome.
            if isinstance(exc, A2AClientError) or not await self._ended(client, task):
                raise

    async def _resubscribe(
        self, client: Client, task: RemoteTask, ctx: CallContext, qualified: str
    ) -> None:
        try:
            async for event in client.subscribe(SubscribeToTaskRequest(id=task.id)):
                chunk = task.take(event)
                if chunk:
                    task.chunks += 1
                    await _emit_chunk(ctx, qualified, chunk, task.chunks)
                if task.settled and event.HasField("status_update"):
                    break
        except A2AClientError:
            raise
        except A2AError:  # the agent will not resubscribe (e.g. to an ended task): ask
            pass
        task.take_task(await client.get_task(GetTaskRequest(id=task.id)))
        await self._wait(client, task)

    async def _stream(
        self, client: Client, request: SendMessageRequest, task: RemoteTask
    ) -> AsyncIterator[str]:
        async for event in client.send_message(request):
            chunk = task.take(event)
            if chunk:
                yield chunk
            if task.settled and event.HasField("status_update"):
                break
        if not task.settled and task.id:  # the stream ended early: ask where the task is
            task.take_task(await client.get_task(GetTaskRequest(id=task.id)))
            await self._wait(client, task)

    async def _ended(self, client: Client, task: RemoteTask) -> bool:
        if not task.id or task.state != TaskState.TASK_STATE_INPUT_REQUIRED:
            return False
        task.take_task(await client.get_task(GetTaskRequest(id=task.id)))
        if task.state not in _TERMINAL:
            task.state = TaskState.TASK_STATE_INPUT_REQUIRED
            return False
        return True

    async def _poll(self, client: Client, request: SendMessageRequest, task: RemoteTask) -> None:
        request.configuration.return_immediately = True
        async for event in client.send_message(request):
            task.take(event)
        await self._wait(client, task)

    async def _wait(self, client: Client, task: RemoteTask) -> None:
        while not task.settled:
            await asyncio.sleep(POLL_S)
            task.take_task(await client.get_task(GetTaskRequest(id=task.id)))

    async def _ask(self, ctx: CallContext, task: RemoteTask) -> str | None:
        from penguiflow_agents.tools._mcp_elicit import Elicitation

        person = ctx.extra.get("elicit")
        if person is None:
            return None
        question = Elicitation(
            source=self.name,
            message=task.message or "The agent needs more input.",
            mode="form",
            schema=_ANSWER_SCHEMA,
        )
        try:
            action, content = await person(question)
        except Exception:
            log.exception("a2a.elicit_failed", source=self.name)
            return None
        answer = (content or {}).get("answer")
        if action != "accept" or not isinstance(answer, str) or not answer.strip():
            return None
        return answer

    async def aclose(self) -> None:
        self._client = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None


@dataclass(slots=True)
class _Binding:
    """Where a call's remote task is bound: the run's store, keyed by run and call id."""

    store: Any
    tenant: str
    run_id: str
    key: str
    agent_url: str

    @classmethod
    def of(cls, ctx: CallContext, qualified: str, agent_url: str) -> _Binding | None:
        if ctx.store is None or not ctx.run_id or not ctx.call_id or ctx.tenant is None:
            return None
        key = f"tool:{qualified}:{ctx.call_id}"
        return cls(ctx.store, ctx.tenant, ctx.run_id, key, agent_url)

    async def find(self) -> tuple[str, str] | None:
        try:
            found = await self.store.get_remote(self.tenant, self.run_id, self.key)
        except Exception as exc:  # a store without bindings (a workflow's): no reattach
            log.debug("a2a.binding_unavailable", error=type(exc).__name__)
            return None
        return None if found is None else (found.task_id, found.context_id)

    async def bind(self, task: RemoteTask) -> None:
        from penguiflow_agents.store import RemoteBinding

        try:
            await self.store.bind_remote(
                RemoteBinding(
                    tenant=self.tenant,
                    trace_id=self.run_id,
                    key=self.key,
                    agent_url=self.agent_url,
                    task_id=task.id,
                    context_id=task.context_id,
                    created_at=time.time(),
                )
            )
        except Exception as exc:
            log.warning("a2a.bind_failed", key=self.key, error=type(exc).__name__)


class ToolSourceError(Exception):
    """The agent cannot be used (unreachable, or its card is not acceptable)."""

    def result(self, tool: str) -> ToolResult:
        return ToolResult.failure(tool, ToolErrorKind.UNAVAILABLE, str(self))


def _unreachable(name: str, shown: str, exc: BaseException) -> ToolSourceError:
    status = ""
    if isinstance(exc, httpx.HTTPStatusError):
        status = f" (HTTP {exc.response.status_code})"
    elif isinstance(exc, A2AClientError) and str(exc).startswith("HTTP Error "):
        status = f" ({str(exc).split(':', 1)[0]})"
    return ToolSourceError(
        f"the agent of source {name!r} at {shown} could not be reached{status}: "
        f"{type(exc).__name__}. Check that it is up and that url: is right."
    )


def _request(text: str, skill: str, ctx: CallContext, task: RemoteTask) -> SendMessageRequest:
    message = Message(
        message_id=uuid.uuid4().hex,
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        task_id=task.id,
        context_id=task.context_id,
    )
    request = SendMessageRequest(message=message)
    request.metadata.update({"skill": skill, **trace_headers(ctx)})
    return request


def _outcome(qualified: str, task: RemoteTask, source: str, ctx: CallContext) -> ToolResult:
    state = task.state
    if state == TaskState.TASK_STATE_COMPLETED:
        answer = answer_text(task)
        return ToolResult.success(
            qualified, answer, structured={"task_id": task.id, "state": "completed"}
        )
    said = f": {_cut(task.message)}" if task.message else ""
    if state == TaskState.TASK_STATE_CANCELED:
        return ToolResult.failure(
            qualified, ToolErrorKind.CANCELLED, f"the agent cancelled the task{said}"
        )
    if state == TaskState.TASK_STATE_AUTH_REQUIRED:
        return _authorization_required(qualified, task, source, ctx)
    if state == TaskState.TASK_STATE_INPUT_REQUIRED:
        return ToolResult.failure(
            qualified,
            ToolErrorKind.TOOL_ERROR,
            f"the agent kept asking for input ({MAX_QUESTIONS} questions answered){said}",
        )
    verb = "rejected" if state == TaskState.TASK_STATE_REJECTED else "failed"
    return ToolResult.failure(qualified, ToolErrorKind.TOOL_ERROR, f"the agent's task {verb}{said}")


_URL_RE = re.compile(r"https?://[^\s<>\"')\]]+")


def _authorization_required(
    qualified: str, task: RemoteTask, source: str, ctx: CallContext
) -> ToolResult:
    """The remote task waits for an authorization (``auth-required``): the run pauses on it
    like on an OAuth source's (the planner's authorization wait). Resuming the run makes the
    call again, which reattaches to the same task (its binding): once the person authorized
    with the agent, the task goes on there and its end is the call's."""
    found = _URL_RE.search(task.message or "")
    url = found.group(0).rstrip(".,;:") if found else None
    reason = _cut(task.message) if task.message else "the remote agent asks for an authorization"
    result = ToolResult.failure(
        qualified,
        ToolErrorKind.AUTHORIZATION_REQUIRED,
        f"the agent of source {source!r} needs an authorization first ({reason}); authorize "
        "with it" + (f" at {url}" if url else "") + ", then resume the run.",
    )
    result.structured = {
        "authorization": {
            "source": source,
            "tenant": ctx.tenant,
            "principal": ctx.principal,
            "url": url,
            "reason": reason,
        },
        "task_id": task.id,
    }
    return result


async def _abandon(
    client: Client, exchange: asyncio.Future[None], task: RemoteTask, source: str
) -> None:
    """The call was cancelled: cancel the remote task (once its id is known, within
    ``CANCEL_TIMEOUT_S``), then stop the exchange; shielded from a second cancel."""

    async def stop() -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(CANCEL_TIMEOUT_S):
                if not task.id and not exchange.done():
                    waiter: asyncio.Future[Any] = asyncio.ensure_future(task.known.wait())
                    both: set[asyncio.Future[Any]] = {waiter, exchange}
                    await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                exchange.cancel()
                if task.id and task.state not in _TERMINAL:
                    await client.cancel_task(CancelTaskRequest(id=task.id))
                    log.info("a2a.remote_cancelled", source=source, task_id=task.id)
        exchange.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait({exchange}, timeout=CANCEL_TIMEOUT_S)

    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(asyncio.ensure_future(stop()))


async def _emit_chunk(ctx: CallContext, tool: str, chunk: str, index: int) -> None:
    """A streamed chunk as ``tool.progress`` (as MCP progress: ``progress`` counts chunks)."""
    if ctx.on_event is None:
        return
    payload = {
        "tool": tool,
        "call_id": ctx.call_id,
        "progress": index,
        "total": None,
        "message": chunk,
    }
    try:
        outcome = ctx.on_event("tool.progress", payload)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:  # an observer must not break a call
        log.exception("a2a.event_sink_failed", tool=tool)
