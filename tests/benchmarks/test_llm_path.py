"""benchmarks/llm_path.py end to end on a tiny load: the table comes out, and neither the
project's client nor a whole planner turn imports litellm on the OpenAI-compatible path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_path.py"


def test_llm_path_benchmark_runs_and_keeps_litellm_out_of_the_direct_path() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--conversations",
            "4",
            "--sequential",
            "2",
            "--delay",
            "0.01",
            "--only",
            "httpx",
            "client",
            "planner",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3, done.stdout  # header + one row per client
    assert "planner turn / floor" in done.stdout
    progress = [line.split() for line in done.stderr.splitlines() if "litellm imported:" in line]
    assert {(words[2], words[-1]) for words in progress} == {
        ("httpx", "False"),
        ("client", "False"),
        ("planner", "False"),
    }, done.stderr
