"""Durable pause: pause, decide and resume in separate OS processes sharing a SQLite file.

Each process runs tests/approvals/pause_worker.py. The gated tool appends one
line to a count file per execution, so "ran exactly once" is a line count.
Kills are SIGKILL (no cleanup of any kind runs in the victim). Where a process
must be stopped at a chosen point, it signals the test through a file and
blocks; the test waits for that file with a generous deadline, so a loaded
machine makes these tests slower, never red.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import NotFoundError
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import open_store
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry

WORKER = str(Path(__file__).with_name("pause_worker.py"))
# Longest a worker process may take (imports included, on a busy 2-core machine).
WORKER_TIMEOUT_S = 60
# Poll interval while waiting for a worker's signal file (cross-process, no event to await).
POLL_S = 0.02


def command(tmp: Path, *args: str) -> list[str]:
    return [sys.executable, WORKER, str(tmp / "state.db"), str(tmp / "count.txt"), *args]


def parse(stdout: str, stderr: str, args: tuple[str, ...]) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"worker {args} printed no result; stderr:\n{stderr}"
    return dict(json.loads(lines[-1]))


def worker(tmp: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        command(tmp, *args), capture_output=True, text=True, timeout=WORKER_TIMEOUT_S
    )
    return parse(done.stdout, done.stderr, args)


def executions(tmp: Path) -> int:
    path = tmp / "count.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_until(check: Callable[[], bool], proc: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not check():
        assert proc.poll() is None, f"the worker exited before it {what}"
        assert time.monotonic() < deadline, f"the worker never {what}"
        time.sleep(POLL_S)


def kill(proc: subprocess.Popen[Any]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=WORKER_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL


def pause_and_approve(tmp: Path) -> str:
    """Pause in a worker process, approve here (the three-process test decides in a worker)."""
    paused = worker(tmp, "pause")
    assert paused["status"] == "paused"
    assert executions(tmp) == 0
    [pending] = paused["pending_approvals"]

    async def decide() -> str:
        store = await open_store(f"sqlite:///{tmp / 'state.db'}")
        try:
            policies = PolicySet.from_documents([{"tenant": "acme", "allow": ["files.*"]}])
            record = await ApprovalService(store, policies).decide(
                tenant="acme",
                approval_id=pending["id"],
                principal="root",
                roles=["admin"],
                decision="approve",
            )
            return record.status
        finally:
            await store.aclose()

    assert asyncio.run(decide()) == "approved"
    return str(paused["run_id"])


def foreign_resume_errors(tmp: Path, run_id: str) -> list[str]:
    """What resuming ``run_id`` and an unknown id as tenant globex says (ids masked)."""

    async def go() -> list[str]:
        store = await open_store(f"sqlite:///{tmp / 'state.db'}")
        planner = ReactPlanner(llm=ScriptedLLM([]), registry=ToolRegistry(), store=store)
        out = []
        try:
            for rid in (run_id, "run_unknown"):
                try:
                    await planner.resume(rid, headers=Headers(tenant="globex", principal="g"))
                except NotFoundError as exc:
                    out.append(str(exc).replace(rid, "ID"))
        finally:
            await store.aclose()
        return out

    return asyncio.run(go())


def test_pause_in_one_process_decide_in_a_second_resume_in_a_third(tmp_path: Path) -> None:
    paused = worker(tmp_path, "pause")
    assert paused["status"] == "paused"
    [pending] = paused["pending_approvals"]
    assert worker(tmp_path, "decide", pending["id"]) == {"decided": "approved"}
    assert executions(tmp_path) == 0
    run_id = paused["run_id"]
    # Another tenant cannot resume it, and hears what it would for an unknown id.
    assert foreign_resume_errors(tmp_path, run_id) == ["no run with id 'ID'"] * 2
    assert executions(tmp_path) == 0

    done = worker(tmp_path, "resume", run_id)
    assert done["status"] == "completed" and done["answer"] == "Finished."
    assert executions(tmp_path) == 1
    [step] = [s for s in done["steps"] if s["tool"] == "files.write"]
    assert step["outcome"] == "ok"
    # A fourth process resuming again gets the stored result and runs nothing.
    again = worker(tmp_path, "resume", run_id)
    assert again["status"] == "completed"
    assert executions(tmp_path) == 1


def test_sigkill_of_the_pausing_process_and_of_a_resume_before_the_call_then_it_runs_once(
    tmp_path: Path,
) -> None:
    """The process that paused is SIGKILLed; after the decision, a resume is SIGKILLed after
    claiming the run but before the call began; the next resume runs the tool exactly once."""
    pausing = subprocess.Popen(
        command(tmp_path, "pause"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HANG_AFTER_PAUSE": "1"},
    )
    try:
        assert pausing.stdout is not None
        line = ""
        while not line.startswith("{"):  # the result is printed before it hangs (logs first)
            line = pausing.stdout.readline()
            assert line, "the pausing worker exited without printing its result"
        paused = json.loads(line)
    finally:
        kill(pausing)
    assert paused["status"] == "paused"
    [pending] = paused["pending_approvals"]
    assert worker(tmp_path, "decide", pending["id"]) == {"decided": "approved"}

    marker = tmp_path / "about-to-call"
    resuming = subprocess.Popen(
        command(tmp_path, "resume", paused["run_id"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HANG_BEFORE_CALL": str(marker)},
    )
    try:
        wait_until(marker.exists, resuming, "reached the approved call")
    finally:
        kill(resuming)
    assert executions(tmp_path) == 0

    done = worker(tmp_path, "resume", paused["run_id"])
    assert done["status"] == "completed", done
    assert executions(tmp_path) == 1
    [step] = [s for s in done["steps"] if s["tool"] == "files.write"]
    assert step["outcome"] == "ok"


def test_sigkill_mid_call_then_resume_does_not_run_the_tool_again(tmp_path: Path) -> None:
    """Killed after the tool took effect but before its result was stored: the next resume
    does not run the (non-idempotent) tool again and tells the model the outcome is unknown."""
    run_id = pause_and_approve(tmp_path)
    proc = subprocess.Popen(
        command(tmp_path, "resume", run_id),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HANG_AFTER_WRITE": "1"},
    )
    try:  # the count file is the tool's own signal that it ran
        wait_until(lambda: executions(tmp_path) > 0, proc, "called the tool")
    finally:
        kill(proc)
    done = worker(tmp_path, "resume", run_id)
    assert done["status"] == "completed"
    assert executions(tmp_path) == 1
    [step] = [s for s in done["steps"] if s["tool"] == "files.write"]
    assert step["outcome"] == "unknown"
    assert "whether it took effect is unknown" in step["result"]


def test_three_processes_resuming_at_the_same_moment_run_the_tool_once(tmp_path: Path) -> None:
    run_id = pause_and_approve(tmp_path)
    go = tmp_path / "go"
    # The tool takes 0.5 s: the other resumes try while the call is in flight, so a broken
    # claim or call gate would run it again (correct code does not depend on the timing).
    env = {**os.environ, "GO_FILE": str(go), "TOOL_DELAY_S": "0.5"}
    args = ("resume", run_id)
    procs = [
        subprocess.Popen(
            command(tmp_path, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        # Release them together once all three have imported everything and opened the store.
        for proc in procs:
            ready = tmp_path / f"go.ready.{proc.pid}"
            wait_until(ready.exists, proc, "got ready")
        go.touch()
        outs = [parse(*p.communicate(timeout=WORKER_TIMEOUT_S), args) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill(proc)
    assert executions(tmp_path) == 1
    statuses = sorted(o.get("status") or o["error"] for o in outs)
    assert "completed" in statuses
    assert set(statuses) <= {"completed", "ConflictError"}
