"""The policy package re-exports every public name of its private modules, and nothing else."""

from __future__ import annotations

import penguiflow_agents.policy as pkg
from penguiflow_agents.policy import _check, _document, _quotas, _quotas_redis, _set


def test_every_public_name_is_exported_and_exists() -> None:
    modules = (_document, _set, _check, _quotas, _quotas_redis)
    assert set(pkg.__all__) == set().union(*(m.__all__ for m in modules))
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
