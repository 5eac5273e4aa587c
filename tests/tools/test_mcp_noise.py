"""A stdio server that prints 100,000 non-JSON lines on stdout and on stderr (issue #12 §5):
`tools list` stays quiet without -v, and with -v logs a bounded number of lines and summaries,
never an SDK traceback; the other sources are still listed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import penguiflow_agents

PACKAGE_DEMO = Path(penguiflow_agents.__file__).parent / "demo_scripts"
CLI_TIMEOUT_S = 120
LINES = 100_000

NOISY_SERVER = f"""
import sys, time
for i in range({LINES}):
    sys.stdout.write(f"garbage line {{i}}\\n")
    sys.stderr.write(f"err line {{i}}\\n")
sys.stdout.flush()
sys.stderr.flush()
time.sleep(1)
"""


def _tools_list(workdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", "tools", "list", "--tools", "tools", *extra],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def test_a_noisy_server_does_not_flood_stderr(tmp_path: Path) -> None:
    (tmp_path / "noisy.py").write_text(NOISY_SERVER)
    (tmp_path / "tools").mkdir()
    shutil.copy(PACKAGE_DEMO / "tools" / "clock.yaml", tmp_path / "tools" / "clock.yaml")
    (tmp_path / "tools" / "noisy.yaml").write_text(
        json.dumps(
            {
                "name": "noisy",
                "transport": "mcp_stdio",
                "command": [sys.executable, str(tmp_path / "noisy.py")],
                "timeout_s": 30,
            }
        )
    )
    quiet = _tools_list(tmp_path, "--json")
    assert quiet.returncode in (0, 1), quiet.stderr[-2000:]
    assert "clock.add_minutes" in {t["name"] for t in json.loads(quiet.stdout)}
    assert len(quiet.stderr.splitlines()) < 10, quiet.stderr[-2000:]

    loud = _tools_list(tmp_path, "-v")
    lines = loud.stderr.splitlines()
    assert "Traceback" not in loud.stderr
    assert len(lines) < 200, (len(lines), loud.stderr[-3000:])
    assert "mcp_server_noise_summary" in loud.stderr  # stdout garbage: counted
    assert "mcp_server_stderr_summary" in loud.stderr  # stderr lines: counted past the limit
    assert sum("mcp_server_stderr " in line for line in lines) <= 50
