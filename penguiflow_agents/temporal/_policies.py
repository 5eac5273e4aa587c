"""The policy files of a directory as documents, for workflows to rebuild the same PolicySet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from penguiflow_agents._yaml import read_yaml_file
from penguiflow_agents.exceptions import PolicyError
from penguiflow_agents.policy import PolicySet

__all__ = ["policy_documents"]

_GLOBS = ("*.yaml", "*.yml")


def policy_documents(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every policy file of ``path``, parsed (and checked like ``PolicySet.load_dir``).

    A workflow rebuilds its ``PolicySet`` from these documents (they are
    recorded in its history), so that a replay checks calls against the
    policies the run saw. A missing directory is no policy at all (deny all).
    """
    PolicySet.load_dir(path)  # any invalid file raises PolicyError naming it
    directory = Path(path)
    if not directory.exists():
        return []
    files = sorted({f for pattern in _GLOBS for f in directory.glob(pattern)})
    return [dict(read_yaml_file(f, PolicyError)) for f in files]
