"""A Temporal worker in its own OS process (driven by the tests of this directory).

Usage: python worker_proc.py TEMPORAL_URL STORE_URL LAB_DIR

Tools (source ``ops``): ``status`` (idempotent), ``restart`` (gated for
role admin by the lab's policy) and ``deploy`` (not idempotent: it appends a
line to LAB_DIR/deploys, then, the first time, waits an hour so the test
can SIGKILL the worker mid-call). The model plays by the question:

- ``parallel``: two ``status`` calls and a gated ``restart`` in one turn, then
  an answer naming what the tools said;
- ``crash``: a first model turn that, on its first attempt only, writes
  LAB_DIR/model-attempts and waits an hour (the test kills the worker there);
  then ``deploy``; then an answer.

Every model turn appends its step to LAB_DIR/model-attempts.
Webhooks: ``PF_TEST_RULE_NOTIFY`` is the ``restart`` rule's ``notify`` URL,
``PF_TEST_NOTIFY`` the worker's own (``worker --notify``); with
``PENGUIFLOW_WEBHOOK_SECRET`` set, the worker delivers the outbox.
``PF_TEST_HANG_AFTER_PAUSE``: the worker's store, once it has written a run's record as
``paused`` (``record``), appended its ``paused`` event (``event``) or recorded a decision
(``decision``), or opened the approved call's once-only gate (``begin``) or recorded its
result (``finish``), waits an hour
before it answers (the test SIGKILLs the worker there: the write is in the store, the workflow task that
would record it in the history never completes).
Prints "ready" once polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.store import open_store
from penguiflow_agents.temporal import TemporalTarget, TemporalWorker
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

URL, STORE, LAB = sys.argv[1], sys.argv[2], Path(sys.argv[3])
POLICY = {
    "tenant": "*",
    "allow": ["ops.*"],
    "approvals": [
        {
            "match": "ops.restart",
            "approvers": ["role:admin"],
            "reason": "Restarts",
            **(
                {"notify": [os.environ["PF_TEST_RULE_NOTIFY"]]}
                if "PF_TEST_RULE_NOTIFY" in os.environ
                else {}
            ),
        }
    ],
}


def _append(name: str, line: str) -> int:
    with (LAB / name).open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    return len((LAB / name).read_text(encoding="utf-8").splitlines())


@tool(idempotent=True)
async def status(service: str) -> str:
    """The status of a service."""
    return f"{service} is up"


@tool
async def restart(service: str) -> str:
    """Restart a service."""
    await asyncio.to_thread(_append, "restarts", service)
    return f"restarted {service}"


@tool
async def deploy(version: str) -> str:
    """Deploy a version (not idempotent)."""
    if await asyncio.to_thread(_append, "deploys", version) == 1:
        await asyncio.sleep(3600)  # the test SIGKILLs this worker here
    return f"deployed {version}"


def _calls(*calls: tuple[str, dict[str, str]]) -> LLMResponse:
    return LLMResponse(
        content=None,
        tool_calls=[
            LLMToolCall(id=f"c{i}", name=name, arguments=args)
            for i, (name, args) in enumerate(calls, 1)
        ],
    )


async def model(request: LLMRequest) -> LLMResponse:
    question = next(m["content"] for m in request.messages if m["role"] == "user")
    step = 1 + sum(1 for m in request.messages if m["role"] == "assistant")
    attempts = await asyncio.to_thread(_append, "model-attempts", f"{question}:{step}")
    tools = [m["content"] for m in request.messages if m["role"] == "tool"]
    if question == "parallel":
        if step == 1:
            return _calls(
                ("ops.status", {"service": "db"}),
                ("ops.status", {"service": "cache"}),
                ("ops.restart", {"service": "web"}),
            )
        return LLMResponse(content="All done: " + " | ".join(tools))
    if question == "crash":
        if step == 1:
            if attempts == 1:
                await asyncio.sleep(3600)  # the test SIGKILLs this worker here
            return _calls(("ops.deploy", {"version": "v2"}))
        return LLMResponse(content="Deploy reported: " + " | ".join(tools))
    return LLMResponse(content=f"no script for {question!r}")


class HangAfterPause:
    """A store that, after writing a run as paused, never answers (see the module doc)."""

    def __init__(self, inner: Any, after: str) -> None:
        self.inner = inner
        self.after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _hang(self, run_id: str) -> None:
        await asyncio.to_thread(_append, "hung-after-pause", run_id)
        await asyncio.sleep(3600)  # the test SIGKILLs this worker here

    async def update_run(self, run: Any, *, expected_version: int) -> Any:
        written = await self.inner.update_run(run, expected_version=expected_version)
        if self.after == "record" and written.status == "paused":
            await self._hang(written.run_id)
        return written

    async def decide_approval(self, tenant: str, approval_id: str, decision: Any, **kw: Any) -> Any:
        decided = await self.inner.decide_approval(tenant, approval_id, decision, **kw)
        if self.after == "decision":
            await self._hang(decided.run_id)
        return decided

    async def begin_call(self, tenant: str, run_id: str, key: str) -> Any:
        begun = await self.inner.begin_call(tenant, run_id, key)
        if self.after == "begin" and key.startswith("apr_"):  # the approved call's gate
            await self._hang(run_id)
        return begun

    async def finish_call(self, tenant: str, run_id: str, key: str, result: Any) -> Any:
        await self.inner.finish_call(tenant, run_id, key, result)
        if self.after == "finish" and key.startswith("apr_"):  # the approved call's record
            await self._hang(run_id)

    async def append_event(self, tenant: str, run_id: str, kind: str, data: Any) -> Any:
        seq = await self.inner.append_event(tenant, run_id, kind, data)
        if self.after == "event" and kind == "paused":
            await self._hang(run_id)
        return seq

    async def append_events(self, tenant: str, run_id: str, events: Any) -> Any:
        seqs = await self.inner.append_events(tenant, run_id, events)
        if self.after == "event" and any(kind == "paused" for kind, _ in events):
            await self._hang(run_id)
        return seqs


async def main() -> None:
    store = await open_store(STORE)
    if os.environ.get("PF_TEST_HANG_AFTER_PAUSE"):
        store = HangAfterPause(store, os.environ["PF_TEST_HANG_AFTER_PAUSE"])
    registry = ToolRegistry()
    registry.add_functions(status, restart, deploy, source="ops", max_concurrency=4)
    llm = ScriptedLLM([model] * 8, record=False)
    worker = TemporalWorker(
        TemporalTarget.parse(URL),
        store=store,
        registry=registry,
        open_model=lambda _model: contextlib.nullcontext(llm),
        policy_documents=[POLICY],
        concurrency=4,
        sticky_timeout_s=1.0,  # a killed worker's runs move on quickly
        notify=[u for u in os.environ.get("PF_TEST_NOTIFY", "").split(",") if u],
        webhook_secret=os.environ.get("PENGUIFLOW_WEBHOOK_SECRET"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop=stop, handle_signals=True))
    await asyncio.sleep(0.5)
    print("ready", flush=True)
    await task
    await registry.aclose()
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
