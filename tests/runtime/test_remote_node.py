"""A ``RemoteNode`` in a flow, over ``A2ATransport``, against the service as an A2A agent on a
real uvicorn on 127.0.0.1: streamed chunks arrive in order and the answer ends the trace; the
deadline and flow.cancel reach the remote task; a trace taken over after its process was
SIGKILLed reattaches to its remote task (bound in the store) instead of sending again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.exceptions import RemoteAgentError
from penguiflow_agents.llm import LLMRequest, LLMResponse
from penguiflow_agents.llm._types import TextDelta
from penguiflow_agents.runtime import (
    A2ATransport,
    FinalAnswer,
    FlowError,
    Headers,
    Message,
    RemoteNode,
    StreamChunk,
    create,
)
from penguiflow_agents.store import SQLiteStore
from tests.server.conftest import KEYS, QuestionLLM, Service, live_service

pytestmark = pytest.mark.timeout(180)

WORDS = ["alpha ", "beta ", "gamma ", "delta"]


@dataclass
class StreamingLLM(QuestionLLM):
    """Streams its answer word by word (pauses between words so they reach the log apart)."""

    gap_s: float = 0.12
    streamed: list[str] = field(default_factory=list)

    async def stream(self, request: LLMRequest) -> AsyncIterator[TextDelta | LLMResponse]:
        question = next(str(m["content"]) for m in request.messages if m.get("role") == "user")
        if question.startswith("wait"):
            yield await self.complete(request)
            return
        for word in WORDS:
            await asyncio.sleep(self.gap_s)
            yield TextDelta(text=word)
        yield LLMResponse(content="".join(WORDS))


def transport(who: str = "alice") -> A2ATransport:
    return A2ATransport(headers={"Authorization": f"Bearer {KEYS[who]}"})


def url_of(svc: Service) -> str:
    return str(svc.client.base_url).rstrip("/")


async def remote_runs(svc: Service) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = (await svc.get("/v1/runs")).json()["runs"]
    return runs


async def until(what: str, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_streamed_chunks_arrive_in_order_and_the_answer_ends_the_trace() -> None:
    async with live_service(llm=StreamingLLM()) as svc:
        remote = transport()
        node = RemoteNode(url_of(svc), "run", transport=remote, name="research")
        flow = create(node.to())
        try:
            async with flow:
                msg = Message(payload="tell me", headers=Headers(tenant="acme"))
                await flow.emit(msg)
                items = [item async for item in flow.stream(msg.trace_id)]
        finally:
            await remote.aclose()
    chunks = [i for i in items if isinstance(i, StreamChunk)]
    answer = next(i for i in items if isinstance(i, FinalAnswer))
    assert answer.text == "".join(WORDS)
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert {c.stream_id for c in chunks} == {"research"}
    assert chunks[-1].done and chunks[-1].text == ""
    assert "".join(c.text for c in chunks) == "".join(WORDS)
    assert len(chunks) >= 3, chunks  # several pieces, not the answer in one go
    assert answer.meta["remote_task_id"]


async def test_the_deadline_cancels_the_remote_task() -> None:
    async with live_service() as svc:
        remote = transport()
        node = RemoteNode(url_of(svc), "run", transport=remote)
        flow = create(node.to())
        try:
            async with flow:
                loop_now = __import__("time").time()
                msg = Message(
                    payload="wait", headers=Headers(tenant="acme"), deadline_s=loop_now + 2
                )
                await flow.emit(msg)
                with pytest.raises(FlowError) as caught:
                    await flow.fetch(msg.trace_id)
        finally:
            await remote.aclose()
        assert caught.value.code == "deadline_exceeded"
        runs = await remote_runs(svc)
        assert len(runs) == 1

        async def cancelled() -> bool:
            return (await remote_runs(svc))[0]["status"] == "cancelled"

        await until("the remote run to be cancelled", cancelled)


async def test_cancelling_the_trace_cancels_the_remote_task() -> None:
    async with live_service() as svc:
        remote = transport()
        flow = create(RemoteNode(url_of(svc), "run", transport=remote).to())
        try:
            async with flow:
                msg = Message(payload="wait", headers=Headers(tenant="acme"))
                await flow.emit(msg)
                await until("the remote run", lambda: remote_runs(svc))
                await flow.cancel(msg.trace_id)
                with pytest.raises(FlowError) as caught:
                    await flow.fetch(msg.trace_id)
                assert caught.value.code == "cancelled"
        finally:
            await remote.aclose()

        async def cancelled() -> bool:
            return (await remote_runs(svc))[0]["status"] == "cancelled"

        await until("the remote run to be cancelled", cancelled)


async def test_a_remote_task_that_fails_fails_the_trace_naming_it() -> None:
    async with live_service() as svc:
        remote = transport("revoked")
        flow = create(RemoteNode(url_of(svc), "run", transport=remote, name="research").to())
        try:
            async with flow:
                msg = Message(payload="add 1 2", headers=Headers(tenant="acme"))
                await flow.emit(msg)
                with pytest.raises(FlowError) as caught:
                    await flow.fetch(msg.trace_id)
        finally:
            await remote.aclose()
        assert caught.value.node == "research"
        assert isinstance(caught.value.__cause__, RemoteAgentError)
        assert KEYS["revoked"] not in str(caught.value)


CRASHING = """
import asyncio, sys
from penguiflow_agents.runtime import A2ATransport, Headers, Message, RemoteNode, create
from penguiflow_agents.store import SQLiteStore

async def main(url, key, db, trace_id):
    store = SQLiteStore(db)
    remote = A2ATransport(headers={"Authorization": f"Bearer {key}"})
    node = RemoteNode(url, "run", transport=remote, store=store, name="research")
    async with create(node.to()) as flow:
        await flow.emit(Message(payload="wait", headers=Headers(tenant="acme"), trace_id=trace_id))
        await flow.fetch(trace_id)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_trace_taken_over_after_a_sigkill_reattaches_and_the_task_runs_once(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "flows.db")
    trace_id = "trace-taken-over"
    async with live_service() as svc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            textwrap.dedent(CRASHING),
            url_of(svc),
            KEYS["alice"],
            db,
            trace_id,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        store = SQLiteStore(db)
        try:

            async def bound() -> Any:
                if proc.returncode is not None:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise AssertionError(f"the first process ended: {err.decode()[-2000:]}")
                return await store.get_remote("acme", trace_id, "research")

            binding = await until("the binding", bound, timeout_s=120)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert [r["status"] for r in await remote_runs(svc)] == ["running"]
            # Another process takes the trace over: it finds the binding and reattaches.
            remote = transport()
            node = RemoteNode(url_of(svc), "run", transport=remote, store=store, name="research")
            try:
                async with create(node.to()) as flow:
                    msg = Message(payload="wait", headers=Headers(tenant="acme"), trace_id=trace_id)
                    await flow.emit(msg)
                    await asyncio.sleep(0.5)
                    svc.llm.release.set()
                    answer = await flow.fetch(trace_id)
            finally:
                await remote.aclose()
        finally:
            if proc.returncode is None:
                proc.kill()
            await store.aclose()
        assert isinstance(answer, FinalAnswer)
        assert answer.text == "released"
        assert answer.meta["remote_task_id"] == binding.task_id
        runs = await remote_runs(svc)
        assert len(runs) == 1, runs  # the task ran once
        assert runs[0]["run_id"] == binding.task_id and runs[0]["status"] == "completed"
