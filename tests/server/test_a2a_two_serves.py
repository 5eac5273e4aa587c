"""Two real `serve` processes on 127.0.0.1: the first registers the second through a
`transport: a2a` manifest. A run on the first calls the second's skill and gets its answer;
cancelling the run on the first cancels the task on the second; killing the second mid-task
gives `unavailable` and opens the first's breaker."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from penguiflow_agents.cli import main
from tests.cli.test_run_cli import env_for
from tests.server.serve_process import Serving, start_serve

# Two servers start (each imports litellm and starts the replay model): slow on a busy machine.
pytestmark = pytest.mark.timeout(400)

SCRIPT_A = """
turns:
  - branches:
      - match: "takeover"
        tool_calls: [{name: remote.run, arguments: {message: "take your time"}, id: ask}]
      - match: "slow"
        tool_calls: [{name: remote.run, arguments: {message: "slow question"}, id: ask}]
      - tool_calls: [{name: remote.run, arguments: {message: "what is the answer?"}, id: ask}]
  - content: "The remote agent answered."
"""
SCRIPT_B = """
turns:
  - branches:
      - match: "take your time"  # long enough for the first server's kill and restart
        delay_s: 12
        content: "The late answer from B."
      - match: "slow"
        delay_s: 300
        content: "late"
      - content: "The answer from B is 42."
