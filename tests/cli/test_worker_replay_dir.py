"""A job from the bus cannot make the worker read a replay script outside its replay directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.cli import build_parser
from penguiflow_agents.cli._worker import _planner_factory
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.tools import ToolRegistry

SCRIPT = "turns:\n  - content: It is a Saturday.\n"


class _NoTelemetry:
    def instrument(self, planner: Any, *, store: Any) -> Any:
        return planner


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "answer.yaml").write_text(SCRIPT, encoding="utf-8")
    outside = tmp_path / "outside.yaml"
    outside.write_text(SCRIPT, encoding="utf-8")
    (scripts / "link.yaml").symlink_to(outside)
    return scripts, outside


@pytest.mark.parametrize("name", ["../outside.yaml", "link.yaml", "{outside}", "/etc/hostname"])
async def test_a_jobs_replay_script_outside_the_replay_dir_is_refused(
    layout: tuple[Path, Path], name: str
) -> None:
    scripts, outside = layout
    args = build_parser().parse_args(["worker", "--replay-dir", str(scripts)])
    factory = _planner_factory(args, MemoryStore(), ToolRegistry(), None, _NoTelemetry())
    with pytest.raises(UserError, match="outside the worker's replay directory"):
        async with factory("replay:" + name.format(outside=outside)):
            pass


async def test_a_jobs_replay_script_inside_the_replay_dir_is_used(
    layout: tuple[Path, Path],
) -> None:
    scripts, _ = layout
    args = build_parser().parse_args(["worker", "--replay-dir", str(scripts)])
    factory = _planner_factory(args, MemoryStore(), ToolRegistry(), None, _NoTelemetry())
    async with factory("replay:answer.yaml") as planner:
        assert planner is not None
