"""One step of a paused run's life, in its own OS process (driven by test_pause_resume_processes.py).

Usage: python pause_worker.py DB_FILE COUNT_FILE ACTION [ARG]

    pause              run the question: prints the result JSON (the run pauses)
    decide APPROVAL    approve APPROVAL as "root" (role admin): prints {"decided": ...}
    resume RUN_ID      resume the run: prints the result JSON, or {"error": ...}

The gated tool ``files.write`` appends one line to COUNT_FILE per execution.
Environment switches, so that the test can SIGKILL the process at a chosen point:

    HANG_AFTER_WRITE=1    the tool blocks forever after writing (killed mid-call)
    TOOL_DELAY_S=SECONDS  the tool takes this long after writing (widens a race window)
    HANG_AFTER_PAUSE=1    "pause" blocks forever after printing its result
    HANG_BEFORE_CALL=PATH "resume" touches PATH and blocks forever when it is about to
                          begin the approved call (the run is claimed, the tool not run)
    GO_FILE=PATH          "resume" first touches PATH + ".ready.<pid>", then waits for
                          PATH to exist, so several processes resume at the same moment
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import PenguiflowError
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import StateStore, open_store
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

DB, COUNT = sys.argv[1], sys.argv[2]
REQUESTER = Headers(tenant="acme", principal="alice", roles=["staff"])
POLICY = {
    "tenant": "acme",
    "allow": ["files.*"],
    "approvals": [{"match": "files.write", "approvers": ["role:admin"], "reason": "Writes"}],
}
SCRIPT: list[Any] = [
    {"tool_calls": [{"name": "files.write", "arguments": {"text": "hello"}, "id": "w1"}]},
    {"content": "Finished."},
]


@tool
def write(text: str) -> str:
    """Append a line to the count file (a non-idempotent effect)."""
    with open(COUNT, "a", encoding="utf-8") as f:
        f.write(text + "\n")
    if os.environ.get("HANG_AFTER_WRITE") == "1":
        time.sleep(3600)  # the test kills us here
    time.sleep(float(os.environ.get("TOOL_DELAY_S", "0")))
    return "written"


# Longest a "resume" waits for the test's go signal (GO_FILE).
GO_TIMEOUT_S = 60.0


class HangBeforeCall:
    """The real store, except that beginning a call signals the test and blocks forever."""

    def __init__(self, inner: StateStore, marker: str) -> None:
        self._inner = inner
        self._marker = marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def begin_call(self, tenant: str, run_id: str, call_id: str) -> bool:
        touch(self._marker)
        await asyncio.sleep(3600)  # the test kills us here
        raise AssertionError("not killed")


def touch(path: str) -> None:
    Path(path).touch()


def wait_for_go(go: str) -> None:
    """Say this process is ready, then wait (blocking: nothing else runs yet) for the go file."""
    touch(f"{go}.ready.{os.getpid()}")
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit(f"no go signal at {go} within {GO_TIMEOUT_S} s")
        time.sleep(0.002)


def say(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def main(action: str, arg: str | None) -> int:
    store = await open_store(f"sqlite:///{DB}")
    policies = PolicySet.from_documents([POLICY])
    registry = ToolRegistry()
    registry.add_functions(write, source="files", timeout_s=3600)
    hang = os.environ.get("HANG_BEFORE_CALL")
    planner = ReactPlanner(
        llm=ScriptedLLM(SCRIPT),
        registry=registry,
        store=HangBeforeCall(store, hang) if hang else store,  # type: ignore[arg-type]
        policies=policies,
    )
    try:
        if action == "pause":
            say((await planner.run("write hello", headers=REQUESTER)).to_dict())
            if os.environ.get("HANG_AFTER_PAUSE") == "1":
                await asyncio.sleep(3600)  # the test kills us here
        elif action == "decide":
            record = await ApprovalService(store, policies).decide(
                tenant="acme",
                approval_id=str(arg),
                principal="root",
                roles=["admin"],
                decision="approve",
            )
            say({"decided": record.status})
        elif action == "resume":
            go = os.environ.get("GO_FILE")
            if go:
                wait_for_go(go)
            say((await planner.resume(str(arg), headers=REQUESTER)).to_dict())
        return 0
    except PenguiflowError as exc:
        say({"error": type(exc).__name__, "message": str(exc)})
        return 1
    finally:
        await store.aclose()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)))
