"""The real `mcp-server-time` from PyPI through tools/time.yaml and the command line
(`penguiflow-agents tools list --json` / `tools call`), in a child interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
# Bound on one CLI run (it starts an interpreter, which starts the time server).
CLI_TIMEOUT_S = 60


def _time_server_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if (
                "mcp_server_time" in " ".join(proc.info["cmdline"] or [])
                and proc.environ().get("PF_TEST_MARK") == marker
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


@pytest.fixture
def marked_tools(tmp_path: Path) -> tuple[Path, str]:
    """A copy of the repo's tools/time.yaml whose server carries a marker in its environment."""
    marker = uuid.uuid4().hex
    tools = tmp_path / "tools"
    tools.mkdir()
    text = (REPO / "tools" / "time.yaml").read_text()
    assert "env: {TZ: UTC}" in text
    (tools / "time.yaml").write_text(
        text.replace("env: {TZ: UTC}", f"env: {{TZ: UTC, PF_TEST_MARK: {marker}}}")
    )
    return tools, marker


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_cli_lists_the_time_tools_as_json(marked_tools: tuple[Path, str], tmp_path: Path) -> None:
    tools, marker = marked_tools
    done = _cli(
        "tools",
        "list",
        "--json",
        "--tools",
        str(tools),
        "--policies",
        str(REPO / "policies"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    listed = {t["name"]: t for t in json.loads(done.stdout)}
    assert set(listed) == {"time.get_current_time", "time.convert_time"}
    assert listed["time.get_current_time"]["source"] == "time"
    assert listed["time.get_current_time"]["input_schema"]["required"] == ["timezone"]
    assert _time_server_processes(marker) == []


def test_cli_calls_the_time_server(marked_tools: tuple[Path, str], tmp_path: Path) -> None:
    tools, marker = marked_tools
    done = _cli(
        "tools",
        "call",
        "time.get_current_time",
        "--args",
        '{"timezone": "UTC"}',
        "--json",
        "--tools",
        str(tools),
        "--policies",
        str(REPO / "policies"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["structured"]["timezone"] == "UTC"
    assert done.stderr == ""  # the server's stderr went to the log, which is quiet here
    assert _time_server_processes(marker) == []


# Longest wait for the CLI to report its MCP session started (interpreter + server start).
SESSION_START_TIMEOUT_S = 30
# The lingering server outlives its closed input this long: far beyond any test's wait.
LINGER_S = 60


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_cli_call_stops_its_server_before_exiting(
    tmp_path: Path, signum: int, read_until: Callable[[IO[bytes], bytes, float], bytes]
) -> None:
    """Ctrl-C or SIGTERM mid-call: the CLI closes the session, so even a server that does
    not exit when its input closes is stopped; exit status 128 + signal."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "fx.yaml").write_text(
        "name: fx\ntransport: mcp_stdio\n"
        "command: [python, -m, penguiflow_agents.testing.mcp_server, "
        f"--linger-s, '{LINGER_S}']\ntimeout_s: 60\n",
        encoding="utf-8",
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "all.yaml").write_text('tenant: "*"\nallow: ["fx.*"]\n', encoding="utf-8")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    argv = ["tools", "call", "fx.slow", "-v", "--args", '{"seconds": 60}']
    argv += ["--tools", str(tools), "--policies", str(policies)]
    cli = subprocess.Popen(
        [sys.executable, "-m", "penguiflow_agents", *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    servers: list[psutil.Process] = []
    try:
        assert cli.stderr is not None
        read_until(cli.stderr, b"mcp_session_started", SESSION_START_TIMEOUT_S)
        servers = psutil.Process(cli.pid).children(recursive=True)
        assert servers, "the server process is running"
        cli.send_signal(signum)
        _, err = cli.communicate(timeout=CLI_TIMEOUT_S)
        assert cli.returncode == 128 + signum, err.decode(errors="replace")[-2000:]
        assert (b"interrupted" if signum == signal.SIGINT else b"terminated") in err
        alive = [p for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], "a server process outlived the CLI"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
        for proc in servers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
