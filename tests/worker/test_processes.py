"""Workers as OS processes on a real Redis stream and PostgreSQL store.

- a worker SIGKILLed mid-run: another worker takes the job and the run over,
  and the run completes exactly once (its tool appends one line per execution);
- ``submit --wait`` end to end through the CLI (worker, submit, approvals,
  resume), stopped with SIGTERM at the end, no process left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis

import penguiflow_agents
from penguiflow_agents._identity import Headers
from penguiflow_agents.bus import RedisBus
from penguiflow_agents.planner import RunResult
from penguiflow_agents.store import StateStore, open_store
from penguiflow_agents.worker import submit_run, wait_for_run

from .conftest import pg_url

WORKER = str(Path(__file__).with_name("worker_proc.py"))
PACKAGE_DEMO = Path(penguiflow_agents.__file__).parent / "demo_scripts"
# Longest one process step may take (imports included, on a busy 2-core machine).
PROCESS_TIMEOUT_S = 60.0
# Bytecode caches for the subprocesses, outside the tree (as the CLI tests do).
PYCACHE = Path(tempfile.gettempdir()) / "penguiflow-test-pycache"

SCRIPT = """
turns:
  - tool_calls:
      - {name: clock.day_of_week, arguments: {date: "2025-03-01"}}
  - content: "It is a Saturday."
"""
PAUSING_SCRIPT = """
turns:
  - tool_calls:
      - {name: files.write_file, arguments: {path: notes/a.txt, content: "hello"}, id: w}
  - content: "Saved."
"""


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PENGUIFLOW_BUS", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PENGUIFLOW_SANDBOX"] = str(tmp / "sandbox")
    env.update(extra)
    return env


class Processes:
    """Processes a test started; whatever is still alive at the end is killed (and fails it)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []  # of the started processes, in order (their log files)

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=self.tmp,
            env=env_for(self.tmp, **env),
            stdout=(self.tmp / f"{name}.out").open("wb"),
            stderr=(self.tmp / f"{name}.err").open("wb"),
        )
        self.started.append(proc)
        self.names.append(name)
        return proc

    def log(self, name: str, tail: int = 3000) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")[-tail:]

    def family(self, proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
        try:
            return [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cleanup(self) -> list[int]:
        left = []
        for proc in self.started:
            for p in self.family(proc):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p.pid)
                    p.kill()
            proc.wait(timeout=PROCESS_TIMEOUT_S)
        return left


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    yield p
    assert p.cleanup() == [], "the test left processes running"


@pytest.fixture
def bus_url(redis_url: str) -> Iterator[str]:
    """A Redis bus URL with a stream and group of this test only (deleted afterwards)."""
    stream = f"pf-proc-test:{uuid.uuid4().hex[:12]}"
    yield f"{redis_url}?stream={stream}&group=workers"

    async def delete() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.delete(stream, f"{stream}:dead")
        await client.aclose()

    asyncio.run(delete())


@pytest.fixture
def store_url(postgres_dsn: str) -> str:
    return pg_url(postgres_dsn)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StateStore]:
    s = await open_store(store_url)
    yield s
    await s.aclose()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def stop(proc: subprocess.Popen[bytes], procs: Processes, name: str) -> None:
    """SIGTERM, then the worker must exit 0 (drained) with its children gone."""
    family = procs.family(proc)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=PROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # pragma: no cover - reported with the log
        pytest.fail(f"{name} did not stop on SIGTERM; stderr:\n{procs.log(name)}")
    assert code == 0, procs.log(name)
    alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"{name} left processes behind: {alive}"


async def backlog_when_acked(bus: RedisBus) -> int:
    """The bus's backlog once it is empty, or after PROCESS_TIMEOUT_S. A worker acknowledges
    a job just *after* its outcome is in the store, so a reader who saw the outcome may still
    see the job for a moment."""
    deadline = asyncio.get_running_loop().time() + PROCESS_TIMEOUT_S
    while True:
        left = await bus.backlog()
        if not left or asyncio.get_running_loop().time() > deadline:
            return left
        await asyncio.sleep(0.05)  # another process acknowledges: nothing to await here


