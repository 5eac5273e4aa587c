"""`make bench`: every benchmark script runs exactly once, service URLs come from the environment."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def test_make_bench_runs_each_script_once(tmp_path: Path) -> None:
    record = tmp_path / "ran.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$1" >> {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    done = subprocess.run(
        ["make", "-s", "-o", ".venv/.synced", "bench", f"BENCH_PYTHON={fake}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    ran = record.read_text().split()
    assert ran == [f"benchmarks/{p.name}" for p in SCRIPTS]


def test_no_benchmark_script_runs_another_one() -> None:
    """A script that ran a sibling made `make bench` run that sibling twice."""
    names = {p.name for p in SCRIPTS}  # "mcp_call_overhead.py", as a path or runpy names it
    for script in SCRIPTS:
        tree = ast.parse(script.read_text())
        docstring = ast.get_docstring(tree, clean=False)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value == docstring:
                    continue
                named = {n for n in names if n in node.value and n != script.name}
                assert not named, f"{script.name} refers to {named} in code"


def test_service_urls_default_from_the_environment() -> None:
    env = {
        **os.environ,
        "PENGUIFLOW_BENCH_POSTGRES": "postgresql://bench@db.example:5433/perf",
        "PENGUIFLOW_BENCH_REDIS": "redis://cache.example:6380/4",
    }
    for script, expected in (
        ("worker_throughput.py", ["redis://cache.example:6380/4", "db.example:5433/perf"]),
        ("store_throughput.py", ["db.example:5433/perf"]),
    ):
        done = subprocess.run(
            [sys.executable, str(BENCHMARKS / script), "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        help_text = " ".join(done.stdout.split())
        for url in expected:
            assert url in help_text, f"{script} --help lacks {url}"
