"""examples/mcp_gateway/client.py against a real `penguiflow-agents serve` process: the key's
view, a gated write that is still pending after the (short) wait and names its approval, the
approval by an admin over the HTTP API, then the same call again writes the file once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.serve_process import start_serve

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "examples" / "mcp_gateway" / "client.py"
pytestmark = pytest.mark.timeout(300)


def _key(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", "keys", "add", "--keys", "keys.yaml", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.splitlines()[0].strip()


def _client(
    url: str, key: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CLIENT), url, *args],
        env={**env, "KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_example_client_lists_waits_for_an_approval_and_writes_once(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    for name in ("files.yaml", "clock.yaml"):
        shutil.copy(ROOT / "tools" / name, tmp_path / "tools" / name)
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    sandbox = tmp_path / "sandbox"
    env = {**os.environ, "PENGUIFLOW_SANDBOX": str(sandbox), "PYTHONPATH": str(ROOT)}
    alice = _key(tmp_path, env, "--tenant", "acme", "--principal", "alice")
    bob = _key(tmp_path, env, "--tenant", "acme", "--principal", "bob", "--role", "admin")
    serving = start_serve(tmp_path, "--mcp-approval-wait", "1", env=env)
    try:
        url = serving.url + "/mcp"
        listed = _client(url, alice, env)
        assert listed.returncode == 0, listed.stderr
        assert "files.write_file" in listed.stdout and "clock." in listed.stdout

        write = ("files.write_file", '{"path": "/shared/note.txt", "content": "hello"}')
        pending = _client(url, alice, env, *write)
        assert pending.returncode == 1, pending.stdout + pending.stderr
        assert "waiting for approval" in pending.stdout  # a progress notification
        approval = pending.stdout.split("approval: ")[-1].strip()
        assert approval.startswith("apr_") and f"{approval!r} is still pending" in pending.stdout
        assert not (sandbox / "shared" / "note.txt").exists()

        decided = httpx.post(
            f"{serving.url}/v1/approvals/{approval}/decision",
            headers={"Authorization": f"Bearer {bob}"},
            json={"decision": "approve"},
            timeout=60,
        )
        assert decided.status_code == 200, decided.text

        done = _client(url, alice, env, *write)
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"bytes": 5' in done.stdout and f"approval: {approval}" in done.stdout
        assert (sandbox / "shared" / "note.txt").read_text() == "hello"

        again = _client(url, alice, env, *write)  # the approval was used: ask anew
        assert again.returncode == 1 and approval not in again.stdout.split("approval: ")[-1]
    finally:
        serving.stop()
