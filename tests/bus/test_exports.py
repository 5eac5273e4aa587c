"""The bus package's public surface: every name in __all__ exists, and nothing public is missing."""

from __future__ import annotations

import subprocess
import sys

import penguiflow_agents.bus as bus


def test_every_exported_name_exists() -> None:
    for name in bus.__all__:
        assert getattr(bus, name) is not None, name


def test_every_public_name_is_exported() -> None:
    public = {n for n in vars(bus) if not n.startswith("_") and n != "annotations"}
    assert public - {"TYPE_CHECKING", "Any"} <= set(bus.__all__)


def test_importing_the_bus_does_not_import_redis() -> None:
    """redis is an optional extra: only RedisBus needs it, on first use."""
    code = "import sys, penguiflow_agents.bus\nprint('redis' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
