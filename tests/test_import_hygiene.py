"""Core modules load no adapter library (issue #12 §9): importing ``policy``, ``approvals``,
``planner``, ``tools``, ``store`` or ``webhooks`` pulls in none of httpx, the mcp SDK, sqlite3,
asyncpg, redis or litellm; those load when a source, store, bus or model that needs them is
used. Each import runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ADAPTER_LIBRARIES = (
    "httpx",
    "httpx2",
    "mcp",
    "sqlite3",
    "aiosqlite",
    "asyncpg",
    "redis",
    "litellm",
)
CORE = ("policy", "approvals", "planner", "tools", "store", "webhooks", "bus", "worker")

CODE = """
import json, sys
import penguiflow_agents.{module}
print(json.dumps(sorted(n for n in {libraries!r} if n in sys.modules)))
"""


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_loads_no_adapter_library(module: str) -> None:
    code = CODE.format(module=module, libraries=ADAPTER_LIBRARIES)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_lazy_names_still_resolve() -> None:
    code = (
        "import sys\n"
        "from penguiflow_agents.tools import HttpToolSource, MCPToolSource\n"
        "from penguiflow_agents.webhooks import WebhookDeliverer, delivering\n"
        "print('httpx' in sys.modules, 'mcp' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
