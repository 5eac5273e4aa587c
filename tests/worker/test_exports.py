"""The worker package's public surface: every name in __all__ exists, and nothing public is missing."""

from __future__ import annotations

import penguiflow_agents.worker as worker


def test_every_exported_name_exists() -> None:
    for name in worker.__all__:
        assert getattr(worker, name) is not None, name


def test_every_public_name_is_exported() -> None:
    public = {n for n in vars(worker) if not n.startswith("_") and n != "annotations"}
    assert public == set(worker.__all__)
