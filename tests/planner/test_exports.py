"""The planner package's public surface: every name in __all__ exists, and nothing public is missing."""

from __future__ import annotations

import penguiflow_agents.planner as planner


def test_every_exported_name_exists() -> None:
    for name in planner.__all__:
        assert hasattr(planner, name), name


def test_every_public_name_is_exported() -> None:
    public = {n for n in vars(planner) if not n.startswith("_") and n != "annotations"}
    assert public == set(planner.__all__)
