"""What a new user meets first: --version, help on every option, a pipe closed early,
and chat's inline approvals asked in the natural order (decision first, then who)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import penguiflow_agents
from penguiflow_agents.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DEMO = Path(penguiflow_agents.__file__).parent / "demo_scripts"
PAUSING_SCRIPT = """
turns:
  - tool_calls:
      - {name: files.write_file, arguments: {path: /notes/a.txt, content: "at 11:00"}, id: w}
  - content: "Saved."
"""


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _options_without_help(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, [*path, name])
        elif action.help is None:
            missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_and_argument_of_every_command_has_help() -> None:
    assert _options_without_help(build_parser(), ["penguiflow-agents"]) == []


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"penguiflow-agents {penguiflow_agents.__version__}"


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """`penguiflow-agents tools list | head -1`: no BrokenPipeError traceback."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("clock.yaml", "files.yaml"):
        shutil.copy(REPO / "tools" / name, tools / name)
    env = {**os.environ, "PENGUIFLOW_SANDBOX": str(tmp_path / "sandbox")}
    shell = f"{sys.executable} -m penguiflow_agents tools list --tools {tools} | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.stdout.startswith("operator view")
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode in (0, 141)  # 141: stopped by the closed pipe, like any command


@pytest.fixture
def chatdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tools").mkdir()
    shutil.copy(PACKAGE_DEMO / "tools" / "files.yaml", tmp_path / "tools" / "files.yaml")
    shutil.copytree(PACKAGE_DEMO / "policies", tmp_path / "policies")
    (tmp_path / "pause.yaml").write_text(PAUSING_SCRIPT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PENGUIFLOW_SANDBOX", str(tmp_path / "sandbox"))
    for key in [k for k in os.environ if k.endswith("_API_KEY")]:
        monkeypatch.delenv(key)
    return tmp_path


def _chat(monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str) -> int:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["chat", "--model", "replay:pause.yaml", *argv])


def test_chat_asks_yes_no_first_and_then_who_decides(
    chatdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Typing `y` approves (it used to become the approver's name); who decides is asked
    after, once, because no --approver was given. Then --json: every event a JSON line."""
    code = _chat(monkeypatch, "Note the move\ny\nboss\nadmin\n/quit\n")
    out = capsys.readouterr().out
    assert code == 0
    assert out.index("approve? [y]es / [n]o / [e]dit / [s]kip") < out.index("decide as")
    assert "approve" in out and "as 'boss'" in out and "as 'y'" not in out
    assert "Saved." in out
    assert (chatdir / "sandbox" / "notes" / "a.txt").read_text() == "at 11:00"


def test_chat_with_an_approver_never_asks_who_and_json_prints_event_lines(
    chatdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("--approver", "boss", "--approver-role", "admin", "--json", "--session", "j1")
    code = _chat(monkeypatch, "Note the move\ny\n/quit\n", *argv)
    captured = capsys.readouterr()
    assert code == 0
    events = [json.loads(line) for line in captured.out.splitlines()]  # nothing but JSON lines
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "step" and "tool_call_finished" in kinds
    assert kinds.count("run_finished") == 2  # paused, then completed after the decision
    decided = next(e for e in events if e["kind"] == "approval_decided")
    assert decided["decided_by"] == "boss" and decided["decision"] == "approve"
    assert events[-1]["result"]["status"] == "completed"
    assert "decide as" not in captured.out + captured.err
    assert "approve? [y]es" in captured.err, "prompts go to stderr with --json"
