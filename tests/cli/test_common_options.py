"""Options every command shares: ``--log-format``, ``--verbose``, ``PENGUIFLOW_STORE``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import structlog

from penguiflow_agents.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tools_dir(tmp_path: Path) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy(REPO / "tools" / "clock.yaml", tools / "clock.yaml")
    return tools


def test_log_format_json_makes_every_stderr_log_line_one_json_object(
    tools_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tools", "list", "--tools", str(tools_dir), "--json", "-v", "--log-format", "json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout is still the one document
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines, "with -v the source's start is logged"
    events = [json.loads(line) for line in lines]
    assert all({"event", "level", "timestamp"} <= set(e) for e in events)
    assert "tool_source.up" in {e["event"] for e in events}


def test_log_format_text_is_the_default_and_is_not_json(
    tools_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "list", "--tools", str(tools_dir), "-v"]) == 0
    err = capsys.readouterr().err
    assert "tool_source.up" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.splitlines()[0])


def test_an_unknown_log_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "list", "--log-format", "xml"]) == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "deprecated"), [(["--log-format", "json"], False), (["--json"], True)]
)
def test_worker_takes_log_format_json_and_still_accepts_its_old_json_flag(
    flags: list[str],
    deprecated: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The worker's logs become JSON lines; its old ``--json`` still works, with a warning."""
    monkeypatch.chdir(tmp_path)
    # A process-local bus is refused after logging was configured: nothing is started.
    assert main(["worker", "--bus", "memory://", *flags]) == 2
    err = capsys.readouterr().err
    assert ("deprecated: use --log-format json" in err) is deprecated
    structlog.get_logger("t").info("worker.probe", n=1)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line)["event"] == "worker.probe"


def test_penguiflow_store_is_the_default_store_of_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``PENGUIFLOW_STORE`` saves repeating ``--store``; an explicit ``--store`` still wins."""
    monkeypatch.chdir(tmp_path)
    from_env = tmp_path / "from-env.db"
    monkeypatch.setenv("PENGUIFLOW_STORE", f"sqlite:///{from_env}")
    assert main(["approvals", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert from_env.exists()
    assert not (tmp_path / ".penguiflow").exists(), "the built-in default was not used"
    explicit = tmp_path / "explicit.db"
    assert main(["approvals", "list", "--json", "--store", f"sqlite:///{explicit}"]) == 0
    assert explicit.exists()