async def wait_for_file(path: Path, proc: subprocess.Popen[bytes], procs: Processes) -> None:
    deadline = asyncio.get_running_loop().time() + PROCESS_TIMEOUT_S
    while not await asyncio.to_thread(path.exists):
        assert proc.poll() is None, f"the worker exited early:\n{procs.log('first')}"
        assert asyncio.get_running_loop().time() < deadline, (
            f"no {path.name}:\n{procs.log('first')}"
        )
        await asyncio.sleep(0.05)  # another process writes the file: nothing to await here


async def test_a_sigkilled_workers_run_is_taken_over_and_completes_exactly_once(
    procs: Processes, bus_url: str, store_url: str, store: StateStore, tmp_path: Path
) -> None:
    count = tmp_path / "count.txt"
    first = procs.start("first", [WORKER, bus_url, store_url, str(count)], HANG_IN_SECOND_TURN="1")
    bus = await RedisBus.open(bus_url)
    try:
        job = await submit_run(bus, "count once", headers=Headers(tenant="acme", principal="al"))
        await wait_for_file(Path(f"{count}.hanging"), first, procs)
        assert lines(count) == [job.run_id]  # the tool ran; the worker hangs in the next turn
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=PROCESS_TIMEOUT_S)
        second = procs.start("second", [WORKER, bus_url, store_url, str(count)])
        result = await wait_for_run(store, "acme", job.run_id, timeout_s=PROCESS_TIMEOUT_S)
        assert result.status == "completed", procs.log("second")
        assert result.answer == f"done {job.run_id}"
        assert lines(count) == [job.run_id]  # exactly once: resumed after the tool's step
        kinds = [e.kind for e in await store.list_events("acme", job.run_id)]
        assert kinds.count("run_started") == 1 and kinds.count("run_finished") == 1
        assert "resumed" in kinds  # taken over, not started again
        assert await backlog_when_acked(bus) == 0  # acknowledged once its outcome was stored
        stop(second, procs, "second")
    finally:
        await bus.aclose()


async def test_a_sigkilled_workers_job_is_taken_over_at_once_not_after_the_visibility_timeout(
    procs: Processes, bus_url: str, store_url: str, store: StateStore, tmp_path: Path
) -> None:
    """Both workers wait 300 s before taking over a silent consumer's job; the dead worker's
    job still moves on at once: it was a process of this host, and its PID is gone."""
    count = tmp_path / "count.txt"
    slow = {"VISIBILITY_TIMEOUT_S": "300"}
    first = procs.start(
        "first", [WORKER, bus_url, store_url, str(count)], HANG_IN_SECOND_TURN="1", **slow
    )
    bus = await RedisBus.open(bus_url)
    try:
        job = await submit_run(bus, "count once", headers=Headers(tenant="acme", principal="al"))
        await wait_for_file(Path(f"{count}.hanging"), first, procs)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=PROCESS_TIMEOUT_S)
        second = procs.start("second", [WORKER, bus_url, store_url, str(count)], **slow)
        result = await wait_for_run(store, "acme", job.run_id, timeout_s=60)
        assert result.status == "completed", procs.log("second")
        assert lines(count) == [job.run_id]  # the tool ran once
        assert "bus_dead_consumer_jobs_taken" in procs.log("second")
        assert await backlog_when_acked(bus) == 0
        stop(second, procs, "second")
    finally:
        await bus.aclose()


async def wait_in_store(store_url: str, run_id: str) -> RunResult:
    store = await open_store(store_url)
    try:
        return await wait_for_run(store, "acme", run_id, timeout_s=PROCESS_TIMEOUT_S)
    finally:
        await store.aclose()


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", *args],
        cwd=cwd,
        env=env_for(cwd),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
    )


