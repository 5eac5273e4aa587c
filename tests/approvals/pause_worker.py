"""One step of a paused run's life, in its own OS process (driven by test_pause_resume_processes.py).

Usage: python pause_worker.py DB_FILE COUNT_FILE ACTION [ARG]

    pause              run the question: prints the result JSON (the run pauses)
    decide APPROVAL    approve APPROVAL as "root" (role admin): prints {"decided": ...}
    resume RUN_ID      resume the run: prints the result JSON, or {"error": ...}

The gated tool ``files.write`` appends one line to COUNT_FILE per execution.
With HANG_AFTER_WRITE=1 in the environment it then blocks forever, so that the
test can SIGKILL the process mid-call.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import PenguiflowError
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import open_store
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
    return "written"


def say(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def main(action: str, arg: str | None) -> int:
    store = await open_store(f"sqlite:///{DB}")
    policies = PolicySet.from_documents([POLICY])
    registry = ToolRegistry()
    registry.add_functions(write, source="files", timeout_s=3600)
    planner = ReactPlanner(
        llm=ScriptedLLM(SCRIPT), registry=registry, store=store, policies=policies
    )
    try:
        if action == "pause":
            say((await planner.run("write hello", headers=REQUESTER)).to_dict())
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
            say((await planner.resume(str(arg), headers=REQUESTER)).to_dict())
        return 0
    except PenguiflowError as exc:
        say({"error": type(exc).__name__, "message": str(exc)})
        return 1
    finally:
        await store.aclose()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)))
