"""Demo tools: deterministic clock tools; file tools confined to the sandbox."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from penguiflow_agents.tools import ToolErrorKind, ToolRegistry

REPO_TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture
async def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ToolRegistry]:
    monkeypatch.setenv("PENGUIFLOW_SANDBOX", str(tmp_path / "sandbox"))
    manifests = tmp_path / "tools"
    manifests.mkdir()
    for name in ("clock.yaml", "files.yaml"):  # the repo's demo manifests, without MCP ones
        shutil.copy(REPO_TOOLS / name, manifests / name)
    registry = ToolRegistry.from_dir(manifests)
    assert registry.load_errors == []
    async with registry:
        yield registry


async def test_repo_manifests_expose_clock_and_files_tools_with_their_risk(
    registry: ToolRegistry,
) -> None:
    specs = {s.name: s for s in await registry.list_tools()}
    assert {"clock.add_minutes", "clock.day_of_week"} <= set(specs)
    assert {"files.list_files", "files.read_file", "files.write_file"} <= set(specs)
    assert specs["files.write_file"].risk == "high"
    assert specs["files.write_file"].idempotent is False
    assert specs["clock.add_minutes"].idempotent is True


@pytest.mark.parametrize(
    ("time", "minutes", "expected"),
    [
        ("09:30", 45, {"time": "10:15", "day_offset": 0}),
        ("23:50", 20, {"time": "00:10", "day_offset": 1}),
        ("00:10", -20, {"time": "23:50", "day_offset": -1}),
        ("2025-03-01T09:30", 90, {"time": "2025-03-01T11:00:00"}),
    ],
)
async def test_add_minutes_is_plain_clock_arithmetic(
    registry: ToolRegistry, time: str, minutes: int, expected: dict[str, object]
) -> None:
    result = await registry.call("clock.add_minutes", {"time": time, "minutes": minutes})
    assert result.output == expected


async def test_add_minutes_refuses_more_than_a_week_by_schema(registry: ToolRegistry) -> None:
    result = await registry.call("clock.add_minutes", {"time": "09:00", "minutes": 20000})
    assert result.error_kind is ToolErrorKind.INVALID_ARGUMENTS
    assert "$.minutes" in (result.error or "")


async def test_day_of_week(registry: ToolRegistry) -> None:
    result = await registry.call("clock.day_of_week", {"date": "2025-03-01"})
    assert result.output == {"date": "2025-03-01", "weekday": "Saturday"}
    bad = await registry.call("clock.day_of_week", {"date": "March 1"})
    assert bad.error_kind is ToolErrorKind.TOOL_ERROR and "YYYY-MM-DD" in (bad.error or "")


async def test_write_then_read_and_list_inside_the_sandbox(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    written = await registry.call(
        "files.write_file", {"path": "/shared/notes.txt", "content": "hi"}
    )
    assert written.output == {"path": "/shared/notes.txt", "bytes": 2}
    assert (tmp_path / "sandbox" / "shared" / "notes.txt").read_text() == "hi"
    read = await registry.call("files.read_file", {"path": "/shared/notes.txt"})
    assert read.output == {"path": "/shared/notes.txt", "content": "hi"}
    listed = await registry.call("files.list_files", {"directory": "/"})
    assert listed.output == {"directory": "/", "entries": ["/shared/"]}


@pytest.mark.parametrize("path", ["../escape.txt", "/../../etc/passwd", "shared/../../x"])
async def test_paths_that_leave_the_sandbox_are_refused(
    registry: ToolRegistry, tmp_path: Path, path: str
) -> None:
    result = await registry.call("files.write_file", {"path": path, "content": "x"})
    assert result.error_kind is ToolErrorKind.TOOL_ERROR
    assert "leaves the sandbox" in (result.error or "")
    assert not (tmp_path / "escape.txt").exists()
