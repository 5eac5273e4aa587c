"""The approvals package re-exports every public name of its private modules."""

from __future__ import annotations

import penguiflow_agents.approvals as pkg
from penguiflow_agents.approvals import _json, _service


def test_every_public_name_is_exported_and_exists() -> None:
    private_public = set(_json.__all__) | set(_service.__all__)
    assert set(pkg.__all__) == private_public
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
