"""A remote task in ``auth-required`` pauses the run like an OAuth source does (the planner's
authorization wait, naming the agent's sign-in URL); once the person has authorized with the
agent, resuming the run reattaches to the same task and gets its answer (the task ran once).
The agent is a2a-sdk's own JSON-RPC server (its routes and dispatcher) on a real uvicorn on
127.0.0.1, with a request handler that asks for authorization."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import TaskNotFoundError, UnsupportedOperationError
from starlette.applications import Starlette

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, load_manifest
from tests.server.serve_process import free_port

pytestmark = pytest.mark.timeout(120)

SIGN_IN = "https://agent.example/login?task=t1"


class AuthAgent(RequestHandler):
    """One skill, ``lookup``: a task asks for authorization until ``authorized`` is set."""

    def __init__(self) -> None:
        self.authorized = False
        self.created = 0
        self.tasks: set[str] = set()

    def _task(self, task_id: str) -> Task:
        task = Task(id=task_id, context_id="c1")
        if self.authorized:
            task.status.CopyFrom(TaskStatus(state=TaskState.TASK_STATE_COMPLETED))
            task.artifacts.append(Artifact(artifact_id="answer", parts=[Part(text="secret data")]))
        else:
            ask = Message(
                message_id="m",
                role=Role.ROLE_AGENT,
                parts=[Part(text=f"Sign in at {SIGN_IN} first.")],
            )
            task.status.CopyFrom(TaskStatus(state=TaskState.TASK_STATE_AUTH_REQUIRED, message=ask))
        return task

    async def on_message_send_stream(
        self, params: Any, context: ServerCallContext
    ) -> AsyncGenerator[Any]:
        self.created += 1
        task_id = f"t{self.created}"
        self.tasks.add(task_id)
        yield self._task(task_id)

    async def on_message_send(self, params: Any, context: ServerCallContext) -> Any:
        raise UnsupportedOperationError(message="stream only")

    async def on_subscribe_to_task(
        self, params: Any, context: ServerCallContext
    ) -> AsyncGenerator[Any]:
        if params.id not in self.tasks:
            raise TaskNotFoundError()
        yield self._task(params.id)

    async def on_get_task(self, params: Any, context: ServerCallContext) -> Task | None:
        return self._task(params.id) if params.id in self.tasks else None

    async def on_cancel_task(self, params: Any, context: ServerCallContext) -> Task | None:
        raise UnsupportedOperationError()

    async def on_list_tasks(self, params: Any, context: ServerCallContext) -> Any:
        raise UnsupportedOperationError()

    async def on_create_task_push_notification_config(
        self, params: Any, context: ServerCallContext
    ) -> Any:
        raise UnsupportedOperationError()

    async def on_get_task_push_notification_config(
        self, params: Any, context: ServerCallContext
    ) -> Any:
        raise UnsupportedOperationError()

    async def on_list_task_push_notification_configs(
        self, params: Any, context: ServerCallContext
    ) -> Any:
        raise UnsupportedOperationError()

    async def on_delete_task_push_notification_config(
        self, params: Any, context: ServerCallContext
    ) -> None:
        raise UnsupportedOperationError()

    async def on_get_extended_agent_card(
        self, params: Any, context: ServerCallContext
    ) -> AgentCard:
        raise UnsupportedOperationError()


@contextlib.asynccontextmanager
async def serving(agent: AuthAgent) -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    card = AgentCard(
        name="auth-agent",
        description="asks for authorization",
        version="1",
        supported_interfaces=[
            AgentInterface(url=url + "/a2a", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(id="lookup", name="lookup", description="Look something up.", tags=["x"])
        ],
    )
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(agent, "/a2a")])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield url
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=30)


async def test_auth_required_pauses_the_run_and_a_resume_reattaches_to_the_task(
    tmp_path: Path,
) -> None:
    agent = AuthAgent()
    async with serving(agent) as url:
        (tmp_path / "remote.yaml").write_text(f"name: remote\ntransport: a2a\nurl: {url}\n")
        registry = ToolRegistry()
        registry.add_manifest(load_manifest(tmp_path / "remote.yaml"))
        call = LLMToolCall(id="c1", name="remote.lookup", arguments={"message": "the secret"})
        llm = ScriptedLLM(
            [LLMResponse(content=None, tool_calls=[call]), LLMResponse(content="Got it.")]
        )
        policies = PolicySet.from_documents([{"tenant": "acme", "allow": ["remote.*"]}])
        who = Headers(tenant="acme", principal="alice")
        async with registry:
            planner = ReactPlanner(
                llm=llm, registry=registry, store=MemoryStore(), policies=policies
            )
            paused = await planner.run("look it up", headers=who)
            assert paused.status == "paused", paused
            wait = paused.pending_approvals[0]
            assert wait.kind == "authorization"
            assert wait.url == SIGN_IN
            assert wait.source == "remote"
            agent.authorized = True  # the person signed in with the agent
            done = await planner.resume(paused.run_id, headers=who)
    assert done.status == "completed", done
    assert done.answer == "Got it."
    assert "secret data" in str(done.steps[-1].result)
    assert agent.created == 1  # the resume reattached to the task: it was sent once
