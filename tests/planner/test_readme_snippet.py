"""The README's Python snippet runs as written (from a copy of the repository's layout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Longest the snippet may take (litellm's import and the time MCP server, on a busy machine).
SNIPPET_TIMEOUT_S = 120


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("In Python (save as `ask.py`")
    code = text[text.index("```python\n", start) + len("```python\n") :]
    return code[: code.index("```")]


def test_the_readme_python_snippet_runs_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "tools", tmp_path / "tools")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    scripts = tmp_path / "penguiflow_agents" / "demo_scripts"
    shutil.copytree(ROOT / "penguiflow_agents" / "demo_scripts", scripts)
    (tmp_path / "ask.py").write_text(readme_snippet())
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "penguiflow-test-pycache")
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PENGUIFLOW_SANDBOX"] = str(tmp_path / "sandbox")
    done = subprocess.run(
        [sys.executable, "ask.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for tool in ("clock.add_minutes", "time.get_current_time", "files.write_file"):
        assert any(line.startswith(tool) and line.endswith(" ok") for line in out.splitlines())
    assert "completed The meeting now starts at 11:00 London time" in out
    note = tmp_path / "sandbox" / "notes" / "meeting.txt"
    assert note.read_text().startswith("Team meeting moved from 09:30 to 11:00")
