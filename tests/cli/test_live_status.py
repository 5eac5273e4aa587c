"""Long work shows a sign of life: a status line with the elapsed time for calls in flight
and for waits, in `run` (and everything that prints a run: resume, chat, demo), `tools call`
and `submit --wait`. Off a terminal it is "… still …" lines on stderr."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import pytest
import structlog
from rich.console import Console

from penguiflow_agents.cli import EXIT_FAILURE, EXIT_OK, _status, main
from penguiflow_agents.cli._run_output import RunPrinter
from penguiflow_agents.cli._status import LiveStatus, elapsed
from penguiflow_agents.llm import Usage
from penguiflow_agents.planner import (
    LLMResponded,
    PlannerEvent,
    RunFinished,
    RunResult,
    Step,
    StepStarted,
    ToolActivity,
    ToolCallFinished,
    ToolCallStarted,
)

SLOW_SOURCE = """\
name: lab
transport: mcp_stdio
command: [python, -m, penguiflow_agents.testing.mcp_server, --transport, stdio]
timeout_s: 60
"""
SLOW_SCRIPT = """\
turns:
  - tool_calls:
      - {name: lab.slow, arguments: {seconds: 1.5, steps: 3}}
  - content: "Done after a while."
"""


@pytest.fixture(autouse=True)
def _quick_plain_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The first "still" line after 0.3 s, then every 0.3 s (instead of 2 s and 10 s)."""
    monkeypatch.setattr(_status, "PLAIN_FIRST_S", 0.3)
    monkeypatch.setattr(_status, "PLAIN_EVERY_S", 0.3)
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "lab.yaml").write_text(SLOW_SOURCE)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "all.yaml").write_text('tenant: "*"\nallow: ["lab.*"]\n')
    (tmp_path / "slow.yaml").write_text(SLOW_SCRIPT)
    return tmp_path


def where(lab: Path) -> list[str]:
    return [
        "--tools",
        str(lab / "tools"),
        "--policies",
        str(lab / "policies"),
        "--store",
        f"sqlite:///{lab / 'state.db'}",
    ]


def test_elapsed_reads_naturally() -> None:
    assert [elapsed(s) for s in (0.42, 12.3, 185)] == ["0.4 s", "12 s", "3 min 05 s"]


async def test_plain_status_says_still_waiting_only_while_a_wait_lasts() -> None:
    out = io.StringIO()
    status = LiveStatus(Console(file=io.StringIO()), live=False, plain=out)
    status.waiting("calling quick.tool")
    status.done()  # a quick wait prints nothing
    status.waiting("calling slow.tool")
    await asyncio.sleep(1.0)
    status.done()
    await asyncio.sleep(0.5)  # nothing after the wait ended
    await status.aclose()
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("… still calling slow.tool (") for line in lines)
    assert "quick.tool" not in out.getvalue()
    assert len(lines) <= 4


async def test_on_a_terminal_the_line_is_redrawn_with_the_elapsed_time() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    status = LiveStatus(console)
    assert status.live
    status.waiting("calling lab.slow")
    await asyncio.sleep(0.5)
    status.update("calling lab.slow (2/3)")
    await asyncio.sleep(0.3)
    await status.aclose()
    shown = screen.getvalue()
    assert "calling lab.slow" in shown and "(2/3)" in shown and " s" in shown


@pytest.mark.parametrize("quiet", [False, True], ids=["human", "json"])
async def test_a_run_printer_shows_calls_in_flight_and_their_progress(quiet: bool) -> None:
    """What run, resume, chat and demo share: consume() of a planner event stream
    (with --json too: the status goes to stderr, stdout keeps the one document)."""

    async def events() -> AsyncGenerator[PlannerEvent, None]:
        yield StepStarted(run_id="run_1", step=1)
        yield LLMResponded(
            run_id="run_1",
            step=1,
            content="",
            tool_calls=(("c1", "lab.slow"),),
            usage=Usage(),
            latency_s=0.1,
        )
        yield ToolCallStarted(run_id="run_1", step=1, call_id="c1", tool="lab.slow", arguments={})
        await asyncio.sleep(0.5)
        yield ToolActivity(
            run_id="run_1",
            call_id="c1",
            tool="lab.slow",
            event="tool.progress",
            data={"progress": 2, "total": 3},
        )
        await asyncio.sleep(0.5)
        step = Step(tool="lab.slow", arguments={}, outcome="ok", result="x", call_id="c1")
        yield ToolCallFinished(run_id="run_1", record=step)
        yield RunFinished(result=RunResult(status="completed", run_id="run_1"))

    stdout = io.StringIO()
    printer = RunPrinter(quiet=quiet, console=Console(file=stdout, width=120))
    plain = io.StringIO()
    printer.status._plain = plain
    await printer.consume(events())
    still = plain.getvalue()
    assert "… still calling lab.slow (" in still
    assert "(lab.slow 2/3)" in still, "the progress notification shows in the status"
    assert "… still" not in stdout.getvalue(), "stdout keeps only the transcript"
    if quiet:
        assert stdout.getvalue() == ""


def test_run_shows_the_call_in_flight_with_its_elapsed_time(
    lab: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(lab)
    code = main(["run", "Take your time.", "--model", "replay:slow.yaml", *where(lab)])
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    assert "Done after a while." in out.out
    assert "… still calling lab.slow (" in out.err
    assert "… still" not in out.out


def test_tools_call_shows_the_call_in_flight_with_progress(
    lab: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(lab)
    args = ["tools", "call", "lab.slow", "--args", '{"seconds": 1.5, "steps": 3}', *where(lab)]
    code = main(args)
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    assert "… still calling lab.slow" in out.err
    assert "/3" in out.err, "progress notifications show in the status"
    assert "still" not in out.out


def test_submit_wait_says_it_is_waiting_for_a_worker(
    lab: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No worker is running: the wait is visible, then it times out (exit 1)."""
    monkeypatch.chdir(lab)
    bus = f"{redis_url}?stream=pf-status-test:{uuid.uuid4().hex[:12]}"
    args = ["submit", "Anyone?", "--bus", bus, "--wait", "--wait-timeout", "1.5", *where(lab)]
    code = main(args)
    out = capsys.readouterr()
    assert code == EXIT_FAILURE
    assert "… still waiting for a worker to take run run_" in out.err
    assert "still" not in out.out
