"""A worker in its own OS process (driven by test_processes.py).

Usage: python worker_proc.py BUS_URL STORE_URL COUNT_FILE

Runs a ``Worker`` on the Redis bus and the store until SIGTERM. Its model
(a ScriptedLLM) first calls ``count.bump`` with the run's id — the tool
appends one line to COUNT_FILE per execution — then answers. With
HANG_IN_SECOND_TURN=1 the second turn writes COUNT_FILE + ".hanging" and
blocks forever instead, so that the test can SIGKILL the worker mid-run
(after the step's checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from penguiflow_agents.bus import RedisBus
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.store import open_store
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool
from penguiflow_agents.worker import Worker

BUS, STORE, COUNT = sys.argv[1], sys.argv[2], Path(sys.argv[3])
# Short, so that the test sees a dead worker's job taken over quickly (unless the test sets
# the environment's VISIBILITY_TIMEOUT_S: a dead worker of this host must not need it).
VISIBILITY_TIMEOUT_S = float(os.environ.get("VISIBILITY_TIMEOUT_S", "1.0"))


@tool
def bump(run_id: str) -> str:
    """Append the run id to the count file (a non-idempotent effect)."""
    with COUNT.open("a", encoding="utf-8") as f:
        f.write(run_id + "\n")
    return "bumped"


def call_tool(request: LLMRequest) -> LLMResponse:
    run_id = str(request.metadata["run_id"])
    return LLMResponse(
        content=None,
        tool_calls=[LLMToolCall(id="t1", name="count.bump", arguments={"run_id": run_id})],
    )


async def answer(request: LLMRequest) -> LLMResponse:
    if os.environ.get("HANG_IN_SECOND_TURN") == "1":
        await asyncio.to_thread(Path(f"{COUNT}.hanging").write_text, str(os.getpid()))
        await asyncio.sleep(3600)  # the test kills us here
    return LLMResponse(content=f"done {request.metadata['run_id']}")


async def main() -> None:
    store = await open_store(STORE)
    bus = await RedisBus.open(BUS, visibility_timeout_s=VISIBILITY_TIMEOUT_S)
    registry = ToolRegistry()
    registry.add_functions(bump, source="count")
    planner = ReactPlanner(
        llm=ScriptedLLM([call_tool, answer]), registry=registry, store=store, claim_lease_s=60
    )
    worker = Worker(bus, lambda _m: contextlib.nullcontext(planner), store, block_s=0.2)
    sys.stdout.write(f"ready {worker.name}\n")
    sys.stdout.flush()
    try:
        await worker.run(handle_signals=True)
    finally:
        await registry.aclose()
        await bus.aclose()
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