def one_json(out: str) -> dict[str, Any]:
    doc = json.loads(out)  # exactly one document
    assert isinstance(doc, dict)
    return doc


def test_submit_wait_end_to_end_through_a_cli_worker(
    procs: Processes, bus_url: str, store_url: str, tmp_path: Path
) -> None:
    (tmp_path / "tools").mkdir()
    for name in ("clock.yaml", "files.yaml"):
        shutil.copy(PACKAGE_DEMO / "tools" / name, tmp_path / "tools" / name)
    shutil.copytree(PACKAGE_DEMO / "policies", tmp_path / "policies")
    (tmp_path / "answer.yaml").write_text(SCRIPT)
    (tmp_path / "pause.yaml").write_text(PAUSING_SCRIPT)
    where = ["--bus", bus_url, "--store", store_url]
    worker = procs.start(
        "worker",
        ["-m", "penguiflow_agents", "worker", *where, "--concurrency", "2", "--drain-timeout", "5"],
    )

    done = cli(
        tmp_path,
        "submit",
        "What day?",
        *where,
        "--model",
        "replay:answer.yaml",
        "--tenant",
        "acme",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr + procs.log("worker")
    doc = one_json(done.stdout)
    assert doc["status"] == "completed" and doc["answer"] == "It is a Saturday."
    assert [(s["tool"], s["outcome"]) for s in doc["steps"]] == [("clock.day_of_week", "ok")]
    assert doc["model_is_replay"] is True and doc["error"] is None

    # Without --wait: the run id, at once. A gated call pauses that run (seen in the store).
    queued = cli(
        tmp_path,
        "submit",
        "Save a note",
        *where,
        "--model",
        "replay:pause.yaml",
        "--tenant",
        "acme",
        "--principal",
        "alice",
    )
    assert queued.returncode == 0, queued.stderr
    run_id = queued.stdout.strip()
    assert run_id.startswith("run_")
    paused = asyncio.run(wait_in_store(store_url, run_id))
    assert paused.status == "paused", procs.log("worker")
    [pending] = paused.pending_approvals
    assert not (tmp_path / "sandbox" / "notes" / "a.txt").exists()

    # Waiting on a run that pauses again: the next step it suggests goes through the workers.
    still = cli(
        tmp_path, "submit", "--resume", run_id, *where, "--tenant", "acme", "--wait", "--json"
    )
    assert still.returncode == 3, still.stderr + procs.log("worker")
    again = one_json(still.stdout)
    assert again["status"] == "paused"
    assert again["resume_command"].startswith(f"penguiflow-agents submit --resume {run_id} ")
    assert again["resume_command"].endswith("--wait") and "--bus" in again["resume_command"]

    approve = cli(
        tmp_path,
        "approvals",
        "approve",
        pending.id,
        "--as",
        "bob",
        "--role",
        "admin",
        "--tenant",
        "acme",
        "--store",
        store_url,
    )
    assert approve.returncode == 0, approve.stderr
    resumed = cli(
        tmp_path, "submit", "--resume", run_id, *where, "--tenant", "acme", "--wait", "--json"
    )
    assert resumed.returncode == 0, resumed.stderr + procs.log("worker")
    final = one_json(resumed.stdout)
    assert final["status"] == "completed" and final["run_id"] == run_id
    assert (tmp_path / "sandbox" / "notes" / "a.txt").read_text() == "hello"

    stop(worker, procs, "worker")


def test_a_cli_worker_with_notify_delivers_the_webhooks_of_its_approvals(
    procs: Processes, bus_url: str, store_url: str, tmp_path: Path
) -> None:
    """`worker --notify URL` (bus): the request of a run it executes and the decision made by
    another process (the CLI) are POSTed to the receiver, signed, by the worker itself."""
    from tests.webhooks.receiver import running_receiver

    (tmp_path / "tools").mkdir()
    shutil.copy(PACKAGE_DEMO / "tools" / "files.yaml", tmp_path / "tools" / "files.yaml")
    shutil.copytree(PACKAGE_DEMO / "policies", tmp_path / "policies")
    (tmp_path / "pause.yaml").write_text(PAUSING_SCRIPT)
    where = ["--bus", bus_url, "--store", store_url]
    secret = "worker-webhooks-" + "w" * 32
    with running_receiver(secret, fail_first=0) as rx:
        worker = procs.start(
            "worker",
            ["-m", "penguiflow_agents", "worker", *where, "--notify", rx.url],
            PENGUIFLOW_WEBHOOK_SECRET=secret,
        )
        queued = cli(
            tmp_path, "submit", "Save a note", *where, "--model", "replay:pause.yaml",
            "--tenant", "acme", "--principal", "alice",
        )  # fmt: skip
        assert queued.returncode == 0, queued.stderr
        paused = asyncio.run(wait_in_store(store_url, queued.stdout.strip()))
        assert paused.status == "paused", procs.log("worker")
        [pending] = paused.pending_approvals
        requested, decided = f"{pending.id}.requested", f"{pending.id}.decided"
        rx.wait_for(lambda r: requested in r.processed, PROCESS_TIMEOUT_S, "the request")
        approve = cli(
            tmp_path, "approvals", "approve", pending.id, "--as", "bob", "--role", "admin",
            "--tenant", "acme", "--store", store_url,
        )  # fmt: skip
        assert approve.returncode == 0, approve.stderr
        rx.wait_for(lambda r: decided in r.processed, PROCESS_TIMEOUT_S, "the decision")
        body = rx.processed[decided][0]
        assert body["type"] == "approval.decided" and body["approval"]["status"] == "approved"
        assert rx.processed[requested][0]["approval"]["tool"] == pending.tool
        assert not rx.bad_signatures
        stop(worker, procs, "worker")


async def test_a_cli_workers_metrics_count_the_forged_jobs_it_set_aside(
    procs: Processes, bus_url: str, redis_url: str, tmp_path: Path
) -> None:
    """``worker --metrics-port``: a job written straight to Redis without the bus secret's
    signature becomes a dead letter, and the worker's ``/metrics`` shows it in
    ``penguiflow_bus_dead_letters`` (refreshed every 5 s)."""
    import re

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    secret = "bus-secret-for-this-test-0123456789"
    store_url = f"sqlite:///{tmp_path / 'runs.db'}"
    worker = procs.start(
        "worker",
        ["-m", "penguiflow_agents", "worker", "--bus", bus_url, "--store", store_url,
         "--metrics-port", "0", "--drain-timeout", "5"],
        PENGUIFLOW_BUS_SECRET=secret,
    )  # fmt: skip
    deadline = asyncio.get_running_loop().time() + PROCESS_TIMEOUT_S
    url = None
    while url is None:
        found = re.search(r"metrics on (http://\S+/metrics)", procs.log("worker"))
        url = found.group(1) if found else None
        assert worker.poll() is None, procs.log("worker")
        assert asyncio.get_running_loop().time() < deadline, procs.log("worker")
        await asyncio.sleep(0.1)
    stream = bus_url.split("stream=")[1].split("&")[0]
    raw = aioredis.Redis.from_url(redis_url)
    try:
        forged = {"kind": "run", "tenant": "victim", "principal": "x", "roles": ["admin"]}
        await raw.xadd(stream, {"job": json.dumps(forged)})
    finally:
        await raw.aclose()
    deadline = asyncio.get_running_loop().time() + PROCESS_TIMEOUT_S
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            text = (await client.get(url)).text
            values = {
                s.name: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            if values.get("penguiflow_bus_dead_letters") == 1:
                break
            assert worker.poll() is None, procs.log("worker")
            assert asyncio.get_running_loop().time() < deadline, (
                f"the dead letter never reached /metrics:\n{text[-2000:]}\n{procs.log('worker')}"
            )
            await asyncio.sleep(0.5)
    assert values["penguiflow_bus_backlog"] == 0
    stop(worker, procs, "worker")
