"""examples/quickstart/flow.py runs as documented and answers both questions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 60.0  # a fresh interpreter importing pydantic/structlog on a busy machine


def test_quickstart_runs_and_prints_both_answers() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart" / "flow.py")],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "has 5 words; the longest is 'penguins'" in lines[0]
    assert "has 7 words; the longest is 'Antarctic'" in lines[1]
    assert lines[2] == "events: node_start=4, node_success=4"
