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
    # Refused while normalising the arguments, before a policy or the tool sees them.
    assert result.error_kind is ToolErrorKind.INVALID_ARGUMENTS
    assert "goes above the sandbox root" in (result.error or "")
    assert not (tmp_path / "escape.txt").exists()


# -- sandboxed writes (issue #12, class 3) ---------------------------------------------


async def test_a_link_planted_in_the_sandbox_is_never_written_through(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    """Links at the old predictable temp name, at the target and as a folder are refused."""
    sandbox = tmp_path / "sandbox"
    (sandbox / "shared").mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    (sandbox / "shared" / ".notes.txt.tmp").symlink_to(outside)  # the old temp name
    ok = await registry.call("files.write_file", {"path": "/shared/notes.txt", "content": "new"})
    assert ok.ok, ok.error
    assert (sandbox / "shared" / "notes.txt").read_text() == "new"
    (sandbox / "shared" / "target.txt").symlink_to(outside)
    (sandbox / "linked").symlink_to(tmp_path)
    for path in ("/shared/target.txt", "/linked/outside.txt", "/linked/new.txt"):
        result = await registry.call("files.write_file", {"path": path, "content": "pwned"})
        assert result.error_kind is ToolErrorKind.TOOL_ERROR, path
        assert "symbolic link" in (result.error or "")
        read = await registry.call("files.read_file", {"path": path})
        assert not read.ok
    assert outside.read_text() == "untouched"
    assert not (tmp_path / "new.txt").exists()


@pytest.mark.parametrize(
    ("existing", "path"),
    [
        ("shared", "/SHARED/b.txt"),  # a folder in another case
        ("shared", "/Shared/sub/c.txt"),
        ("shared/a.txt", "/shared/A.TXT"),  # a file in another case
        ("caf\u00e9", "/cafe\u0301/d.txt"),  # the same name in another Unicode form (NFD)
    ],
)
async def test_a_name_spelled_differently_only_in_case_or_unicode_form_is_refused(
    registry: ToolRegistry, tmp_path: Path, existing: str, path: str
) -> None:
    """On macOS or Windows, ``/SHARED/b.txt`` is ``/shared/b.txt``: a policy's ``^/shared/``
    rule would not see it. Refused on every filesystem, naming the existing spelling."""
    sandbox = tmp_path / "sandbox"
    target = sandbox / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    if existing.endswith(".txt"):
        target.write_text("kept")
    else:
        target.mkdir()
    before = sorted(str(p.relative_to(sandbox)) for p in sandbox.rglob("*"))
    result = await registry.call("files.write_file", {"path": path, "content": "x"})
    assert result.error_kind is ToolErrorKind.TOOL_ERROR, result
    assert "already has" in (result.error or "") and "use the existing spelling" in (
        result.error or ""
    )
    read = await registry.call("files.read_file", {"path": path})
    assert not read.ok and "already has" in (read.error or ""), read
    folder = path.rsplit("/", 1)[0]
    listed = await registry.call("files.list_files", {"directory": folder})
    misspelled_folder = existing != "shared/a.txt"  # there, only the file's name differs
    assert listed.ok is not misspelled_folder, listed
    assert sorted(str(p.relative_to(sandbox)) for p in sandbox.rglob("*")) == before


async def test_names_that_only_look_alike_to_a_person_are_still_distinct(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    """Only case and Unicode normal form fold: ``shared`` and ``shared2`` stay two names, and
    the first write of a spelling creates it."""
    for path in ("/shared/a.txt", "/shared2/a.txt", "/shared/a.txt.bak", "/Notes/n.txt"):
        result = await registry.call("files.write_file", {"path": path, "content": "x"})
        assert result.ok, (path, result.error)
    again = await registry.call("files.write_file", {"path": "/Notes/n.txt", "content": "y"})
    assert again.ok, again.error


async def test_eight_parallel_writes_to_one_path_all_succeed_and_leave_no_temp_files(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    import asyncio

    contents = [f"writer {i} " * 1000 for i in range(8)]
    results = await asyncio.gather(
        *(
            registry.call("files.write_file", {"path": "/shared/one.txt", "content": c})
            for c in contents
        )
    )
    assert [r.ok for r in results] == [True] * 8, [r.error for r in results]
    folder = tmp_path / "sandbox" / "shared"
    assert folder.joinpath("one.txt").read_text() in contents  # one whole write won
    assert [p.name for p in folder.iterdir()] == ["one.txt"]


async def test_errors_name_sandbox_paths_never_the_host_path(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "afile").write_text("a file, not a folder")
    results = [
        await registry.call("files.write_file", {"path": "/afile/x.txt", "content": "x"}),
        await registry.call("files.read_file", {"path": "/afile/x.txt"}),
        await registry.call("files.read_file", {"path": "/missing.txt"}),
        await registry.call("files.list_files", {"directory": "/nope"}),
        await registry.call("files.write_file", {"path": "/", "content": "x"}),
    ]
    for result in results:
        assert not result.ok
        assert str(tmp_path) not in (result.error or ""), result.error
    assert "'/afile/x.txt'" in (results[0].error or "")
