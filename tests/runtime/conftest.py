"""Fixtures for the runtime tests: an event recorder, identities and a fake state store."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from penguiflow_agents.runtime import FlowEvent, Headers


class Recorder:
    """A middleware that keeps every FlowEvent it sees."""

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []

    def __call__(self, event: FlowEvent) -> None:
        self.events.append(event)

    def kinds(self, *, node: str | None = None, trace_id: str | None = None) -> list[str]:
        return [
            e.kind.value
            for e in self.events
            if (node is None or e.node == node) and (trace_id is None or e.trace_id == trace_id)
        ]


class FakeStore:
    """The one StateStore method the runtime uses; ``gate`` can hold every write."""

    def __init__(self, *, blocked: bool = False) -> None:
        self.rows: list[tuple[str, str, str, dict[str, Any]]] = []
        self.gate = asyncio.Event()
        if not blocked:
            self.gate.set()

    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        await self.gate.wait()
        self.rows.append((tenant, run_id, kind, dict(data)))
        return len(self.rows)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def acme() -> Headers:
    return Headers(tenant="acme", principal="alice", roles=["analyst"])


@pytest.fixture
def globex() -> Headers:
    return Headers(tenant="globex", principal="bob")


@pytest.fixture
def make_store() -> type[FakeStore]:
    return FakeStore
