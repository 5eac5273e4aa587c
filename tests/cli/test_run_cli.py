"""`penguiflow-agents run / resume / chat` end to end, in subprocesses, with the replay model."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import penguiflow_agents

PACKAGE_DEMO = Path(penguiflow_agents.__file__).parent / "demo_scripts"
# Longest one CLI process may take (litellm's import alone takes seconds on a busy machine).
CLI_TIMEOUT_S = 90

PAUSING_SCRIPT = """
turns:
  - tool_calls:
      - {name: clock.add_minutes, arguments: {time: "09:30", minutes: 90}, id: add}
      - {name: files.write_file, arguments: {path: /notes/a.txt, content: "at 11:00"}, id: write}
  - content: "Saved: the meeting is at 11:00."
"""
ANSWER_SCRIPT = """
turns:
  - tool_calls:
      - {name: clock.day_of_week, arguments: {date: "2025-03-01"}}
  - content: "It is a Saturday."
"""


# Bytecode caches for the subprocesses (litellm compiles for seconds without them), kept
# outside the tree; Python validates them against the sources.
PYCACHE = Path(tempfile.gettempdir()) / "penguiflow-test-pycache"


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PENGUIFLOW_SANDBOX"] = str(tmp / "sandbox")
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A project directory: the demo's Python tools (no MCP server) and its policy."""
    (tmp_path / "tools").mkdir()
    for name in ("clock.yaml", "files.yaml"):
        shutil.copy(PACKAGE_DEMO / "tools" / name, tmp_path / "tools" / name)
    shutil.copytree(PACKAGE_DEMO / "policies", tmp_path / "policies")
    (tmp_path / "pause.yaml").write_text(PAUSING_SCRIPT)
    (tmp_path / "answer.yaml").write_text(ANSWER_SCRIPT)
    return tmp_path


def cli(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", *args],
        cwd=cwd,
        env=env_for(cwd),
        capture_output=True,
        text=True,
        input=stdin,
        timeout=CLI_TIMEOUT_S,
    )


def one_json(out: str) -> dict[str, Any]:
    doc = json.loads(out)  # exactly one document: json.loads refuses trailing text
    assert isinstance(doc, dict)
    return doc


def test_paused_run_exits_3_and_its_printed_commands_approve_and_resume_it(workdir: Path) -> None:
    paused = cli(workdir, "run", "Move the meeting and note it", "--model", "replay:pause.yaml")
    assert paused.returncode == 3, paused.stderr
    out = paused.stdout
    assert "replay model (test double)" in out
    assert "clock.add_minutes" in out and "ok" in out
    assert "needs approval" in out
    approve = next(
        line.split("approve: ", 1)[1] for line in out.splitlines() if "approve: " in line
    )
    resume = next(
        line.split("then: ", 1)[1].strip() for line in out.splitlines() if "then: " in line
    )
    assert not (workdir / "sandbox" / "notes" / "a.txt").exists()

    argv = shlex.split(approve)
    assert argv[:3] == ["penguiflow-agents", "approvals", "approve"]
    decided = cli(workdir, *argv[1:])
    assert decided.returncode == 0, decided.stderr

    done = cli(workdir, *shlex.split(resume)[1:], "--json")
    assert done.returncode == 0, done.stderr
    doc = one_json(done.stdout)
    assert doc["status"] == "completed" and doc["answer"] == "Saved: the meeting is at 11:00."
    assert [(s["tool"], s["outcome"]) for s in doc["steps"]] == [
        ("clock.add_minutes", "ok"),
        ("files.write_file", "ok"),
    ]
    assert (workdir / "sandbox" / "notes" / "a.txt").read_text() == "at 11:00"


def test_run_json_is_one_document_with_the_design_keys_and_exit_0(workdir: Path) -> None:
    done = cli(workdir, "run", "What day is 2025-03-01?", "--model", "replay:answer.yaml", "--json")
    assert done.returncode == 0, done.stderr
    doc = one_json(done.stdout)
    assert {"status", "run_id", "answer", "error", "pending_approvals", "steps"} <= set(doc)
    assert doc["status"] == "completed" and doc["answer"] == "It is a Saturday."
    assert doc["error"] is None and doc["pending_approvals"] == []
    assert doc["steps"][0]["tool"] == "clock.day_of_week"
    assert doc["steps"][0]["arguments"] == {"date": "2025-03-01"}
    assert doc["steps"][0]["outcome"] == "ok"
    assert doc["model_is_replay"] is True


def test_a_failed_run_exits_1_with_the_reason(workdir: Path) -> None:
    done = cli(workdir, "run", "q", "--model", "replay:answer.yaml", "--max-steps", "1", "--json")
    assert done.returncode == 1
    doc = one_json(done.stdout)
    assert doc["status"] == "failed" and "max_steps=1" in doc["error"]


def test_configuration_errors_exit_2(workdir: Path) -> None:
    (workdir / "policies" / "broken.yaml").write_text("tenant: x\nallow: 5\n")
    bad_policy = cli(workdir, "run", "q", "--model", "replay:answer.yaml", "--json")
    assert bad_policy.returncode == 2
    assert "broken.yaml" in bad_policy.stderr
    assert one_json(bad_policy.stdout)["status"] == "failed"
    missing = cli(workdir, "run", "q", "--model", "replay:nope.yaml", "--policies", "absent")
    assert missing.returncode == 2
    assert "nope.yaml" in missing.stderr


