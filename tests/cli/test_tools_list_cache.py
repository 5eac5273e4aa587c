"""`tools list` starts from each source's listing cached in the store (issue #14, cold starts).

The stdio MCP server here runs behind a gate script: once the gate file exists the
server cannot start (or hangs), so a listing that still shows its tools came from
the cache, and one that shows it DOWN was listed live.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from penguiflow_agents.cli import _tools, main
from penguiflow_agents.store import open_store

REPO = Path(__file__).resolve().parents[2]
GATE = """\
import pathlib, runpy, sys, time
closed = pathlib.Path(sys.argv[1])
if closed.exists():
    if closed.read_text() == "hang":
        time.sleep(60)
    sys.exit("gate closed: the server is not available")
sys.argv = sys.argv[:1]
runpy.run_module("penguiflow_agents.testing.mcp_server", run_name="__main__")
"""
# Prints whether the MCP SDK was imported by a `tools list` run in this process.
MCP_IMPORTED = textwrap.dedent(
    """\
    import sys
    from penguiflow_agents.cli import main
    code = main(sys.argv[1:])
    print("MCP_IMPORTED" if "mcp" in sys.modules else "MCP_NOT_IMPORTED")
    sys.exit(code)
    """
)


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tmp_path / "gate.py").write_text(GATE)
    (tools / "fx.yaml").write_text(
        f"name: fx\ntransport: mcp_stdio\n"
        f"command: [{sys.executable}, {tmp_path / 'gate.py'}, {tmp_path / 'closed'}]\n"
    )
    return tmp_path


def argv(project: Path, *extra: str) -> list[str]:
    return [
        "tools",
        "list",
        "--tools",
        str(project / "tools"),
        "--store",
        f"sqlite:///{project / 'state.db'}",
        *extra,
    ]


def close_gate(project: Path, how: str = "exit") -> None:
    (project / "closed").write_text(how)


def fx_line(out: str) -> str:
    [line] = [line for line in out.splitlines() if line.startswith("source fx")]
    return line


def test_a_live_listing_is_kept_and_shown_from_the_cache_next_time(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv(project)) == 0
    first = capsys.readouterr().out
    assert ": up" in fx_line(first) and "fx.echo" in first
    close_gate(project)
    # The server cannot start any more: its tools still show, marked as cached.
    assert main(argv(project)) == 0
    second = capsys.readouterr().out
    assert "cached" in fx_line(second) and "as listed" in fx_line(second)
    assert "fx.echo" in second
    # --refresh lists it live: down.
    assert main(argv(project, "--refresh")) == 0
    refreshed = capsys.readouterr().out
    assert "DOWN" in fx_line(refreshed) and "fx.echo" not in refreshed


def test_a_cached_listing_neither_starts_the_server_nor_imports_the_mcp_sdk(
    project: Path,
) -> None:
    def listing() -> str:
        done = subprocess.run(
            [sys.executable, "-c", MCP_IMPORTED, *argv(project)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=project,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "MCP_IMPORTED" in listing()  # the first listing is live
    close_gate(project)
    out = listing()
    assert "MCP_NOT_IMPORTED" in out and "fx.echo" in out


@pytest.mark.parametrize("flag", ["--check", "--sources"])
def test_health_checks_always_list_live(
    flag: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv(project)) == 0
    close_gate(project)
    capsys.readouterr()
    expected = 1 if flag == "--check" else 0
    assert main(argv(project, flag)) == expected
    assert "DOWN" in capsys.readouterr().out


def test_a_changed_manifest_is_listed_again(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv(project)) == 0
    close_gate(project)
    manifest = project / "tools" / "fx.yaml"
    manifest.write_text(manifest.read_text() + "timeout_s: 5\n")
    capsys.readouterr()
    assert main(argv(project)) == 0
    assert "DOWN" in fx_line(capsys.readouterr().out)


def test_a_stale_listing_is_probed_and_shown_cached_when_the_source_is_slow(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(argv(project)) == 0
    monkeypatch.setattr(_tools, "LISTING_FRESH_S", 0.0)  # every cached listing is stale
    monkeypatch.setattr(_tools, "LISTING_PROBE_S", 0.3)
    close_gate(project, "hang")  # the probe does not answer in time
    capsys.readouterr()
    assert main(argv(project)) == 0
    out = capsys.readouterr().out
    assert "cached" in fx_line(out) and "fx.echo" in out
    # A stale source that answers in time is shown live.
    (project / "closed").unlink()
    monkeypatch.setattr(_tools, "LISTING_PROBE_S", 60.0)
    assert main(argv(project)) == 0
    assert ": up" in fx_line(capsys.readouterr().out)


def test_no_cache_neither_reads_nor_writes_the_store(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv(project, "--no-cache")) == 0

    async def cached() -> object:
        store = await open_store(f"sqlite:///{project / 'state.db'}")
        try:
            return await store.get_listing("fx")
        finally:
            await store.aclose()

    assert asyncio.run(cached()) is None
    assert main(argv(project)) == 0
    assert asyncio.run(cached()) is not None
    close_gate(project)
    capsys.readouterr()
    assert main(argv(project, "--no-cache")) == 0
    assert "DOWN" in fx_line(capsys.readouterr().out)


def test_the_cached_listing_gives_the_same_caller_view(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = project / "policies"
    policies.mkdir()
    (policies / "acme.yaml").write_text("tenant: acme\nallow: ['fx.echo']\n")
    view = [*argv(project, "--json"), "--policies", str(policies), "--tenant", "acme"]
    assert main(view) == 0
    live = capsys.readouterr().out
    close_gate(project)
    assert main(view) == 0
    assert capsys.readouterr().out == live
    assert '"fx.echo"' in live
