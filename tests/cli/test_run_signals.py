"""`run` stopped by Ctrl-C or SIGTERM mid tool call: tool servers are stopped, status 128+signal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil
import pytest

# Longest wait for the run to reach its slow tool call (interpreter, litellm, server start).
CALL_START_TIMEOUT_S = 60
# Bound on the CLI's exit after the signal.
EXIT_TIMEOUT_S = 30
# The lingering server outlives its closed input this long: far beyond any test's wait.
LINGER_S = 60


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_stops_the_tool_servers_before_the_cli_exits(
    tmp_path: Path, signum: int, read_until: Callable[[IO[bytes], bytes, float], bytes]
) -> None:
    """Even a server that does not exit when its input closes is gone once `run` has exited."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "fx.yaml").write_text(
        "name: fx\ntransport: mcp_stdio\n"
        "command: [python, -m, penguiflow_agents.testing.mcp_server, "
        f"--linger-s, '{LINGER_S}']\ntimeout_s: 120\n",
        encoding="utf-8",
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "all.yaml").write_text('tenant: "*"\nallow: ["fx.*"]\n', encoding="utf-8")
    script = tmp_path / "slow.yaml"
    script.write_text(
        "turns:\n"
        "  - tool_calls: [{name: fx.slow, arguments: {seconds: 100}}]\n"
        "  - content: never reached\n",
        encoding="utf-8",
    )
    argv = ["run", "wait for it", "-v", "--model", f"replay:{script}"]
    argv += ["--tools", str(tools), "--policies", str(policies)]
    argv += ["--store", f"sqlite:///{tmp_path / 'state.db'}"]
    cli = subprocess.Popen(
        [sys.executable, "-m", "penguiflow_agents", *argv],
        cwd=tmp_path,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    servers: list[psutil.Process] = []
    try:
        assert cli.stderr is not None
        read_until(cli.stderr, b"tool_call.started", CALL_START_TIMEOUT_S)
        time.sleep(0.5)  # the call is on its way to the server
        servers = [
            p
            for p in psutil.Process(cli.pid).children(recursive=True)
            if "penguiflow_agents.testing.mcp_server" in " ".join(p.cmdline())
        ]
        assert servers, "the tool server is running"
        cli.send_signal(signum)
        _, err = cli.communicate(timeout=EXIT_TIMEOUT_S)
        assert cli.returncode == 128 + signum, err.decode(errors="replace")[-2000:]
        alive = [p for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], "a tool server outlived the CLI"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
        for proc in servers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
