"""``A2ATransport``: the ``RemoteTransport`` seam over A2A (``a2a-sdk``'s JSON-RPC client).

One HTTP client for every agent (``headers``, e.g. ``Authorization``, on each
request); one a2a-sdk client per agent URL, made from its card. The card's endpoint must be on the agent URL's
origin (credentials only go where they were configured to). a2a-sdk's
exceptions are translated here into ``RemoteAgentError``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError
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
    TaskState,
)
from a2a.utils.errors import A2AError

from penguiflow_agents.exceptions import RemoteAgentError
from penguiflow_agents.tools._a2a import POLL_S, RemoteTask, answer_text, same_origin

from ._remote import RemoteAgent, RemoteEvent, RemoteRequest, RemoteSkill

__all__ = ["A2ATransport", "state_name"]

_NAMES: dict[int, str] = {
    TaskState.TASK_STATE_SUBMITTED: "submitted",
    TaskState.TASK_STATE_WORKING: "working",
    TaskState.TASK_STATE_INPUT_REQUIRED: "input-required",
    TaskState.TASK_STATE_AUTH_REQUIRED: "auth-required",
    TaskState.TASK_STATE_COMPLETED: "completed",
    TaskState.TASK_STATE_FAILED: "failed",
    TaskState.TASK_STATE_CANCELED: "canceled",
    TaskState.TASK_STATE_REJECTED: "rejected",
}


def state_name(state: int) -> str:
    return _NAMES.get(int(state), "unknown")


class A2ATransport:
    """A2A agents as remote agents (see the module docstring)."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._headers = dict(headers or {})
        self._http = http
        self._own_http = http is None
        self._agents: dict[str, tuple[AgentCard, Client]] = {}
        self._lock = asyncio.Lock()

    def _client_http(self, agent_url: str) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                headers=self._headers, timeout=httpx.Timeout(30.0, read=None)
            )
        return self._http

    async def _agent(self, agent_url: str) -> tuple[AgentCard, Client]:
        url = agent_url.rstrip("/")
        async with self._lock:
            found = self._agents.get(url)
            if found is not None:
                return found
            http = self._client_http(url)
            try:
                card = await A2ACardResolver(http, url).get_agent_card()
            except Exception as exc:
                raise RemoteAgentError(
                    f"the agent card at {url} could not be read ({type(exc).__name__}); check "
                    "that the agent is up and the URL is right.",
                    unavailable=True,
                ) from None
            ours = [i for i in card.supported_interfaces if same_origin(i.url, url)]
            if not ours:
                raise RemoteAgentError(
                    f"the agent card at {url} names no endpoint on that origin; credentials "
                    "are only sent to the agent URL's origin."
                )
            del card.supported_interfaces[:]
            card.supported_interfaces.extend(ours)
            client = ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(card)
            self._agents[url] = (card, client)
            return card, client

    async def agent_card(self, agent_url: str) -> RemoteAgent:
        card, _ = await self._agent(agent_url)
        return RemoteAgent(
            name=card.name,
            url=agent_url,
            description=card.description,
            skills=tuple(
                RemoteSkill(id=s.id, name=s.name, description=s.description) for s in card.skills
            ),
            streaming=card.capabilities.streaming,
        )

    async def send(self, request: RemoteRequest) -> RemoteEvent:
        end: RemoteEvent | None = None
        async for event in self.stream(request):
            if event.kind == "end":
                end = event
        assert end is not None  # stream always ends with one
        return end

    async def stream(self, request: RemoteRequest) -> AsyncIterator[RemoteEvent]:
        card, client = await self._agent(request.agent_url)
        task = RemoteTask()
        announced = False
        try:
            source = self._source(client, card, request)
            async for event in source:
                chunk = task.take(event)
                if task.id and not announced:
                    announced = True
                    yield RemoteEvent(
                        kind="task",
                        task_id=task.id,
                        context_id=task.context_id,
                        state=state_name(task.state),
                    )
                if chunk:
                    yield RemoteEvent(kind="chunk", task_id=task.id, text=chunk)
                if task.settled and event.HasField("status_update"):
                    break
            if not task.id and request.task_id:
                task.id = request.task_id
            while task.id and not task.settled:
                task.take_task(await client.get_task(GetTaskRequest(id=task.id)))
                if not task.settled:
                    await asyncio.sleep(POLL_S)
        except A2AClientError as exc:
            raise RemoteAgentError(
                f"the agent at {request.agent_url} could not be reached ({type(exc).__name__}).",
                unavailable=True,
            ) from None
        except A2AError as exc:
            message = getattr(exc, "message", None) or type(exc).__name__
            raise RemoteAgentError(
                f"the agent at {request.agent_url} refused the request: {str(message)[:500]}"
            ) from None
        if not announced and task.id:
            yield RemoteEvent(kind="task", task_id=task.id, context_id=task.context_id)
        state = state_name(task.state)
        text = answer_text(task) if state == "completed" else task.message
        yield RemoteEvent(
            kind="end", task_id=task.id, context_id=task.context_id, state=state, text=text
        )

    def _source(
        self, client: Client, card: AgentCard, request: RemoteRequest
    ) -> AsyncIterator[StreamResponse]:
        if request.task_id and not request.text:
            return self._reattach(client, request.task_id)
        message = Message(
            message_id=uuid.uuid4().hex,
            role=Role.ROLE_USER,
            parts=[Part(text=request.text)],
            task_id=request.task_id or "",
            context_id=request.context_id or "",
        )
        send = SendMessageRequest(message=message)
        metadata: dict[str, Any] = {"skill": request.skill, **dict(request.meta)}
        send.metadata.update(metadata)
        if not card.capabilities.streaming:
            send.configuration.return_immediately = True
        return client.send_message(send)

    async def _reattach(self, client: Client, task_id: str) -> AsyncIterator[StreamResponse]:
        """The task's stream from the start (SubscribeToTask); its state alone when the agent
        does not stream or will not resubscribe to a task that has ended."""
        try:
            async for event in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                yield event
        except A2AClientError:
            raise
        except A2AError:
            task = await client.get_task(GetTaskRequest(id=task_id))
            yield StreamResponse(task=task)

    async def cancel(self, agent_url: str, task_id: str) -> None:
        _, client = await self._agent(agent_url)
        try:
            await client.cancel_task(CancelTaskRequest(id=task_id))
        except A2AError as exc:
            raise RemoteAgentError(
                f"the agent at {agent_url} did not cancel task {task_id!r} ({type(exc).__name__}).",
                unavailable=isinstance(exc, A2AClientError),
            ) from None

    async def aclose(self) -> None:
        self._agents.clear()
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
