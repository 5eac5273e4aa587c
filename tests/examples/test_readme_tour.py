"""The README's "Five-minute tour" runs as written: every command of its shell block, in order,
in a copy of the project (its tools/, policies/ and the demo script), with the exit statuses
the README states; <ID> and <RUN_ID> are taken from what the paused run printed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT_S = 300.0  # one CLI process (litellm's import, the time MCP server) on a busy machine


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Five-minute tour", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.timeout(1800)
def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "tools", tmp_path / "tools")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    scripts = tmp_path / "penguiflow_agents" / "demo_scripts"
    scripts.mkdir(parents=True)
    shutil.copy(ROOT / "penguiflow_agents" / "demo_scripts" / "demo.yaml", scripts / "demo.yaml")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", PENGUIFLOW_SANDBOX=str(tmp_path / "sandbox"))
    env.pop("PENGUIFLOW_STORE", None)
    pfa = shlex.join([sys.executable, "-m", "penguiflow_agents"])
    found: dict[str, str] = {}
    commands = tour_commands()
    assert commands[0].startswith("alias pfa=")
    variables = ""
    ran = 0
    for line in commands[1:]:
        command, _, comment = line.partition("  #")
        command = command.strip()
        if re.fullmatch(r"[A-Z_]+=.*", command):  # Q="..."
            variables += command + "\n"
            continue
        for placeholder, value in found.items():
            command = command.replace(placeholder, value)
        assert "<" not in command, f"no value for a placeholder in {command!r}"
        script = variables + command.replace("pfa ", pfa + " ", 1)
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
        )
        ran += 1
        expected = 2 if "else exit 2" in comment else (3 if " run " in f" {command} " else 0)
        assert done.returncode == expected, f"{command}\n{done.stdout}\n{done.stderr}"
        if expected == 3:  # the paused run printed the approval id and the run id
            found["<ID>"] = re.search(r"approvals approve (apr_\w+)", done.stdout).group(1)  # type: ignore[union-attr]
            found["<RUN_ID>"] = re.search(r"resume (run_\w+)", done.stdout).group(1)  # type: ignore[union-attr]
        if expected == 2:
            assert done.stderr.strip().count("\n") == 0, "one sentence"
    assert ran >= 8 and "<RUN_ID>" in found
    assert (tmp_path / "sandbox" / "notes" / "meeting.txt").exists(), "the resumed run wrote"
