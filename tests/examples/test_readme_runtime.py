"""The README's "flow runtime in five minutes" snippet runs as written and prints what it says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### The flow runtime in five minutes"
RUN_TIMEOUT_S = 60.0  # a fresh interpreter importing pydantic/structlog on a busy machine


def _snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the runtime section has no python block"
    return match.group(1)


def test_the_readme_runtime_snippet_runs_and_prints_the_documented_lines(tmp_path: Path) -> None:
    script = tmp_path / "flow_demo.py"
    script.write_text(_snippet())
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "answer: HELLO"
    assert re.fullmatch(r"triaging [0-9a-f]{8}", lines[1])
    assert lines[2:] == ["answer: STREAM ME", "node_exception triage"]
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert {e["event"] for e in events} >= {
        "node_start",
        "node_success",
        "node_error",
        "node_failed",
    }
    assert all(e["tenant"] == "acme" and len(e["trace_id"]) == 32 for e in events)
    assert not any("stream me" in line.lower() for line in proc.stderr.splitlines())
