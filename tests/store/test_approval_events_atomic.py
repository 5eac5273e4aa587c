"""An approval record and its audit event are written in one transaction (issue #12 §9), on
every store: both or neither, in the run's log order; and through the approvals service, a
store that cannot append a lone event still records request and decision with their events
(the service no longer makes a second, separate write)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import AlreadyDecidedError, ConflictError, StoreError, UserError
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import RunRecord, StateStore
from penguiflow_agents.tools._types import ToolSpec

from .test_contract import approve, make_approval

REQUESTED = ("approval_requested", {"approval_id": "ap-1", "tool": "files.write_text"})
DECIDED = ("approval_decided", {"approval_id": "ap-1", "decision": "approve"})


async def _kinds(store: StateStore, tenant: str, run_id: str = "run-1") -> list[str]:
    return [e.kind for e in await store.list_events(tenant, run_id)]


async def test_the_request_and_its_event_are_written_together(
    store: StateStore, tenant: str
) -> None:
    await store.append_event(tenant, "run-1", "run_started", {})
    await store.create_approval(make_approval(tenant), events=[REQUESTED])
    events = await store.list_events(tenant, "run-1")
    assert [(e.seq, e.kind) for e in events] == [(1, "run_started"), (2, "approval_requested")]
    assert events[1].data == REQUESTED[1]

    with pytest.raises(ConflictError):  # the same id again: no event either
        await store.create_approval(make_approval(tenant), events=[REQUESTED])
    assert await _kinds(store, tenant) == ["run_started", "approval_requested"]

    with pytest.raises((UserError, StoreError, TypeError)):  # an event that cannot be stored
        await store.create_approval(
            make_approval(tenant, "ap-2"), events=[("approval_requested", {"x": object()})]
        )
    with pytest.raises(Exception):  # noqa: B017 - not created: the record went with the event
        await store.get_approval(tenant, "ap-2")


async def test_the_decision_and_its_event_are_written_together(
    store: StateStore, tenant: str
) -> None:
    await store.create_approval(make_approval(tenant), events=[REQUESTED])
    decided = await store.decide_approval(tenant, "ap-1", approve(), events=[DECIDED])
    assert decided.status == "approved"
    with pytest.raises(AlreadyDecidedError):  # a second decision: no second event
        await store.decide_approval(tenant, "ap-1", approve("carol"), events=[DECIDED])
    assert await _kinds(store, tenant) == ["approval_requested", "approval_decided"]


class _NoLoneEvents:
    """A store whose separate event appends fail (as a crash between two writes would)."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append_event(self, tenant: str, run_id: str, kind: str, data: Any) -> int:
        raise StoreError("the process died before the audit event was written")

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        raise StoreError("the process died before the audit event was written")


async def test_the_service_never_leaves_an_approval_without_its_audit_event(
    store: StateStore, tenant: str
) -> None:
    policies = PolicySet.from_documents(
        [
            {
                "tenant": tenant,
                "allow": ["files.*"],
                "approvals": [
                    {"match": "files.write_*", "approvers": ["role:admin"], "reason": "Writes"}
                ],
            }
        ]
    )
    spec = ToolSpec(
        name="files.write_text",
        source="files",
        description="Write.",
        input_schema={"type": "object", "properties": {"path": {"type": "string"}}},
    ).with_hash()
    alice = Headers(tenant=tenant, principal="alice", roles=["staff"])
    await store.create_run(RunRecord(run_id="run-1", tenant=tenant, principal="alice"))
    service = ApprovalService(_NoLoneEvents(store), policies)  # type: ignore[arg-type]
    rule = policies.approval_rule(spec.name, {"path": "/a"}, alice)
    assert rule is not None
    record = await service.request(
        headers=alice, run_id="run-1", call_id="c1", spec=spec, arguments={"path": "/a"}, rule=rule
    )
    await service.decide(
        tenant=tenant, approval_id=record.id, principal="bob", roles=["admin"], decision="approve"
    )
    events = await store.list_events(tenant, "run-1")
    assert [e.kind for e in events] == ["approval_requested", "approval_decided"]
    assert events[0].data["approval_id"] == record.id and events[1].data["decided_by"] == "bob"
