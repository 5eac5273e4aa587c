"""The public surface: complete, lazy, and consistent with the subpackages."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import penguiflow_agents
import penguiflow_agents.testing

SUBPACKAGES = [
    "penguiflow_agents.runtime",
    "penguiflow_agents.tools",
    "penguiflow_agents.llm",
    "penguiflow_agents.store",
    "penguiflow_agents.policy",
    "penguiflow_agents.approvals",
    "penguiflow_agents.planner",
    "penguiflow_agents.testing",
    "penguiflow_agents.webhooks",
    "penguiflow_agents.server",
    "penguiflow_agents.auth",
    "penguiflow_agents.telemetry",
    "penguiflow_agents.history",
]

# Names the issues and DESIGN.md promise at the top level.
PROMISED = {
    "Headers",
    "Message",
    "StreamChunk",
    "FinalAnswer",
    "FlowError",
    "Node",
    "NodePolicy",
    "create",
    "FlowEvent",
    "configure_logging",
    "log_flow_events",
    "map_concurrent",
    "join_k",
    "subflow",
    "predicate_router",
    "union_router",
    "table_router",
    "Flow",
    "Context",
    "FlowErrorCode",
    "FlowEventKind",
    "MapItemError",
    "tool",
    "ToolRegistry",
    "ToolResult",
    "ToolSpec",
    "LLMClient",
    "StateStore",
    "MemoryStore",
    "SQLiteStore",
    "PostgresStore",
    "open_store",
    "PolicySet",
    "ApprovalService",
    "ReactPlanner",
    "RunResult",
    "planner_node",
    "UserError",
    "create_app",  # the HTTP service (issue 9)
}


def test_every_top_level_name_resolves_to_the_object_of_its_subpackage() -> None:
    """Each name in __all__ imports, and is the very object its home module defines."""
    for name in penguiflow_agents.__all__:
        value = getattr(penguiflow_agents, name)
        home = importlib.import_module(penguiflow_agents._EXPORTS[name])
        assert getattr(home, name) is value, name


def test_all_and_the_lazy_export_table_list_the_same_names_once_sorted() -> None:
    """__all__ is sorted, has no duplicates and names exactly what the lazy table can import."""
    names = penguiflow_agents.__all__
    assert names == sorted(set(names))
    assert set(penguiflow_agents._EXPORTS) == set(names)


def test_the_type_checking_imports_mirror_the_export_table() -> None:
    """What type checkers and IDEs see (the TYPE_CHECKING block) is what runs (the lazy table)."""
    tree = ast.parse(Path(penguiflow_agents.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    seen = {
        alias.asname or alias.name: stmt.module
        for stmt in block.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    assert seen == penguiflow_agents._EXPORTS


def test_the_promised_names_are_exported() -> None:
    """The names the design promises are in __all__."""
    assert PROMISED <= set(penguiflow_agents.__all__)


def test_every_subpackage_all_resolves() -> None:
    """Each subpackage's __all__ lists only names that exist."""
    for pkg in SUBPACKAGES:
        module = importlib.import_module(pkg)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{pkg}.{name}"


def test_exceptions_module_is_fully_exported() -> None:
    """Every exception class is reachable from the top level."""
    from penguiflow_agents import exceptions

    assert set(exceptions.__all__) <= set(penguiflow_agents.__all__)


def test_importing_the_package_and_its_api_stays_light() -> None:
    """`import penguiflow_agents` and touching every name never imports litellm or the mcp SDK."""
    code = (
        "import sys, penguiflow_agents as p\n"
        "[getattr(p, n) for n in p.__all__]\n"
        "bad = [m for m in ('litellm', 'mcp') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_importing_the_package_and_telemetry_loads_neither_tracing_nor_prometheus() -> None:
    """Telemetry is an optional consumer: our OpenTelemetry module and prometheus_client are
    imported only when traces or metrics are asked for (redis may import OpenTelemetry's API
    on its own)."""
    code = (
        "import sys, penguiflow_agents as p, penguiflow_agents.telemetry, penguiflow_agents.history\n"
        "p.ReactPlanner, p.ToolRegistry, p.open_store, p.configure_logging\n"
        "bad = [m for m in ('penguiflow_agents.telemetry._otel', 'prometheus_client')\n"
        "       if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_unknown_attribute_is_an_attribute_error() -> None:
    """A typo gives AttributeError naming the attribute."""
    try:
        penguiflow_agents.ReactPlaner  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "ReactPlaner" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
