"""The approval life cycle on the shared PostgreSQL store, with racing deciders and resumers.

Each racer opens its own ``PostgresStore`` (its own connection pool), so the
races are decided by PostgreSQL transactions, as between worker processes.
The test works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import AlreadyDecidedError, ConflictError, NotFoundError
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import StateStore, open_store
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

POLICY = {
    "tenant": "acme",
    "allow": ["files.*"],
    "approvals": [{"match": "files.write", "approvers": ["role:admin"], "reason": "Writes"}],
}
ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])
SCRIPT: list[Any] = [
    {"tool_calls": [{"name": "files.write", "arguments": {"text": "hi"}, "id": "w1"}]},
    {"content": "Finished."},
]
RACERS = 3


@pytest.fixture
async def pg_url(postgres_dsn: str) -> AsyncIterator[str]:
    schema = f"pf_approvals_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in postgres_dsn else "?"
    yield f"{postgres_dsn}{sep}schema={schema}"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def planner_on(store: StateStore, writes: list[str]) -> ReactPlanner:
    @tool
    async def write(text: str) -> str:
        """Write (counted)."""
        writes.append(text)
        await asyncio.sleep(0.2)  # in flight while the other resumes try
        return "written"

    registry = ToolRegistry()
    registry.add_functions(write, source="files")
    return ReactPlanner(
        llm=ScriptedLLM(SCRIPT),
        registry=registry,
        store=store,
        policies=PolicySet.from_documents([POLICY]),
    )


async def test_racing_decisions_and_resumes_on_postgres_run_the_call_once(pg_url: str) -> None:
    writes: list[str] = []
    stores = [await open_store(pg_url) for _ in range(RACERS)]
    try:
        paused = await planner_on(stores[0], writes).run("write hi", headers=ALICE)
        assert paused.status == "paused" and writes == []
        approval_id = paused.pending_approvals[0].id
        policies = PolicySet.from_documents([POLICY])

        decided = await asyncio.gather(
            *(
                ApprovalService(s, policies).decide(
                    tenant="acme",
                    approval_id=approval_id,
                    principal=f"admin-{i}",
                    roles=["admin"],
                    decision="approve",
                )
                for i, s in enumerate(stores)
            ),
            return_exceptions=True,
        )
        assert sum(not isinstance(d, BaseException) for d in decided) == 1
        assert all(isinstance(d, AlreadyDecidedError) for d in decided if isinstance(d, Exception))

        with pytest.raises(NotFoundError) as foreign:
            await planner_on(stores[0], writes).resume(
                paused.run_id, headers=Headers(tenant="globex")
            )
        assert str(foreign.value) == str(NotFoundError("run", paused.run_id))

        outcomes = await asyncio.gather(
            *(planner_on(s, writes).resume(paused.run_id, headers=ALICE) for s in stores),
            return_exceptions=True,
        )
        assert writes == ["hi"]
        done = [o for o in outcomes if not isinstance(o, BaseException)]
        assert done and all(o.status == "completed" for o in done)
        assert all(isinstance(o, ConflictError) for o in outcomes if isinstance(o, BaseException))
        kinds = [e.kind for e in await stores[0].list_events("acme", paused.run_id)]
        assert kinds.count("approval_decided") == 1 and kinds.count("resumed") == 1
        assert kinds.count("approval_applied") == 1
    finally:
        for s in stores:
            await s.aclose()
