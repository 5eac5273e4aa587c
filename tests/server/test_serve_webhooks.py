"""Webhooks through `penguiflow-agents serve`: refused without a secret, delivered across a crash.

A real serve process, a real receiver on 127.0.0.1 that answers 503 twice per
event, and a SIGKILL of the server between the request and the decision: the
receiver still processes each event once per idempotency key, every
signature verifies, and the secret never reaches the server's output.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from penguiflow_agents.server import add_key
from penguiflow_agents.store import open_store
from tests.server.serve_process import free_port, serve_command, start_serve
from tests.webhooks.receiver import running_receiver

SECRET = "serve-webhook-secret-" + "w" * 32
POLICY = """\
tenant: acme
allow: ["files.*"]
approvals:
  - match: "files.write_file"
    approvers: ["role:admin"]
    reason: "Writes a file"
"""
TOOLS = """\
name: files
transport: python
module: penguiflow_agents.demo_tools
include: ["write_file"]
"""
SCRIPT = """\
turns:
  - tool_calls: [{name: files.write_file, arguments: {path: /w.txt, content: hi}}]
  - content: "Written."
"""


def setup(root: Path) -> dict[str, str]:
    (root / "tools").mkdir()
    (root / "tools" / "files.yaml").write_text(TOOLS)
    (root / "policies").mkdir()
    (root / "policies" / "acme.yaml").write_text(POLICY)
    (root / "script.yaml").write_text(SCRIPT)
    return {
        "alice": add_key(root / "keys.yaml", tenant="acme", principal="alice")[0],
        "bob": add_key(root / "keys.yaml", tenant="acme", principal="bob", roles=["admin"])[0],
    }


def wait_until_recorded(root: Path, event_id: str, timeout_s: float = 60.0) -> None:
    async def attempts() -> int:
        store = await open_store(f"sqlite:///{root / 'state.db'}")
        try:
            entries = await store.list_outbox()
        finally:
            await store.aclose()
        return max((e.attempts for e in entries if e.event_id == event_id), default=0)

    deadline = time.monotonic() + timeout_s
    while asyncio.run(attempts()) < 1:
        assert time.monotonic() < deadline, f"no attempt of {event_id} was recorded"
        time.sleep(0.05)


def test_serve_with_notify_urls_and_no_secret_refuses_to_start(tmp_path: Path) -> None:
    setup(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PENGUIFLOW_WEBHOOK_SECRET"}
    command = serve_command(tmp_path, free_port(), "--notify", "https://hooks.example/x/TOKEN")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "PENGUIFLOW_WEBHOOK_SECRET" in done.stderr and "unsigned" in done.stderr
    assert "TOKEN" not in done.stderr
    bad = serve_command(tmp_path, free_port(), "--notify", "ftp://hooks.example/x")
    done = subprocess.run(bad, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "--notify" in done.stderr, done.stderr


@pytest.mark.timeout(240)  # two server starts and a run, on a machine that may be very busy
def test_events_survive_a_receiver_failing_twice_and_a_server_crash(tmp_path: Path) -> None:
    keys = setup(tmp_path)
    env = dict(os.environ, PENGUIFLOW_WEBHOOK_SECRET=SECRET, PENGUIFLOW_SANDBOX=str(tmp_path))
    with running_receiver(SECRET, fail_first=2) as received:
        args = ("--model", f"replay:{tmp_path / 'script.yaml'}", "--notify", received.url)
        first = start_serve(tmp_path, *args, env=env)
        try:
            with first.client(keys["alice"]) as alice:
                paused = alice.post("/v1/runs?wait=true", json={"query": "write it"}).json()
            assert paused["status"] == "paused", paused
            approval_id = paused["pending_approvals"][0]["id"]
            requested = f"{approval_id}.requested"
            received.wait_for(lambda r: r.seen[requested] >= 1, 60, "the first attempt")
            # Crash after the failure is recorded: between two attempts, not during one (a
            # crash during one is covered by the lease: the entry is sent again once it ends).
            wait_until_recorded(tmp_path, requested)
        finally:
            outputs = [first.stop(kill=True)]  # a crash, between two attempts

        second = start_serve(tmp_path, *args, env=env)
        try:
            with second.client(keys["bob"]) as bob:
                decided = bob.post(
                    f"/v1/approvals/{approval_id}/decision", json={"decision": "approve"}
                )
                assert decided.status_code == 200, decided.text
            keys_ = {requested, f"{approval_id}.decided"}
            received.wait_for(lambda r: set(r.processed) == keys_, 90, "both events processed")
        finally:
            outputs.append(second.stop())
        with received.lock:
            assert received.bad_signatures == []
            assert {k: len(v) for k, v in received.processed.items()} == dict.fromkeys(keys_, 1)
            assert all(received.seen[k] >= 3 for k in keys_)
            decided_body = received.processed[f"{approval_id}.decided"][0]
        assert decided_body["approval"]["decision"]["decided_by"] == "bob"
    for output in outputs:
        assert SECRET.encode() not in output