def test_paused_run_json_has_the_approval_and_commands_and_foreign_resume_fails_like_unknown(
    workdir: Path,
) -> None:
    paused = cli(
        workdir,
        *("run", "q", "--model", "replay:pause.yaml", "--json"),
        *("--tenant", "acme", "--store", "sqlite:///other.db"),
    )
    assert paused.returncode == 3, paused.stderr
    doc = one_json(paused.stdout)
    assert doc["status"] == "paused"
    [pending] = doc["pending_approvals"]
    assert pending["tool"] == "files.write_file"
    assert pending["arguments"] == {"path": "/notes/a.txt", "content": "at 11:00"}
    assert datetime.fromisoformat(pending["expires_at"]).tzinfo is not None  # ISO-8601, as listed
    assert pending["approve_command"].startswith(
        f"penguiflow-agents approvals approve {pending['id']} --tenant acme --as approver --role admin"
    )
    assert "--store sqlite:///other.db" in pending["approve_command"]
    assert doc["resume_command"] == (
        f"penguiflow-agents resume {doc['run_id']} --tenant acme --store sqlite:///other.db"
    )
    run_id = doc["run_id"]
    store = ("--store", "sqlite:///other.db")
    foreign = cli(workdir, "resume", run_id, "--tenant", "globex", *store)
    unknown = cli(workdir, "resume", "run_missing", "--tenant", "globex", *store)
    assert foreign.returncode == unknown.returncode == 1
    assert foreign.stderr.replace(run_id, "ID") == unknown.stderr.replace("run_missing", "ID")
    assert "no run with id" in foreign.stderr


def test_chat_keeps_history_and_decides_approvals_inline_as_another_principal(
    workdir: Path,
) -> None:
    done = cli(
        workdir,
        "chat",
        "--model",
        "replay:pause.yaml",
        "--approver",
        "boss",
        "--approver-role",
        "admin",
        "--session",
        "s1",
        stdin="Move the meeting and note it\ny\n/quit\n",
    )
    assert done.returncode == 0, done.stderr
    assert "approve" in done.stdout and "as 'boss'" in done.stdout
    assert "Saved: the meeting is at 11:00." in done.stdout
    assert (workdir / "sandbox" / "notes" / "a.txt").read_text() == "at 11:00"


HANGING_TOOLS = '''
import os, sys, time
from penguiflow_agents.tools import tool

@tool
def append(text: str) -> str:
    """Append a line to count.txt (an effect that must not happen twice)."""
    with open("count.txt", "a", encoding="utf-8") as f:
        f.write(text + "\\n")
    if os.environ.get("HANG_TOOL") == "1":
        print("TOOL_STARTED", flush=True)
        time.sleep(3600)  # the test SIGKILLs the CLI here
    return "appended"
'''
SIDE_SCRIPT = """
turns:
  - tool_calls: [{name: side.append, arguments: {text: hello}, id: a1}]
  - match: unknown_outcome
    content: "The append may or may not have happened; please check count.txt."
"""


def test_a_run_whose_process_was_killed_mid_call_is_taken_over_by_resume(workdir: Path) -> None:
    """`run` SIGKILLed inside a non-idempotent tool: `resume RUN_ID` finishes it, tool ran once."""
    (workdir / "hangtools.py").write_text(HANGING_TOOLS)  # importable: `python -m` runs in cwd
    side = workdir / "side_tools"
    side.mkdir()
    (side / "side.yaml").write_text("name: side\ntransport: python\nmodule: hangtools\n")
    (workdir / "side_policies").mkdir()
    (workdir / "side_policies" / "all.yaml").write_text('tenant: "*"\nallow: ["side.*"]\n')
    (workdir / "side.yaml").write_text(SIDE_SCRIPT)
    where = ("--tools", "side_tools", "--policies", "side_policies")
    model = ("--model", "replay:side.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "penguiflow_agents", *("run", "Append hello"), *model, *where],
        cwd=workdir,
        env={**env_for(workdir), "HANG_TOOL": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    run_id = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends at the kill point, or when the process ends (a failure)
            if line.startswith("run run_"):
                run_id = line.split()[1]
            if line.strip() == "TOOL_STARTED":
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=CLI_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL and run_id is not None
    assert (workdir / "count.txt").read_text() == "hello\n"

    done = cli(workdir, "resume", run_id, *where, "--json")
    assert done.returncode == 0, done.stderr
    doc = one_json(done.stdout)
    assert doc["status"] == "completed", doc["error"]
    assert doc["answer"].startswith("The append may or may not have happened")
    assert [(s["tool"], s["outcome"]) for s in doc["steps"]] == [("side.append", "unknown")]
    assert (workdir / "count.txt").read_text() == "hello\n"  # not run a second time


def test_help_exits_0_without_importing_litellm(tmp_path: Path) -> None:
    """`--help` (top level and per command) answers at once: litellm is never imported."""
    code = (
        "import sys\n"
        "from penguiflow_agents.cli import main\n"
        "codes = [main([*argv, '--help']) for argv in ([], ['run'], ['demo'], ['resume'])]\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('litellm', 'openai'))\n"
        "print(codes, leaked[:3])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0] []"
    assert "usage: penguiflow-agents run" in done.stdout