"""
MANIFEST = """
name: remote
transport: a2a
url: {url}
auth: {{type: bearer, token: "${{B_KEY}}"}}
timeout_s: 300
circuit_breaker: {{failure_threshold: 1, cooldown_s: 300}}
"""
POLICY = 'tenant: "*"\nallow: ["remote.*"]\n'


def _key(capsys: pytest.CaptureFixture[str], keys: Path, principal: str) -> str:
    assert (
        main(["keys", "add", "--tenant", "acme", "--principal", principal, "--keys", str(keys)])
        == 0
    )
    return capsys.readouterr().out.splitlines()[0]


@dataclass
class Pair:
    a: Serving
    b: Serving
    a_key: str
    b_key: str
    a_root: Path
    a_env: dict[str, str]

    def restart_a(self) -> None:
        """A new first server over the same store, tools and keys (after a crash)."""
        self.a = start_serve(self.a_root, "--model", "replay:model.yaml", env=self.a_env)

    def a_client(self) -> httpx.Client:
        return self.a.client(self.a_key)

    def b_client(self) -> httpx.Client:
        return self.b.client(self.b_key)


@pytest.fixture
def pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Pair]:
    roots = {name: tmp_path / name for name in ("a", "b")}
    for name, root in roots.items():
        (root / "tools").mkdir(parents=True)
        (root / "policies").mkdir()
        (root / "policies" / "default.yaml").write_text(POLICY)
        (root / "model.yaml").write_text(SCRIPT_A if name == "a" else SCRIPT_B)
    b_key = _key(capsys, roots["b"] / "keys.yaml", "agent-a")
    a_key = _key(capsys, roots["a"] / "keys.yaml", "alice")
    b = start_serve(roots["b"], "--model", "replay:model.yaml", env=env_for(roots["b"]))
    a = None
    try:
        (roots["a"] / "tools" / "remote.yaml").write_text(MANIFEST.format(url=b.url))
        env = {**env_for(roots["a"]), "B_KEY": b_key}
        a = start_serve(roots["a"], "--model", "replay:model.yaml", env=env)
        the_pair = Pair(a=a, b=b, a_key=a_key, b_key=b_key, a_root=roots["a"], a_env=env)
        yield the_pair
        a = the_pair.a
    finally:
        # Shown when a test fails: what each server logged.
        if a is not None and a.proc.stderr is not None and not a.proc.stderr.closed:
            print("A:", a.stop().decode(errors="replace")[-6000:])
        if b.proc.stderr is not None and not b.proc.stderr.closed:
            print("B:", b.stop().decode(errors="replace")[-6000:])


def _until(what: str, check: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _b_runs(pair: Pair) -> list[dict[str, Any]]:
    with pair.b_client() as b:
        r = b.get("/v1/runs")
        assert r.status_code == 200, r.text
        runs: list[dict[str, Any]] = r.json()["runs"]
        return runs


def test_a_run_on_the_first_server_calls_the_seconds_skill_and_gets_its_answer(pair: Pair) -> None:
    with pair.a_client() as a:
        r = a.post("/v1/runs?wait=true", json={"query": "ask the remote agent"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "completed", doc
    step = doc["steps"][0]
    assert step["tool"] == "remote.run"
    assert step["outcome"] == "ok", step
    assert "The answer from B is 42." in str(step["result"])
    runs = _b_runs(pair)
    assert len(runs) == 1 and runs[0]["status"] == "completed"


def test_cancelling_the_run_on_the_first_cancels_the_task_on_the_second(pair: Pair) -> None:
    with pair.a_client() as a:
        run_id = a.post("/v1/runs", json={"query": "slow one"}).json()["run_id"]
        remote = _until(
            "the remote task", lambda: [r for r in _b_runs(pair) if r["status"] == "running"]
        )
        r = a.post(f"/v1/runs/{run_id}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
    remote_id = remote[0]["run_id"]

    def cancelled() -> bool:
        with pair.b_client() as b:
            return bool(b.get(f"/v1/runs/{remote_id}").json()["status"] == "cancelled")

    _until("the remote task to be cancelled", cancelled)


def test_killing_the_second_mid_task_is_unavailable_and_opens_the_breaker(pair: Pair) -> None:
    with pair.a_client() as a:
        run_id = a.post("/v1/runs", json={"query": "slow one"}).json()["run_id"]
        _until("the remote task", lambda: [r for r in _b_runs(pair) if r["status"] == "running"])
        pair.b.stop(kill=True)

        def ended() -> dict[str, Any] | None:
            doc: dict[str, Any] = a.get(f"/v1/runs/{run_id}").json()
            return doc if doc["status"] != "running" else None

        doc = _until("the run to end", ended)
        step = doc["steps"][0]
        assert step["tool"] == "remote.run"
        assert step["outcome"] == "unavailable", step
        again = a.post("/v1/runs?wait=true", json={"query": "ask the remote agent"}).json()
        step = again["steps"][0]
        assert step["outcome"] == "unavailable", step
        assert "circuit breaker is open" in str(step["result"]), step


def test_a_run_taken_over_after_a_sigkill_reattaches_to_its_remote_task(pair: Pair) -> None:
    with pair.a_client() as a:
        run_id = a.post("/v1/runs", json={"query": "takeover"}).json()["run_id"]
    _until("the remote task", lambda: [r for r in _b_runs(pair) if r["status"] == "running"])

    def bound() -> int:
        with contextlib.closing(sqlite3.connect(pair.a_root / "state.db")) as db:
            return int(db.execute("SELECT count(*) FROM remote_tasks").fetchone()[0])

    _until("the call's remote task to be bound in the first server's store", bound)
    pair.a.stop(kill=True)
    pair.restart_a()
    with pair.a_client() as a:
        r = a.post(f"/v1/runs/{run_id}/resume")
        assert r.status_code == 200, r.text

        def completed() -> dict[str, Any] | None:
            doc: dict[str, Any] = a.get(f"/v1/runs/{run_id}").json()
            return doc if doc["status"] != "running" else None

        doc = _until("the run to end", completed, timeout_s=180)
    assert doc["status"] == "completed", doc
    step = doc["steps"][0]
    assert step["tool"] == "remote.run" and step["outcome"] == "ok", step
    assert "The late answer from B." in str(step["result"])
    runs = _b_runs(pair)
    assert len(runs) == 1, runs  # the remote task ran once: the new process reattached to it
    assert runs[0]["status"] == "completed"
