"""The public surface of penguiflow_agents.tools is exactly its __all__."""

from __future__ import annotations

import types

import penguiflow_agents.tools as tools


def test_all_lists_every_public_member_and_only_existing_ones() -> None:
    public = {
        name
        for name, value in vars(tools).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    lazy = set(tools._LAZY)  # imported on first access (MCPToolSource loads the mcp SDK)
    assert set(tools.__all__) == public | lazy
    assert len(set(tools.__all__)) == len(tools.__all__), "no duplicates"


def test_lazy_names_resolve() -> None:
    for name in tools._LAZY:
        assert getattr(tools, name).__name__ == name


def test_public_names_are_defined_in_private_modules() -> None:
    for name in tools.__all__:
        module = getattr(getattr(tools, name), "__module__", "")
        assert module.startswith("penguiflow_agents.tools._"), (name, module)
