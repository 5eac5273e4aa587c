"""`tools list -v` never leaves a stdio server, or anything a server started, running.

Each stdio server runs in its own process group, and the whole group is reaped
on every exit path: a normal exit, Ctrl-C and SIGTERM. The bad servers are the
ones an adversarial review used: one that prints garbage on stdout, one that is
``sleep 3600`` (ignores its input, never answers), and one that forks a child
that outlives it (the server itself exits when its input closes).

Every process of a run carries a marker in its environment; after the CLI has
exited, psutil must find none of them alive. A CLI start costs ~10 s on a loaded
2-core machine, so the repetition is inside one run: each signalled run starts
N = 4 copies of each bad server (12 bad servers + 3 healthy processes), plus one
normal-exit run with a healthy server and a forking real MCP server; about
30-40 s for the three runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

# Runs per exit path (normal exit, SIGINT, SIGTERM).
RUNS_PER_PATH = 1
# Copies of each bad server in one run (a run costs one CLI start, ~10 s on a loaded machine).
BAD_COPIES = 4
# Longest wait for all of a run's servers to be started (interpreter + server imports).
SPAWN_TIMEOUT_S = 60
# Bound on the CLI's exit (normal, or after the signal).
EXIT_TIMEOUT_S = 60

_GARBAGE = (
    "import sys, time\n"
    "for i in range(5000):\n"
    "    sys.stdout.write(f'garbage line {i} <<not json>>\\n')\n"
    "sys.stdout.flush()\n"
    "time.sleep(3600)\n"
)
# Forks a child that outlives it, then (never answering) exits as soon as its input closes.
_FORKING = (
    "import subprocess, sys\n"
    "subprocess.Popen(['sleep', '3600'], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)\n"
    "sys.stdin.buffer.read()\n"
)
# The same, with a real MCP server in place of the exiting one (it answers, so `tools list` ends).
_FORKING_MCP = (
    "import os, subprocess, sys\n"
    "subprocess.Popen(['sleep', '3600'], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'penguiflow_agents.testing.mcp_server'])\n"
)


def _write_tools(tools: Path, marker: str, *, with_hanging: bool) -> int:
    """Manifests of the servers of one run; the number of processes they start."""
    tools.mkdir(exist_ok=True)
    env = f"env: {{PF_TEST_MARK: {marker}}}\n"

    def source(name: str, command: str) -> None:
        text = f"name: {name}\ntransport: mcp_stdio\ncommand: {command}\n" + env
        (tools / f"{name}.yaml").write_text(text, encoding="utf-8")

    source("healthy", "[python, -m, penguiflow_agents.testing.mcp_server]")
    source("forkingmcp", f"[python, -c, {_FORKING_MCP!r}]")
    if not with_hanging:
        return 3  # healthy, forkingmcp + its sleeping child
    for i in range(BAD_COPIES):
        source(f"garbage{i}", f"[python, -c, {_GARBAGE!r}]")
        source(f"sleeper{i}", "[sleep, '3600']")
        source(f"forking{i}", f"[python, -c, {_FORKING!r}]")
    return 3 + 4 * BAD_COPIES


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PF_TEST_MARK") == marker:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _one_run(tmp_path: Path, exit_path: str) -> list[str]:
    """Run `tools list -v` once; describe what of its servers is still alive afterwards."""
    marker = uuid.uuid4().hex
    run_dir = tmp_path / marker
    run_dir.mkdir()
    expected = _write_tools(run_dir / "tools", marker, with_hanging=exit_path != "exit")
    cli = subprocess.Popen(
        [sys.executable, "-m", "penguiflow_agents", "tools", "list", "-v"],
        cwd=run_dir,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: list[psutil.Process] = []
    try:
        if exit_path != "exit":
            deadline = time.monotonic() + SPAWN_TIMEOUT_S
            while len(seen) < expected and time.monotonic() < deadline:
                seen = _marked(marker)
                time.sleep(0.1)
            assert len(seen) >= expected, f"only {len(seen)} of {expected} servers started"
            cli.send_signal(signal.SIGINT if exit_path == "sigint" else signal.SIGTERM)
        cli.wait(timeout=EXIT_TIMEOUT_S)
        return [" ".join(p.cmdline())[:120] for p in _marked(marker)]
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for proc in _marked(marker):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


@pytest.mark.parametrize("exit_path", ["exit", "sigint", "sigterm"])
def test_tools_list_leaves_no_server_process_behind(tmp_path: Path, exit_path: str) -> None:
    """Healthy, garbage-printing, stdin-ignoring and forking servers: none survives the CLI."""
    for _ in range(RUNS_PER_PATH):
        survivors = _one_run(tmp_path, exit_path)
        assert survivors == [], f"{exit_path}: processes outlived `tools list`: {survivors}"
