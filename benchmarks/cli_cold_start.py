"""Cold start of the CLI: `penguiflow-agents tools list` on the repo's tools/ (median of 5).

    python benchmarks/cli_cold_start.py [--repeat 5]

Each measurement is a fresh process (``python -m penguiflow_agents ...``) run
from the repository root, so it includes the interpreter start, the package's
imports and loading tools/*.yaml. ``tools list --refresh`` lists every source
live (the time MCP server is started and asked for its tools); plain ``tools
list`` then shows the listings cached in the store (a store of the benchmark's
own). ``demo`` is the offline demo (``make demo`` without make's own start). ``--help`` and a bare ``import`` are
measured the same way for reference, and each command is checked not to
import litellm (which alone costs seconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
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
    tmp = tempfile.TemporaryDirectory()
    # The listings cache lives in the store: one of the benchmark's own, warmed by the
    # live (--refresh) case, which runs first.
    store = ["--store", f"sqlite:///{Path(tmp.name) / 'state.db'}"]
    cases = [
        ("import penguiflow_agents", [sys.executable, "-c", "import penguiflow_agents"], None),
        (
            "penguiflow-agents --help",
            [sys.executable, "-m", "penguiflow_agents", "--help"],
            ["--help"],
        ),
        (
            "tools list --refresh (live)",
            [sys.executable, "-m", "penguiflow_agents", "tools", "list", "--refresh", *store],
            ["tools", "list", "--refresh", *store],
        ),
        (
            "tools list (warm cache)",
            [sys.executable, "-m", "penguiflow_agents", "tools", "list", *store],
            ["tools", "list", *store],
        ),
        (
            "demo (warm environment)",
            [sys.executable, "-m", "penguiflow_agents", "demo"],
            None,
        ),
    ]
    print(
        f"CLI cold start from {ROOT} (median of {args.repeat} fresh processes; "
        f"load average {os.getloadavg()[0]:.1f})"
    )
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
    tmp.cleanup()
    print("  required: tools list < 500 ms with a warm cache, --help < 50 ms, demo < 3 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
