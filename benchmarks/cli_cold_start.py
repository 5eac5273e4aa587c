"""Cold start of the CLI: `penguiflow-agents tools list` on the repo's tools/ (median of 5).

    python benchmarks/cli_cold_start.py [--repeat 5]

Each measurement is a fresh process (``python -m penguiflow_agents ...``) run
from the repository root, so it includes the interpreter start, the package's
imports, loading tools/*.yaml and listing every source (the time MCP server
is started and asked for its tools). ``--help`` and a bare ``import`` are
measured the same way for reference, and each command is checked not to
import litellm (which alone costs seconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Longest one cold start may take before the benchmark gives up.
RUN_TIMEOUT_S = 120

CHECK_NO_LITELLM = (
    "import runpy, sys\n"
    "sys.argv = ['penguiflow-agents', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('penguiflow_agents', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write('LITELLM_IMPORTED\\n' if 'litellm' in sys.modules else '')\n"
)


def timed(argv: list[str]) -> float:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    t0 = time.perf_counter()
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{argv} exited {done.returncode}: {done.stderr.strip()[:500]}")
    return elapsed


def imports_litellm(args: list[str]) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", CHECK_NO_LITELLM, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    return "LITELLM_IMPORTED" in done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cases = [
        ("import penguiflow_agents", [sys.executable, "-c", "import penguiflow_agents"], None),
        (
            "penguiflow-agents --help",
            [sys.executable, "-m", "penguiflow_agents", "--help"],
            ["--help"],
        ),
        (
            "penguiflow-agents tools list",
            [sys.executable, "-m", "penguiflow_agents", "tools", "list"],
            ["tools", "list"],
        ),
    ]
    print(f"CLI cold start from {ROOT} (median of {args.repeat} fresh processes)")
    for label, argv, cli_args in cases:
        times = [timed(argv) for _ in range(args.repeat)]
        litellm = (
            ""
            if cli_args is None
            else (", imports litellm!" if imports_litellm(cli_args) else ", no litellm")
        )
        print(
            f"  {label:30s} {statistics.median(times) * 1000:7.0f} ms (min {min(times) * 1000:.0f}{litellm})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
