"""Whether this process belongs to the command line (a dependency-free flag).

The CLI says so first thing in ``main``; the litellm adapter then may tune
process-wide state (GC, loggers) when it imports litellm. A library user's
process is left alone. Kept outside ``penguiflow_agents.llm`` so that setting
it imports nothing (``--help`` stays fast).
"""

from __future__ import annotations

__all__ = ["is_owned", "own_process"]

_owned = False


def own_process() -> None:
    """Say that this process belongs to the caller (the CLI)."""
    global _owned
    _owned = True


def is_owned() -> bool:
    return _owned
