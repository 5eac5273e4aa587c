"""Tools and helpers the planner tests share: a real ToolRegistry of small Python tools."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pydantic_core
import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner._state import RunState
from penguiflow_agents.tools import ToolRegistry, tool


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@tool
async def big(size: int) -> str:
    """Return a string of `size` x characters."""
    return "x" * size


FILES_MANIFEST = Path(__file__).resolve().parents[2] / "tools" / "files.yaml"


@pytest.fixture
async def files_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ToolRegistry]:
    """The repo's ``tools/files.yaml`` (the demo file tools), sandboxed in ``tmp_path/sandbox``."""
    monkeypatch.setenv("PENGUIFLOW_SANDBOX", str(tmp_path / "sandbox"))
    manifests = tmp_path / "tools"
    manifests.mkdir()
    shutil.copy(FILES_MANIFEST, manifests)
    async with ToolRegistry.from_dir(manifests) as reg:
        yield reg


@pytest.fixture
def headers() -> Headers:
    return Headers(tenant="acme", principal="alice", roles=["staff"])


@pytest.fixture
def registry() -> ToolRegistry:
    """Source "math" (add) and "text" (echo, big)."""
    reg = ToolRegistry()
    reg.add_functions(add, source="math")
    reg.add_functions(echo, big, source="text")
    return reg


def tool_messages(request: Any) -> dict[str, str]:
    """call id -> content of the tool messages of an LLMRequest."""
    return {m["tool_call_id"]: m["content"] for m in request.messages if m.get("role") == "tool"}


@pytest.fixture
def gate() -> Callable[[int], tuple[Any, Callable[[], Any]]]:
    """A rendezvous for n concurrent tool calls: each waits until all n have started."""

    def make(n: int) -> tuple[Any, Callable[[], Any]]:
        state = {"in_flight": 0, "max": 0, "arrived": 0}
        all_in = asyncio.Event()

        async def enter() -> None:
            state["in_flight"] += 1
            state["arrived"] += 1
            state["max"] = max(state["max"], state["in_flight"])
            if state["arrived"] >= n:
                all_in.set()
            try:
                await asyncio.wait_for(all_in.wait(), timeout=5)
            finally:
                state["in_flight"] -= 1

        return state, enter

    return make


@pytest.fixture(autouse=True)
def every_incremental_state_encoding_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """``RunState.json_text`` encodes only the messages and steps appended since its last call:
    in every planner test, each text it gives is compared with a full encoding of ``to_dict()``
    (a message or a step changed in place after a checkpoint would make a stale checkpoint:
    this fails)."""
    incremental = RunState.json_text

    def checked(self: RunState) -> str:
        text = incremental(self)
        full = pydantic_core.to_json(self.to_dict())
        assert json.loads(text) == json.loads(full), "an incremental state encoding is stale"
        return text

    monkeypatch.setattr(RunState, "json_text", checked)
