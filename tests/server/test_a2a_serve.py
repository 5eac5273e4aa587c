"""The service as an A2A agent, driven by a2a-sdk's own client against the app on a real
uvicorn on 127.0.0.1: the card, send, stream, a paused run as input-required naming its
approval, cancel, the 0.3 method names, and tenant isolation (a foreign task id answers like
an unknown one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotFoundError

from tests.server.conftest import KEYS, Service, live_service

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def a2a_client(svc: Service, who: str, *, streaming: bool) -> AsyncIterator[Client]:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {KEYS[who]}"}, timeout=60)
    try:
        factory = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming))
        client = await factory.create_from_url(str(svc.client.base_url))
        yield client
    finally:
        await http.aclose()


def ask(text: str, **kw: object) -> SendMessageRequest:
    message = Message(message_id=f"m-{text}", role=Role.ROLE_USER, parts=[Part(text=text)])
    return SendMessageRequest(message=message, **kw)  # type: ignore[arg-type]


async def final_task(
    client: Client, request: SendMessageRequest
) -> tuple[Task, list[StreamResponse]]:
    events = [event async for event in client.send_message(request)]
    assert events[0].HasField("task"), events[0]
    task_id = events[0].task.id
    task = await client.get_task(GetTaskRequest(id=task_id))
    return task, events


async def test_the_agent_card_names_one_skill_the_endpoint_and_bearer_keys() -> None:
    async with live_service() as svc:
        async with httpx.AsyncClient() as http:
            card = await A2ACardResolver(http, str(svc.client.base_url)).get_agent_card()
        assert [s.id for s in card.skills] == ["run"]
        assert card.capabilities.streaming
        urls = {(i.protocol_binding, i.protocol_version, i.url) for i in card.supported_interfaces}
        base = str(svc.client.base_url).rstrip("/")
        assert ("JSONRPC", "1.0", base + "/a2a") in urls
        scheme = card.security_schemes["bearer"].http_auth_security_scheme
        assert scheme.scheme == "bearer"
        assert "bearer" in card.security_requirements[0].schemes


async def test_send_runs_the_planner_as_the_caller_and_the_task_id_is_the_run_id() -> None:
    async with live_service() as svc:
        async with a2a_client(svc, "alice", streaming=False) as client:
            task, _ = await final_task(client, ask("add 2 3"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        answer = task.artifacts[0]
        assert answer.artifact_id == "answer"
        assert answer.parts[0].text == "done: 5"
        run = await svc.get(f"/v1/runs/{task.id}")
        assert run.status_code == 200
        assert run.json()["status"] == "completed"
        assert run.json()["steps"][0]["tool"] == "math.add"


async def test_a_tool_the_callers_policy_denies_is_denied_over_a2a_too() -> None:
    async with live_service() as svc:
        # globex may use math.* only: the write is denied by policy, the model is told so.
        async with a2a_client(svc, "globex", streaming=False) as client:
            task, _ = await final_task(client, ask("write secret"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        run = (await svc.get(f"/v1/runs/{task.id}", "globex")).json()
        assert run["steps"][0]["outcome"] in {"denied", "not_found"}


async def test_stream_sends_the_task_first_then_tool_progress_then_the_answer_and_final_state() -> (
    None
):
    async with live_service() as svc:
        async with a2a_client(svc, "alice", streaming=True) as client:
            events = [e async for e in client.send_message(ask("add 4 5"))]
        assert events[0].HasField("task")
        kinds = [e.WhichOneof("payload") for e in events]
        assert kinds[-1] == "status_update"
        assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
        answers = [e.artifact_update for e in events if e.HasField("artifact_update")]
        assert answers[-1].artifact.parts[0].text == "done: 9"
        progress = [
            e.status_update.status.message.parts[0].text
            for e in events[:-1]
            if e.HasField("status_update")
        ]
        assert progress == ["calling math.add"]
        ids = {e.task.id for e in events if e.HasField("task")} | {
            e.status_update.task_id for e in events if e.HasField("status_update")
        }
        assert len(ids) == 1


async def test_a_run_paused_for_approval_is_input_required_naming_the_approval() -> None:
    async with live_service() as svc:
        # Each model turn takes a while: the decision resumes the run at once (in the
        # background), and the caller's follow-up below must find it still going to follow it
        # (an in-process model answering at once could end the run first: a task that ended
        # takes no more messages).
        svc.llm.delay_s = 0.3
        async with a2a_client(svc, "alice", streaming=False) as client:
            task, _ = await final_task(client, ask("slow write hello"))
            assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            pending = task.metadata["pending_approvals"]
            approval_id = pending[0]["id"]
            assert pending[0]["tool"] == "files.write_text"
            assert approval_id in task.status.message.parts[0].text
            # Decided over the service, the task continues when the caller sends to it again.
            decided = await svc.post(
                f"/v1/approvals/{approval_id}/decision", "boss", {"decision": "approve"}
            )
            assert decided.status_code == 200, decided.text
            follow = ask("go on")
            follow.message.task_id = task.id
            again, _ = await final_task(client, follow)
            deadline = asyncio.get_running_loop().time() + 60
            while again.status.state != TaskState.TASK_STATE_COMPLETED:
                assert asyncio.get_running_loop().time() < deadline, again
                await asyncio.sleep(0.2)
                again = await client.get_task(GetTaskRequest(id=task.id))
        assert again.id == task.id
        assert "wrote 5 characters" in again.artifacts[0].parts[0].text


async def test_cancel_cancels_the_run() -> None:
    async with live_service() as svc:
        async with a2a_client(svc, "alice", streaming=False) as client:
            request = ask("wait")
            request.configuration.return_immediately = True
            events = [e async for e in client.send_message(request)]
            task_id = events[0].task.id
            assert events[0].task.status.state == TaskState.TASK_STATE_WORKING
            cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
            assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        run = (await svc.get(f"/v1/runs/{task_id}")).json()
        assert run["status"] == "cancelled"


async def test_another_tenants_task_id_answers_like_an_unknown_one() -> None:
    async with live_service() as svc:
        async with a2a_client(svc, "alice", streaming=False) as client:
            task, _ = await final_task(client, ask("add 1 1"))
        async with a2a_client(svc, "globex", streaming=False) as other:
            with pytest.raises(TaskNotFoundError) as foreign:
                await other.get_task(GetTaskRequest(id=task.id))
            with pytest.raises(TaskNotFoundError) as unknown:
                await other.get_task(GetTaskRequest(id="run-that-does-not-exist"))
            with pytest.raises(TaskNotFoundError):
                await other.cancel_task(CancelTaskRequest(id=task.id))
        assert str(foreign.value) == str(unknown.value)
        assert (await svc.get(f"/v1/runs/{task.id}")).json()["status"] == "completed"


async def test_the_0_3_method_names_work_and_a_missing_key_is_401() -> None:
    async with live_service() as svc:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "message/send",
            "params": {
                "message": {
                    "kind": "message",
                    "messageId": "m1",
                    "role": "user",
                    "parts": [{"kind": "text", "text": "add 20 22"}],
                }
            },
        }
        r = await svc.client.post("/a2a", json=body)
        assert r.status_code == 401
        r = await svc.post("/a2a", json=body)
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        assert result["status"]["state"] == "completed"
        assert result["artifacts"][0]["parts"][0]["text"] == "done: 42"
        got = await svc.post(
            "/a2a",
            json={"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": result["id"]}},
        )
        assert got.json()["result"]["id"] == result["id"]
