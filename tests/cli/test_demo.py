"""`penguiflow-agents demo`: offline, from any directory, two tools then a gated call approved by another principal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Longest the demo may take here (litellm's import alone takes seconds on a busy machine).
DEMO_TIMEOUT_S = 120


def test_demo_runs_offline_from_an_empty_directory_with_the_packaged_defaults(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode caches, outside the tree (see below)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "penguiflow-test-pycache")
    env.pop("PENGUIFLOW_SANDBOX", None)
    done = subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "replay model (test double)" in out
    assert "the demo's own tools" in out  # no ./tools here: the packaged manifests were used
    # Two tools in one step: the time MCP server and a Python tool, both ok.
    assert re.search(r"✓ time\.get_current_time .*ok", out)
    assert re.search(r"✓ clock\.add_minutes .*ok", out)
    # The gated write paused the run, was approved by someone else, then ran.
    assert re.search(r"⏸ files\.write_file .*needs approval apr_\w+", out)
    assert "as 'demo-admin' (role admin), not the requester 'cli-user'" in out
    assert re.search(r"✓ files\.write_file .*ok", out)
    assert "answer The meeting now starts at 11:00" in out
    assert re.search(r"demo completed in \d+\.\d s", out)
    note = tmp_path / ".penguiflow" / "sandbox" / "notes" / "meeting.txt"
    assert note.read_text() == "Team meeting moved from 09:30 to 11:00 (London time)."
    assert (tmp_path / ".penguiflow" / "state.db").exists()  # the pause was durable (SQLite)
