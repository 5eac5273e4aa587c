"""A running run survives its process: checkpoints, lease + heartbeat, takeover by ``resume``.

The subprocess tests run tests/planner/takeover_proc.py on a SQLite file and
SIGKILL it at a chosen point (it prints STARTED there); the test process then
resumes the run. The tool appends one line to a count file per execution, so
"ran at most once" is a line count.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import ConflictError, UserError
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.store import MemoryStore, StateStore, open_store
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

PROC = str(Path(__file__).with_name("takeover_proc.py"))
# Longest the child may take to reach its kill point (imports included, busy 2-core machine).
START_TIMEOUT_S = 60.0
HEADERS = Headers(tenant="acme", principal="alice")


def script(tool_name: str) -> list[Any]:
    return [
        {"tool_calls": [{"name": tool_name, "arguments": {"text": "hello"}, "id": "c1"}]},
        {"content": "Done."},
    ]


def counting_registry(count: Path) -> ToolRegistry:
    """The child's tools, without the hang: they count and return."""

    def bump(text: str) -> str:
        with open(count, "a", encoding="utf-8") as f:
            f.write(text + "\n")
        return f"did {text}"

    @tool
    def write(text: str) -> str:
        """Append a line (an effect that must not happen twice)."""
        return bump(text)

    @tool(idempotent=True)
    def read(text: str) -> str:
        """Count a read (harmless to repeat)."""
        return bump(text)

    registry = ToolRegistry()
    registry.add_functions(write, read, source="side")
    return registry


def executions(count: Path) -> int:
    return len(count.read_text().splitlines()) if count.exists() else 0


async def start_and_kill(tmp: Path, tool_name: str, run_id: str, hang: str = "tool") -> None:
    """Start the run in a child process and SIGKILL it where it hangs."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        PROC,
        str(tmp / "state.db"),
        str(tmp / "count"),
        tool_name,
        run_id,
        hang,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            while (line := await proc.stdout.readline()).strip() != b"STARTED":
                assert line, "the child ended before its kill point"  # other lines: its logs
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), START_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL


async def resume_here(tmp: Path, tool_name: str, run_id: str) -> tuple[Any, ScriptedLLM]:
    store = await open_store(f"sqlite:///{tmp / 'state.db'}")
    registry = counting_registry(tmp / "count")
    llm = ScriptedLLM(script(tool_name))
    try:
        record = await store.get_run("acme", run_id)
        assert record.status == "running" and record.claimed_by is not None
        result = await ReactPlanner(llm=llm, registry=registry, store=store).resume(
            run_id, headers=HEADERS
        )
    finally:
        await registry.aclose()
        await store.aclose()
    return result, llm


async def test_a_killed_non_idempotent_call_is_not_rerun_and_the_model_is_told_its_outcome_is_unknown(
    tmp_path: Path,
) -> None:
    await start_and_kill(tmp_path, "side.write", "run-w")
    assert executions(tmp_path / "count") == 1
    result, llm = await resume_here(tmp_path, "side.write", "run-w")
    assert result.status == "completed" and result.answer == "Done."
    assert executions(tmp_path / "count") == 1  # at most once
    [step] = result.steps
    assert (step.tool, step.outcome, step.call_id) == ("side.write", "unknown", "c1")
    [answer_request] = llm.requests
    [tool_message] = [m for m in answer_request.messages if m["role"] == "tool"]
    assert tool_message["tool_call_id"] == "c1"
    assert tool_message["content"].startswith("Error (unknown_outcome)")
    assert "not idempotent" in tool_message["content"]


async def test_a_killed_idempotent_call_runs_again_on_takeover(tmp_path: Path) -> None:
    """A step of idempotent calls is not checkpointed: the takeover repeats it from the start."""
    await start_and_kill(tmp_path, "side.read", "run-r")
    result, llm = await resume_here(tmp_path, "side.read", "run-r")
    assert result.status == "completed" and result.answer == "Done."
    assert executions(tmp_path / "count") == 2  # once in the dead process, once here
    [step] = result.steps
    assert (step.outcome, step.result) == ("ok", "did hello")
    assert len(llm.requests) == 2  # the step's model turn was replayed, then the answer


async def test_a_run_killed_while_the_model_thinks_resumes_after_its_finished_step(
    tmp_path: Path,
) -> None:
    """The step's result was checkpointed: the takeover neither reruns nor forgets the call."""
    await start_and_kill(tmp_path, "side.write", "run-m", hang="model")
    result, llm = await resume_here(tmp_path, "side.write", "run-m")
    assert result.status == "completed" and result.answer == "Done."
    assert executions(tmp_path / "count") == 1
    [step] = result.steps
    assert (step.outcome, step.result) == ("ok", "did hello")
    [request] = llm.requests
    assert [m["content"] for m in request.messages if m["role"] == "tool"] == ["did hello"]


# -- in one process: a live owner, an owner whose lease ran out ---------------------------------


