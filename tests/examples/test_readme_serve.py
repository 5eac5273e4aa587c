"""The README's "Serve it" block runs as written: keys, a real `serve` process, curl.

The block runs in bash (`set -euo pipefail`, so `KEY=$(pfa keys add ... | head -1)` must not
fail on the closed pipe) in a copy of the repository's layout, with `pfa` on PATH, the real
`curl` and `jq`, and a free port instead of 8400. Its output must show what the README says:
the run pauses on the gated write, the SSE stream ends at the pause, the requester may not
decide (403), the approver's decision resumes the run to `run_finished`, and the OpenAI
endpoint answers with a message naming the approval.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Two `keys add` processes, a server (litellm's import, the time MCP server) and its runs.
BLOCK_TIMEOUT_S = 240.0
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq"
    ),
]


def readme_serve_block() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Serve it")
    block = text[text.index("```bash\n", start) + len("```bash\n") :]
    return block[: block.index("```")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(text: str) -> list[tuple[int, str]]:
    return [(int(i), kind) for i, kind in re.findall(r"^id: (\d+)\nevent: (\w+)$", text, re.M)]


def test_the_readme_serve_block_runs_as_written(tmp_path: Path) -> None:
    block = readme_serve_block()
    assert "pfa serve --port 8400 " in block and "keys add" in block
    port = _free_port()
    shutil.copytree(ROOT / "tools", tmp_path / "tools")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    shutil.copytree(
        ROOT / "penguiflow_agents" / "demo_scripts",
        tmp_path / "penguiflow_agents" / "demo_scripts",
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pfa = bin_dir / "pfa"
    pfa.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m penguiflow_agents "$@"\n')
    pfa.chmod(0o755)
    (tmp_path / "readme.sh").write_text(block.replace("8400", str(port)))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("PENGUIFLOW_STORE", None)
    env.pop("PENGUIFLOW_BUS", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "penguiflow-test-pycache")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PENGUIFLOW_SANDBOX"] = str(tmp_path / "sandbox")
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "readme.sh"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the server is its child: stopped with the group below
    )
    try:
        out, err = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err, err
    assert '"status": "paused"' in out and '"tool": "files.write_file"' in out
    paused_run, rest = out.split("inbox: ", 1)
    first = _events(paused_run)
    kinds = [kind for _, kind in first]
    assert kinds[0] == "run_started" and kinds[-1] == "paused", kinds
    assert "tool_call_finished" in kinds
    # the inbox page comes with penguiflow_agents/server/routes/inbox.py (landed separately)
    inbox = (ROOT / "penguiflow_agents" / "server" / "routes" / "inbox.py").exists()
    assert rest.startswith("200\n" if inbox else "404\n")
    assert "alice: 403" in rest
    assert '"status": "approved"' in rest and '"decided_by": "bob"' in rest
    after = _events(rest)
    ids = [i for i, _ in first + after]
    assert ids == list(range(1, len(ids) + 1)), "an event was lost or repeated across Last-Event-ID"
    assert after[-1][1] == "run_finished" and '"status":"completed"' in rest
    assert '"status": "completed"' in rest and "The meeting now starts at 11:00" in rest
    assert "This needs a human decision" in rest and "files.write_file" in rest.split("alice")[-1]
    note = tmp_path / "sandbox" / "notes" / "meeting.txt"
    assert note.read_text().startswith("Team meeting moved from 09:30 to 11:00")
    keys = (tmp_path / "keys.yaml").read_text()
    assert "acme-alice" in keys and "acme-bob" in keys
