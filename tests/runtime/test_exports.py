"""The public surface of penguiflow_agents.runtime is exactly its __all__."""

from __future__ import annotations

import types

import penguiflow_agents.runtime as runtime


def test_all_names_exist_and_every_public_name_is_in_all() -> None:
    for name in runtime.__all__:
        assert hasattr(runtime, name), name
    public = {
        name
        for name, value in vars(runtime).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(runtime.__all__)
    assert runtime.__all__ == sorted(runtime.__all__)


def test_headers_is_the_shared_identity_type() -> None:
    from penguiflow_agents._identity import Headers

    assert runtime.Headers is Headers
