"""A dead tool source says why (its last stderr lines) and can fail a health check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from penguiflow_agents.cli import main

REPO = Path(__file__).resolve().parents[2]
BROKEN = """\
name: broken
transport: mcp_stdio
command: [python, -m, penguiflow_no_such_server_module]
"""


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy(REPO / "tools" / "clock.yaml", tools / "clock.yaml")
    (tools / "broken.yaml").write_text(BROKEN)
    return tools


def test_a_crashed_stdio_server_shows_the_end_of_its_stderr(
    tools: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reason used to be only "Connection closed" (the rest in -v logs)."""
    assert main(["tools", "list", "--tools", str(tools)]) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("source broken")]
    assert "DOWN" in line
    assert "No module named penguiflow_no_such_server_module" in line


def test_sources_json_has_up_and_error_per_source(
    tools: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "list", "--tools", str(tools), "--sources", "--json"]) == 0
    sources = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert sources["clock"]["up"] is True and sources["clock"]["error"] is None
    assert sources["broken"]["up"] is False
    assert "No module named" in sources["broken"]["error"]


@pytest.mark.parametrize("extra", [[], ["--json"], ["--sources"]])
def test_check_exits_1_when_a_source_is_down(
    extra: list[str], tools: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "list", "--tools", str(tools), "--check", *extra]) == 1
    capsys.readouterr()
    (tools / "broken.yaml").unlink()
    assert main(["tools", "list", "--tools", str(tools), "--check", *extra]) == 0
