"""The policy package re-exports every public name of its private modules, and nothing else."""

from __future__ import annotations

import penguiflow_agents.policy as pkg
from penguiflow_agents.policy import _check, _document, _set


def test_every_public_name_is_exported_and_exists() -> None:
    assert set(pkg.__all__) == set(_document.__all__) | set(_set.__all__) | set(_check.__all__)
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
