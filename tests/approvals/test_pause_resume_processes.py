"""Durable pause: pause, decide and resume in separate OS processes sharing a SQLite file.

Each process runs tests/approvals/pause_worker.py. The gated tool appends one
line to a count file per execution, so "ran exactly once" is a line count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = str(Path(__file__).with_name("pause_worker.py"))
# Longest a worker process may take (imports included, on a busy 2-core machine).
WORKER_TIMEOUT_S = 60


def worker(tmp: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, WORKER, str(tmp / "state.db"), str(tmp / "count.txt"), *args],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        env={**os.environ, **(env or {})},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"worker {args} printed no result; stderr:\n{done.stderr}"
    return dict(json.loads(lines[-1]))


def executions(tmp: Path) -> int:
    path = tmp / "count.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def pause_and_approve(tmp: Path) -> str:
    paused = worker(tmp, "pause")
    assert paused["status"] == "paused"
    assert executions(tmp) == 0
    [pending] = paused["pending_approvals"]
    assert worker(tmp, "decide", pending["id"]) == {"decided": "approved"}
    return str(paused["run_id"])


def test_pause_in_one_process_decide_in_a_second_resume_in_a_third(tmp_path: Path) -> None:
    run_id = pause_and_approve(tmp_path)
    done = worker(tmp_path, "resume", run_id)
    assert done["status"] == "completed" and done["answer"] == "Finished."
    assert executions(tmp_path) == 1
    # A fourth process resuming again gets the stored result and runs nothing.
    again = worker(tmp_path, "resume", run_id)
    assert again["status"] == "completed"
    assert executions(tmp_path) == 1


def test_sigkill_mid_call_then_resume_runs_the_tool_exactly_once(tmp_path: Path) -> None:
    run_id = pause_and_approve(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            WORKER,
            str(tmp_path / "state.db"),
            str(tmp_path / "count.txt"),
            "resume",
            run_id,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HANG_AFTER_WRITE": "1"},
    )
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while executions(tmp_path) == 0:  # the file is the tool's own signal that it ran
            assert proc.poll() is None, "the resuming worker exited before calling the tool"
            assert time.monotonic() < deadline, "the resuming worker never called the tool"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WORKER_TIMEOUT_S)
    done = worker(tmp_path, "resume", run_id)
    assert done["status"] == "completed"
    assert executions(tmp_path) == 1
    [step] = [s for s in done["steps"] if s["tool"] == "files.write"]
    assert step["outcome"] == "unknown"
    assert "whether it took effect is unknown" in step["result"]


def test_two_processes_resuming_at_once_run_the_tool_once(tmp_path: Path) -> None:
    run_id = pause_and_approve(tmp_path)
    cmd = [
        sys.executable,
        WORKER,
        str(tmp_path / "state.db"),
        str(tmp_path / "count.txt"),
        "resume",
        run_id,
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [json.loads(p.communicate(timeout=WORKER_TIMEOUT_S)[0].splitlines()[-1]) for p in procs]
    assert executions(tmp_path) == 1
    statuses = sorted(o.get("status") or o["error"] for o in outs)
    assert "completed" in statuses
    assert set(statuses) <= {"completed", "ConflictError"}


def test_resuming_from_another_tenant_fails_like_an_unknown_run(tmp_path: Path) -> None:
    run_id = pause_and_approve(tmp_path)
    code = (
        "import asyncio, sys\n"
        "from penguiflow_agents._identity import Headers\n"
        "from penguiflow_agents.exceptions import NotFoundError\n"
        "from penguiflow_agents.planner import ReactPlanner\n"
        "from penguiflow_agents.store import open_store\n"
        "from penguiflow_agents.testing.scripted_llm import ScriptedLLM\n"
        "from penguiflow_agents.tools import ToolRegistry\n"
        "async def main():\n"
        "    store = await open_store('sqlite:///' + sys.argv[1])\n"
        "    p = ReactPlanner(llm=ScriptedLLM([]), registry=ToolRegistry(), store=store)\n"
        "    for rid in (sys.argv[2], 'run_unknown'):\n"
        "        try:\n"
        "            await p.resume(rid, headers=Headers(tenant='globex'))\n"
        "        except NotFoundError as exc:\n"
        "            print(str(exc).replace(rid, 'ID'))\n"
        "    await store.aclose()\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "state.db"), run_id],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
    ).stdout.splitlines()
    assert out == ["no run with id 'ID'", "no run with id 'ID'"]
    assert executions(tmp_path) == 0
