"""examples/chat_backend/backend.py against a real `penguiflow-agents serve` on 127.0.0.1.

The server plays a replay script: a clock tool, then a file write that the default policy
gates behind an admin (the repository's clock and files tools; no MCP server, to start fast).
The example streams the run's events, approves the pause with an admin's key, follows the
resumed run with Last-Event-ID, and asks the OpenAI endpoint (which pauses the same way).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "penguiflow_agents"]
# A fresh interpreter starting the server (litellm import, the time MCP server) on a busy machine.
SERVER_START_TIMEOUT_S = 90.0
EXAMPLE_TIMEOUT_S = 90.0
# Two CLI processes, a server and the example: over the suite's 120 s on a heavily loaded machine.
pytestmark = pytest.mark.timeout(300)
QUESTION = "Our 09:30 meeting moves 90 minutes later: when is it now? Note it."
SCRIPT = """
turns:
  - tool_calls: [{name: clock.add_minutes, arguments: {time: "09:30", minutes: 90}}]
  - tool_calls:
      - {name: files.write_file, arguments: {path: /notes/meeting.txt, content: "Moved to 11:00."}}
  - content: The meeting now starts at 11:00, and the note is saved.
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key(keys: Path, *args: str) -> str:
    out = subprocess.run(
        [*CLI, "keys", "add", "--keys", str(keys), "--tenant", "default", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    return out.stdout.splitlines()[0]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    keys = tmp_path / "keys.yaml"
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("clock.yaml", "files.yaml"):
        (tools / name).write_text((ROOT / "tools" / name).read_text())
    (tmp_path / "script.yaml").write_text(SCRIPT)
    backend = _key(keys, "--principal", "chat-backend")
    admin = _key(keys, "--principal", "alice", "--role", "admin")
    port = _free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--port",
            str(port),
            "--keys",
            str(keys),
            "--store",
            f"sqlite:///{tmp_path / 'state.db'}",
            "--tools",
            str(tools),
            "--model",
            f"replay:{tmp_path / 'script.yaml'}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.3)
        yield url, backend, admin
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_the_chat_backend_example_streams_a_run_through_its_pause_and_asks_openai(
    server: tuple[str, str, str],
) -> None:
    url, backend, admin = server
    env = {
        **os.environ,
        "PENGUIFLOW_URL": url,
        "PENGUIFLOW_KEY": backend,
        "PENGUIFLOW_APPROVER_KEY": admin,
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "chat_backend" / "backend.py"), QUESTION],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=EXAMPLE_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    ids = [int(line.split("]")[0].strip(" [")) for line in lines if line.startswith("  [")]
    assert ids == sorted(set(ids)), "an event came twice or out of order across the reconnect"
    assert "tool_call_finished: clock.add_minutes" in out
    paused = next(line for line in lines if line.startswith("approval needed: apr_"))
    approval_id = paused.split()[2]
    assert f"approval {approval_id}: approved" in out
    assert "tool_call_finished: files.write_file" in out and "run_finished: completed" in out
    assert "completed; answer: The meeting now starts at 11:00, and the note is saved." in out
    # the OpenAI endpoint: the same script pauses again, and says so with the approval's id
    assert "openai: This needs a human decision" in out
    assert '"status": "paused"' in lines[-1] and "files.write_file" in lines[-1]
