"""A tool server's question (elicitation) asked on the terminal: inline in `chat`, on the TTY
in `tools call`; against a real stdio MCP server (tests/tools/elicit_server.py)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[1] / "tools" / "elicit_server.py"
# Longest one CLI process may take (litellm's import alone takes seconds on a busy machine).
CLI_TIMEOUT_S = 120
PYCACHE = Path(tempfile.gettempdir()) / "penguiflow-test-pycache"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "ask.yaml").write_text(
        f"name: ask\ntransport: mcp_stdio\ncommand: {json.dumps([sys.executable, str(SERVER)])}\n"
        "timeout_s: 60\n"
    )
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default.yaml").write_text('tenant: "*"\nallow: ["ask.*"]\n')
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def test_chat_asks_the_question_inline_and_the_tool_gets_the_answer(workdir: Path) -> None:
    (workdir / "script.yaml").write_text(
        "turns:\n"
        "  - tool_calls: [{name: ask.ask_name, arguments: {}, id: c1}]\n"
        "  - content: greeted\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "penguiflow_agents",
            "chat",
            "--model",
            "replay:script.yaml",
            "--json",
        ],
        cwd=workdir,
        env=_env(),
        input="greet me\na\nAda\n36\n/quit\n",
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    assert "name (string) - your name:" in done.stderr and "age (integer) [30]:" in done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert any("hello Ada (36)" in json.dumps(e) for e in events), done.stdout


@pytest.mark.parametrize(
    ("answers", "expected"),
    [("a\nAda\n\n", "hello Ada (30)"), ("d\n", "no name: decline")],
)
def test_tools_call_asks_on_the_tty(workdir: Path, answers: str, expected: str) -> None:
    master, slave = pty.openpty()
    try:
        os.write(master, answers.encode())  # the TTY holds the lines until they are read
        proc = subprocess.run(
            [sys.executable, "-m", "penguiflow_agents", "tools", "call", "ask.ask_name"],
            cwd=workdir,
            env=_env(),
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    assert "question from source 'ask': What is your name?" in proc.stderr
    assert proc.stdout.strip() == expected


def test_tools_call_shows_a_url_question_and_opens_nothing(workdir: Path) -> None:
    master, slave = pty.openpty()
    try:
        os.write(master, b"d\n")
        proc = subprocess.run(
            [sys.executable, "-m", "penguiflow_agents", "tools", "call", "ask.visit"],
            cwd=workdir,
            env={**_env(), "BROWSER": "false"},
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    assert "https://forms.example/sign" in proc.stderr and "open it yourself" in proc.stderr
    assert "visit: accept" in proc.stdout
