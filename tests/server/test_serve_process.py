"""A real `penguiflow-agents serve` process on 127.0.0.1: keys made with `keys add`, a run that
pauses for an approval, decided over HTTP by another key, resumes on its own and completes;
SIGTERM stops the server cleanly."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from penguiflow_agents.cli import main
from tests.cli.test_run_cli import PACKAGE_DEMO, PAUSING_SCRIPT, env_for
from tests.conftest import ReadUntil

# Longest wait for the server to answer /healthz (it imports litellm and starts the replay model).
START_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _key(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["keys", "add", *argv]) == 0
    return capsys.readouterr().out.splitlines()[0]


# About 20 s of CPU; on a shared, loaded 2-core machine it has taken over 70 s.
@pytest.mark.timeout(300)
def test_a_run_paused_in_a_serve_process_is_decided_over_http_and_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], read_until: ReadUntil
) -> None:
    (tmp_path / "tools").mkdir()
    for name in ("clock.yaml", "files.yaml"):
        shutil.copy(PACKAGE_DEMO / "tools" / name, tmp_path / "tools" / name)
    shutil.copytree(PACKAGE_DEMO / "policies", tmp_path / "policies")
    (tmp_path / "pause.yaml").write_text(PAUSING_SCRIPT)
    keys = str(tmp_path / "keys.yaml")
    alice = _key(capsys, "--tenant", "acme", "--principal", "alice", "--keys", keys)
    bob = _key(capsys, "--tenant", "acme", "--principal", "bob", "--role", "admin", "--keys", keys)
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "penguiflow_agents",
            "serve",
            "--port",
            str(port),
            "--keys",
            keys,
            "--model",
            "replay:pause.yaml",
            "--store",
            f"sqlite:///{tmp_path / 'state.db'}",
        ],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        read_until(proc.stderr, b"serving on", START_TIMEOUT_S)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server never answered /healthz"
                time.sleep(0.2)
            as_alice = {"Authorization": f"Bearer {alice}"}
            as_bob = {"Authorization": f"Bearer {bob}"}
            r = client.post("/v1/runs?wait=true", json={"query": "Move it"}, headers=as_alice)
            assert r.status_code == 200, r.text
            doc = r.json()
            assert doc["status"] == "paused" and doc["model_is_replay"] is True
            (pending,) = doc["pending_approvals"]
            assert pending["tool"] == "files.write_file"
            listed = client.get("/v1/approvals?status=pending", headers=as_bob).json()
            assert [(a["id"], a["can_decide"]) for a in listed] == [(pending["id"], True)]
            decided = client.post(
                f"/v1/approvals/{pending['id']}/decision",
                json={"decision": "approve"},
                headers=as_bob,
            )
            assert decided.status_code == 200, decided.text
            deadline = time.monotonic() + 60
            while (run := client.get(f"/v1/runs/{doc['run_id']}", headers=as_alice).json())[
                "status"
            ] != "completed":
                assert time.monotonic() < deadline, run
                time.sleep(0.1)
            assert run["answer"] == "Saved: the meeting is at 11:00."
            assert (tmp_path / "sandbox" / "notes" / "a.txt").read_text() == "at 11:00"
            events = client.get(f"/v1/runs/{doc['run_id']}/events", headers=as_alice).text
            assert "event: paused" in events
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