class Hang:
    """A tool that signals when it starts and then waits until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    def registry(self) -> ToolRegistry:
        @tool
        async def write(text: str) -> str:
            """Blocks until released."""
            self.calls += 1
            self.started.set()
            await self.release.wait()
            return "late"

        registry = ToolRegistry()
        registry.add_functions(write, source="side")
        return registry


async def wait_for(predicate: Any, store: StateStore, run_id: str) -> Any:
    """Poll the stored run until ``predicate(record)`` (bounded; the store has no events)."""
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            record = await store.get_run("acme", run_id)
            if predicate(record):
                return record
            await asyncio.sleep(0.02)


async def test_a_run_held_by_a_live_owner_is_not_taken_over_and_its_lease_is_renewed() -> None:
    store = MemoryStore()
    hang = Hang()
    owner = ReactPlanner(
        llm=ScriptedLLM(script("side.write")),
        registry=hang.registry(),
        store=store,
        claim_lease_s=0.6,  # heartbeat every 0.2 s
    )
    task = asyncio.create_task(owner.run("q", headers=HEADERS, run_id="run-live"))
    await asyncio.wait_for(hang.started.wait(), START_TIMEOUT_S)
    first = await store.get_run("acme", "run-live")
    # Well past the first lease, the heartbeat has kept it alive.
    renewed = await wait_for(
        lambda r: (r.claim_expires_at or 0) > (first.claim_expires_at or 0) + 0.6, store, "run-live"
    )
    assert renewed.status == "running" and renewed.claimed_by == first.claimed_by
    other = ReactPlanner(
        llm=ScriptedLLM(script("side.write")), registry=hang.registry(), store=store
    )
    with pytest.raises(ConflictError, match="another live process") as refused:
        await other.resume("run-live", headers=HEADERS)
    assert "lease until" in str(refused.value)
    hang.release.set()
    result = await asyncio.wait_for(task, START_TIMEOUT_S)
    assert result.status == "completed" and hang.calls == 1


async def test_an_owner_whose_lease_ran_out_loses_the_run_to_a_takeover_and_writes_nothing() -> (
    None
):
    """No heartbeat (heartbeat_s=None), a short lease: another planner takes the run over."""
    store = MemoryStore()
    hang = Hang()
    stalled = ReactPlanner(
        llm=ScriptedLLM(script("side.write")),
        registry=hang.registry(),
        store=store,
        claim_lease_s=0.2,
        heartbeat_s=None,
    )
    task = asyncio.create_task(stalled.run("q", headers=HEADERS, run_id="run-x"))
    await asyncio.wait_for(hang.started.wait(), START_TIMEOUT_S)
    await wait_for(lambda r: (r.claim_expires_at or 0) < time.time(), store, "run-x")
    rescuer = ReactPlanner(
        llm=ScriptedLLM(script("side.write")), registry=hang.registry(), store=store
    )
    result = await rescuer.resume("run-x", headers=HEADERS)
    assert result.status == "completed"
    assert [s.outcome for s in result.steps] == ["unknown"]
    assert hang.calls == 1
    hang.release.set()  # the stalled owner wakes up: its writes must fail
    late = await asyncio.wait_for(task, START_TIMEOUT_S)
    assert late.status == "failed" and "another process took this run over" in (late.error or "")
    stored = await store.get_run("acme", "run-x")
    assert stored.status == "completed"
    assert stored.state["result"]["steps"][0]["outcome"] == "unknown"


async def test_claim_false_runs_are_not_checkpointed_and_cannot_be_taken_over() -> None:
    store = MemoryStore()
    hang = Hang()
    planner = ReactPlanner(
        llm=ScriptedLLM(script("side.write")), registry=hang.registry(), store=store
    )
    task = asyncio.create_task(planner.run("q", headers=HEADERS, run_id="run-n", claim=False))
    await asyncio.wait_for(hang.started.wait(), START_TIMEOUT_S)
    record = await store.get_run("acme", "run-n")
    assert (record.claimed_by, record.state) == (None, {})
    with pytest.raises(ConflictError, match="claim=False"):
        await planner.resume("run-n", headers=HEADERS)
    hang.release.set()
    assert (await asyncio.wait_for(task, START_TIMEOUT_S)).status == "completed"


def test_a_heartbeat_longer_than_the_lease_is_refused() -> None:
    with pytest.raises(UserError, match="heartbeat_s"):
        ReactPlanner(
            llm=ScriptedLLM([{"content": "x"}]),
            registry=ToolRegistry(),
            claim_lease_s=10,
            heartbeat_s=10,
        )


class _AnswerLostOnce(MemoryStore):
    """A store whose first checkpoint of a running run is written but answered with a conflict
    (as when the write's answer is lost: a heartbeat cut by its time limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    async def update_run(self, run: Any, *, expected_version: int) -> Any:
        written = await super().update_run(run, expected_version=expected_version)
        if self.lost == 0 and run.status == "running":
            self.lost += 1
            raise ConflictError("the version moved (our own write, whose answer we lost)")
        return written


async def test_a_conflict_with_its_own_unanswered_write_is_written_again_on_top(
    tmp_path: Path,
) -> None:
    """The run still names this process's live claim: the write goes again at the stored
    version and the run goes on, its effect once (a conflict with another process's claim
    stops the run: the takeover tests above)."""
    count = tmp_path / "count.txt"
    store = _AnswerLostOnce()
    planner = ReactPlanner(
        llm=ScriptedLLM(script("side.write")), registry=counting_registry(count), store=store
    )
    result = await planner.run("write once", headers=HEADERS, run_id="run-lost", claim=True)
    assert result.status == "completed", result.error
    assert store.lost == 1 and executions(count) == 1
    stored = await store.get_run("acme", "run-lost")
    assert stored.status == "completed" and stored.claimed_by is None
