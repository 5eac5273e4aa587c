"""A run that is killed mid-tool-call, in its own OS process (driven by test_takeover.py).

Usage: python takeover_proc.py DB_FILE COUNT_FILE TOOL RUN_ID [HANG]

Starts run RUN_ID (never paused: no policies, no approvals) on the SQLite
store DB_FILE with the default claim, lease and heartbeat. The model asks for
TOOL (``side.write``, not idempotent, or ``side.read``, idempotent); the tool
appends one line to COUNT_FILE. Then, with HANG ``tool`` (default), the tool
prints ``STARTED`` on stdout and blocks; with HANG ``model`` the tool returns
and the model's second turn prints ``STARTED`` and blocks. The test SIGKILLs
this process there.
"""

from __future__ import annotations

import asyncio
import sys
import time

from penguiflow_agents._identity import Headers
from penguiflow_agents.llm import LLMRequest, LLMResponse
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.store import open_store
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

DB, COUNT, TOOL, RUN_ID = sys.argv[1:5]
HANG = sys.argv[5] if len(sys.argv) > 5 else "tool"
HEADERS = Headers(tenant="acme", principal="alice")


def script(tool_name: str) -> list[dict[str, object]]:
    """The model's turns, shared with the test (the resumer plays the same script)."""
    return [
        {"tool_calls": [{"name": tool_name, "arguments": {"text": "hello"}, "id": "c1"}]},
        {"content": "Done."},
    ]


def _count_and_hang(text: str) -> str:
    with open(COUNT, "a", encoding="utf-8") as f:
        f.write(text + "\n")
    if HANG == "tool":
        print("STARTED", flush=True)
        time.sleep(3600)  # the test kills us here
    return f"did {text}"


async def _hang_in_the_model(request: LLMRequest) -> LLMResponse:
    print("STARTED", flush=True)
    await asyncio.sleep(3600)  # the test kills us here
    raise AssertionError("unreachable")


@tool
def write(text: str) -> str:
    """Append a line (an effect that must not happen twice)."""
    return _count_and_hang(text)


@tool(idempotent=True)
def read(text: str) -> str:
    """Count a read (harmless to repeat)."""
    return _count_and_hang(text)


async def main() -> None:
    store = await open_store(f"sqlite:///{DB}")
    registry = ToolRegistry()
    registry.add_functions(write, read, source="side")
    turns: list[object] = list(script(TOOL))
    if HANG == "model":
        turns[1] = _hang_in_the_model
    planner = ReactPlanner(llm=ScriptedLLM(turns), registry=registry, store=store)
    await planner.run("Do it.", headers=HEADERS, run_id=RUN_ID)


if __name__ == "__main__":
    asyncio.run(main())
