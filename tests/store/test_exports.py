"""The public surface of penguiflow_agents.store."""

from __future__ import annotations

import penguiflow_agents.store as store
from penguiflow_agents.store import _base


def test_every_name_in_all_is_importable() -> None:
    for name in store.__all__:
        assert getattr(store, name) is not None, name


def test_everything_public_in_the_seam_module_is_exported() -> None:
    assert set(_base.__all__) <= set(store.__all__)


def test_the_three_implementations_and_open_store_are_exported() -> None:
    assert {"MemoryStore", "SQLiteStore", "PostgresStore", "open_store"} <= set(store.__all__)
    assert sorted(store.__all__) == sorted(set(store.__all__))
