"""Shared setup for approval tests: a policy, a tool, a store and a controllable clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import ApprovalRecord, MemoryStore, RunRecord
from penguiflow_agents.tools._types import ToolSpec

POLICY: dict[str, Any] = {
    "tenant": "acme",
    "allow": ["files.*"],
    "deny": ["files.delete_*"],
    "roles": {"viewer": {"allow": ["files.read_*"]}},
    "approvals": [
        {
            "match": "files.write_*",
            "when": {"properties": {"path": {"pattern": "^/shared/"}}, "required": ["path"]},
            "approvers": ["role:admin", "user:boss"],
            "expires_in_s": 600,
            "reason": "Writes to the shared drive",
        },
        {"match": "files.write_*", "approvers": ["role:editor"], "reason": "Any write"},
    ],
}
OTHER: dict[str, Any] = {"tenant": "globex", "allow": ["files.*"]}

WRITE = ToolSpec(
    name="files.write_text",
    source="files",
    description="Write a text file.",
    input_schema={
        "type": "object",
        "properties": {"path": {"type": "string"}, "text": {"type": "string", "maxLength": 20}},
        "required": ["path", "text"],
        "additionalProperties": False,
    },
).with_hash()

ALICE = Headers(tenant="acme", principal="alice", roles=["admin"])
ARGS = {"path": "/shared/notes.txt", "text": "hello"}


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    """What a test needs; ``spec``, ``args`` and ``alice`` are the call being gated."""

    store: MemoryStore
    policies: PolicySet
    clock: Clock
    svc: ApprovalService
    spec: ToolSpec = WRITE
    args: dict[str, Any] = field(default_factory=lambda: dict(ARGS))
    alice: Headers = ALICE
    docs: tuple[dict[str, Any], ...] = (POLICY, OTHER)

    async def request(
        self,
        headers: Headers = ALICE,
        arguments: dict[str, Any] | None = None,
        run_id: str = "run-1",
        call_id: str = "call-1",
    ) -> ApprovalRecord:
        args = dict(ARGS if arguments is None else arguments)
        rule = self.policies.approval_rule(WRITE.name, args, headers)
        assert rule is not None
        return await self.svc.request(
            headers=headers, run_id=run_id, call_id=call_id, spec=WRITE, arguments=args, rule=rule
        )


@pytest.fixture
async def env() -> Env:
    store = MemoryStore()
    policies = PolicySet.from_documents([POLICY, OTHER])
    clock = Clock()
    for tenant, principal in (("acme", "alice"), ("globex", "gina")):
        await store.create_run(
            RunRecord(
                run_id="run-1", tenant=tenant, principal=principal, roles=["admin"], status="paused"
            )
        )
    return Env(
        store=store,
        policies=policies,
        clock=clock,
        svc=ApprovalService(store, policies, clock=clock),
    )
