"""A small lab for the worker tests: a store, a bus, counting tools, planners and workers.

The model is a ``ScriptedLLM`` whose first turn calls ``count.bump`` with the
run's own id (from the request metadata), so ``lab.counts[run_id]`` is how
many times a run's tool really executed. The second turn answers, or waits
on ``lab.hang`` first (a stalled worker). ``count.gated`` needs an approval
(role admin) under ``lab.policies``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from penguiflow_agents._identity import Headers
from penguiflow_agents.bus import MemoryBus, RedisBus
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore, StateStore, open_store
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool
from penguiflow_agents.worker import Worker

# Longest any wait of these tests may take (generous: a 2-core machine shared with others).
WAIT_S = 20.0

PG_SCHEMA = f"pf_worker_test_{uuid.uuid4().hex[:10]}"
_PG_USED: set[str] = set()

ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])
ADMIN = Headers(tenant="acme", principal="root", roles=["admin"])
POLICIES = [
    {
        "tenant": "*",
        "allow": ["count.*"],
        "approvals": [{"match": "count.gated", "approvers": ["role:admin"], "reason": "Gated"}],
    }
]


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_schema() -> Iterator[None]:
    yield
    for dsn in _PG_USED:
        asyncio.run(_drop(dsn))


async def _drop(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    finally:
        await conn.close()


def pg_url(dsn: str) -> str:
    """A PostgreSQL store URL in this session's schema (dropped at the end)."""
    _PG_USED.add(dsn)
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={PG_SCHEMA}"


@dataclass
class Lab:
    store: StateStore
    bus: Any  # MemoryBus or RedisBus (the tests also use their backlog())
    counts: Counter[str] = field(default_factory=Counter)
    hang: asyncio.Event = field(default_factory=asyncio.Event)  # a hanging turn waits on it
    hanging: asyncio.Event = field(default_factory=asyncio.Event)  # set when a turn hangs
    active: int = 0
    max_active: int = 0
    gate: asyncio.Event | None = None  # when set up, count.bump waits on it
    policies: PolicySet = field(default_factory=lambda: PolicySet.from_documents(POLICIES))

    def registry(self) -> ToolRegistry:
        lab = self

        @tool
        async def bump(run_id: str) -> str:
            """Count one execution for the run."""
            lab.counts[run_id] += 1
            lab.active += 1
            lab.max_active = max(lab.max_active, lab.active)
            try:
                if lab.gate is not None:
                    await lab.gate.wait()
            finally:
                lab.active -= 1
            return "bumped"

        @tool
        async def gated(run_id: str) -> str:
            """Count one execution; needs an approval."""
            lab.counts[run_id] += 1
            return "gated done"

        registry = ToolRegistry()
        registry.add_functions(bump, gated, source="count", timeout_s=WAIT_S * 3)
        return registry

    def call_tool_turn(self, tool_name: str = "count.bump") -> Callable[[LLMRequest], LLMResponse]:
        """A first model turn: call ``tool_name`` with the run's own id."""

        def call_tool(request: LLMRequest) -> LLMResponse:
            run_id = str(request.metadata["run_id"])
            return LLMResponse(
                content=None,
                tool_calls=[LLMToolCall(id="t1", name=tool_name, arguments={"run_id": run_id})],
            )

        return call_tool

    def llm(self, *, hang: bool = False, tool_name: str = "count.bump") -> ScriptedLLM:
        lab = self

        async def answer(request: LLMRequest) -> LLMResponse:
            if hang:
                lab.hanging.set()
                await lab.hang.wait()
            return LLMResponse(content=f"done {request.metadata['run_id']}")

        return ScriptedLLM([self.call_tool_turn(tool_name), answer])

    def planner(
        self,
        *,
        hang: bool = False,
        lease_s: float = 600.0,
        policies: bool = False,
        tool_name: str = "count.bump",
    ) -> ReactPlanner:
        return ReactPlanner(
            llm=self.llm(hang=hang, tool_name=tool_name),
            registry=self.registry(),
            store=self.store,
            policies=self.policies if policies else None,
            claim_lease_s=lease_s,
        )

    def worker(self, planner: ReactPlanner | None = None, **options: Any) -> Worker:
        chosen = planner or self.planner()
        options.setdefault("block_s", 0.05)  # a stop is noticed quickly
        return Worker(
            self.bus, lambda _model: contextlib.nullcontext(chosen), self.store, **options
        )

    @contextlib.asynccontextmanager
    async def running(self, *workers: Worker) -> AsyncIterator[list[asyncio.Task[None]]]:
        """Run the workers in the background; stop them (drained) on exit."""
        tasks = [asyncio.create_task(w.run()) for w in workers]
        try:
            yield tasks
        finally:
            for w in workers:
                w.stop()
            self.hang.set()
            if self.gate is not None:
                self.gate.set()
            done, _ = await asyncio.wait(tasks, timeout=WAIT_S)
            for task in tasks:
                if task not in done:
                    task.cancel()
            for task in done:
                task.result()  # a worker that crashed fails the test

    async def acked(self) -> None:
        """Wait until every job on the bus was acknowledged."""

        async def empty() -> bool:
            return bool(await self.bus.backlog() == 0)

        await self.until(empty, "every job to be acknowledged")

    async def until(self, predicate: Callable[[], Any], what: str) -> None:
        """Wait (bounded) until ``predicate()`` (sync or async) is true."""
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)  # polling a condition other tasks change


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    """In memory: a MemoryStore and a MemoryBus with a short visibility timeout."""
    lab = Lab(store=MemoryStore(), bus=MemoryBus(visibility_timeout_s=0.3))
    yield lab
    await lab.bus.aclose()
    await lab.store.aclose()


@pytest.fixture(params=["memory", "redis+postgres"])
async def shared_lab(request: pytest.FixtureRequest) -> AsyncIterator[Lab]:
    """The same lab in memory, and on a real Redis stream and PostgreSQL schema."""
    if request.param == "memory":
        lab = Lab(store=MemoryStore(), bus=MemoryBus(visibility_timeout_s=0.3))
        yield lab
        await lab.bus.aclose()
        await lab.store.aclose()
        return
    store = await open_store(pg_url(request.getfixturevalue("postgres_dsn")))
    redis_url = request.getfixturevalue("redis_url")
    stream = f"pf-worker-test:{uuid.uuid4().hex[:12]}"
    bus = await RedisBus.open(redis_url, stream=stream, visibility_timeout_s=0.3)
    lab = Lab(store=store, bus=bus)
    yield lab
    await bus.aclose()
    await store.aclose()
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(stream, f"{stream}:dead")
    await client.aclose()


def tenant_headers(tenant: str | None = None) -> Headers:
    return Headers(tenant=tenant or f"t-{uuid.uuid4().hex[:8]}", principal="alice", roles=["staff"])
