"""The packaged replay scripts are valid, and penguiflow_agents.llm exports exactly its public names."""

from __future__ import annotations

from pathlib import Path

import pytest

import penguiflow_agents.llm as llm_package
from penguiflow_agents.llm import load_replay_script

SCRIPTS = sorted((Path(llm_package.__file__).parent.parent / "demo_scripts").glob("*.yaml"))


def test_there_are_packaged_scripts() -> None:
    assert any(path.name == "example.yaml" for path in SCRIPTS)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_packaged_replay_script_validates(path: Path) -> None:
    assert load_replay_script(path).turns


def test_the_example_script_uses_every_turn_key() -> None:
    script = load_replay_script(next(p for p in SCRIPTS if p.name == "example.yaml"))
    turns = [*script.turns, *(b for t in script.turns for b in t.branches or [])]
    keys = set().union(*(turn.model_dump(exclude_defaults=True) for turn in turns))
    assert keys == {"tool_calls", "delay_s", "usage", "match", "content", "branches"}


def test_all_lists_every_public_name_and_each_one_exists() -> None:
    public = {name for name in vars(llm_package) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(llm_package, name)).__name__ == "module"}
    assert set(llm_package.__all__) == public - modules - {"annotations"}
    assert all(hasattr(llm_package, name) for name in llm_package.__all__)
