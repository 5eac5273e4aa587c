"""The webhook outbox part of the StateStore contract, on every implementation.

PostgreSQL runs in a schema of its own per test here: the outbox is the one
cross-tenant table, and a claim must not see the entries of other tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.exceptions import (
    AlreadyDecidedError,
    ConflictError,
    NotFoundError,
    UserError,
)
from penguiflow_agents.store import OutboxEntry, StateStore, open_store
from tests.store.conftest import drop_schema, pg_url
from tests.store.test_contract import approve, make_approval

T0 = 1_000_000.0  # the entries' creation time; claims pass `now` explicitly
LEASE_S = 30.0


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    """An empty store of each kind (PostgreSQL: a schema used by this test only)."""
    schema = None
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        dsn = str(request.getfixturevalue("postgres_dsn"))
        schema = f"pf_outbox_{uuid.uuid4().hex[:12]}"
        url = pg_url(dsn, schema)
    store = await open_store(url)
    yield store
    await store.aclose()
    if schema is not None:
        await drop_schema(dsn, schema)


def entry(tenant: str, n: int, **kw: Any) -> OutboxEntry:
    fields: dict[str, Any] = {
        "event_id": f"ap-{n}.requested",
        "url": f"https://hooks.example/{n}",
        "kind": "approval.requested",
        "payload": {"id": f"ap-{n}.requested", "n": n},
        "next_attempt_at": T0,
        "created_at": T0 + n,
    }
    fields.update(kw)
    return OutboxEntry(id=f"whk-{n}", tenant=tenant, **fields)


async def test_create_approval_writes_its_outbox_entries_pending(
    fresh: StateStore, tenant: str
) -> None:
    await fresh.create_approval(make_approval(tenant), outbox=[entry(tenant, 1), entry(tenant, 2)])
    listed = await fresh.list_outbox(tenant=tenant)
    assert [e.id for e in listed] == ["whk-1", "whk-2"]
    first = listed[0]
    assert (first.status, first.attempts, first.last_error, first.finished_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert (first.event_id, first.kind, first.url, first.payload) == (
        "ap-1.requested",
        "approval.requested",
        "https://hooks.example/1",
        {"id": "ap-1.requested", "n": 1},
    )


async def test_a_conflicting_approval_writes_no_outbox_entry(
    fresh: StateStore, tenant: str
) -> None:
    await fresh.create_approval(make_approval(tenant))
    with pytest.raises(ConflictError):
        await fresh.create_approval(make_approval(tenant), outbox=[entry(tenant, 1)])
    assert await fresh.list_outbox() == []


async def test_a_decision_writes_its_outbox_entries_and_a_losing_one_writes_none(
    fresh: StateStore, tenant: str
) -> None:
    await fresh.create_approval(make_approval(tenant))
    decided = entry(tenant, 1, event_id="ap-1.decided", kind="approval.decided")
    await fresh.decide_approval(tenant, "ap-1", approve(), outbox=[decided])
    with pytest.raises(AlreadyDecidedError):
        await fresh.decide_approval(tenant, "ap-1", approve("carol"), outbox=[entry(tenant, 2)])
    with pytest.raises(NotFoundError):
        await fresh.decide_approval(tenant, "nope", approve(), outbox=[entry(tenant, 3)])
    assert [(e.id, e.kind) for e in await fresh.list_outbox()] == [("whk-1", "approval.decided")]


async def test_writing_the_same_entry_id_twice_keeps_one_entry(
    fresh: StateStore, tenant: str
) -> None:
    await fresh.create_approval(make_approval(tenant, "ap-1"), outbox=[entry(tenant, 1)])
    await fresh.create_approval(make_approval(tenant, "ap-2"), outbox=[entry(tenant, 1)])
    assert [e.id for e in await fresh.list_outbox()] == ["whk-1"]


async def test_claim_takes_due_entries_oldest_first_under_a_lease(
    fresh: StateStore, tenant: str
) -> None:
    entries = [entry(tenant, 3), entry(tenant, 1), entry(tenant, 2, next_attempt_at=T0 + 100)]
    await fresh.create_approval(make_approval(tenant), outbox=entries)
    claimed = await fresh.claim_outbox(now=T0 + 10, lease_s=LEASE_S, limit=10)
    assert [e.id for e in claimed] == ["whk-1", "whk-3"]  # whk-2 is not due yet
    assert {e.next_attempt_at for e in claimed} == {T0 + 10 + LEASE_S}
    # Leased: not claimable again until the lease runs out (the claimer may have died).
    assert await fresh.claim_outbox(now=T0 + 20, lease_s=LEASE_S, limit=10) == []
    again = await fresh.claim_outbox(now=T0 + 10 + LEASE_S + 1, lease_s=LEASE_S, limit=10)
    assert [e.id for e in again] == ["whk-1", "whk-3"]


async def test_claim_respects_the_limit(fresh: StateStore, tenant: str) -> None:
    await fresh.create_approval(
        make_approval(tenant), outbox=[entry(tenant, n) for n in range(1, 6)]
    )
    first = await fresh.claim_outbox(now=T0 + 10, lease_s=LEASE_S, limit=2)
    second = await fresh.claim_outbox(now=T0 + 10, lease_s=LEASE_S, limit=10)
    assert [e.id for e in first] == ["whk-1", "whk-2"]
    assert [e.id for e in second] == ["whk-3", "whk-4", "whk-5"]


async def test_recorded_outcomes_are_kept_and_finished_entries_are_never_claimed(
    fresh: StateStore, tenant: str
) -> None:
    await fresh.create_approval(
        make_approval(tenant), outbox=[entry(tenant, 1), entry(tenant, 2), entry(tenant, 3)]
    )
    one, two, three = await fresh.claim_outbox(now=T0 + 10, lease_s=LEASE_S, limit=10)
    await fresh.record_outbox_attempt(
        replace(one, status="delivered", attempts=1, finished_at=T0 + 11)
    )
    await fresh.record_outbox_attempt(
        replace(two, status="dead", attempts=5, last_error="HTTP 503", finished_at=T0 + 12)
    )
    await fresh.record_outbox_attempt(
        replace(three, attempts=1, last_error="HTTP 500", next_attempt_at=T0 + 15)
    )
    by_id = {e.id: e for e in await fresh.list_outbox(tenant=tenant)}
    assert (by_id["whk-1"].status, by_id["whk-1"].attempts, by_id["whk-1"].finished_at) == (
        "delivered",
        1,
        T0 + 11,
    )
    assert (by_id["whk-2"].status, by_id["whk-2"].last_error) == ("dead", "HTTP 503")
    assert (by_id["whk-3"].status, by_id["whk-3"].next_attempt_at) == ("pending", T0 + 15)
    # Only the retried one comes back, and only once its retry time has come.
    assert await fresh.claim_outbox(now=T0 + 14, lease_s=LEASE_S, limit=10) == []
    later = await fresh.claim_outbox(now=T0 + 10_000, lease_s=LEASE_S, limit=10)
    assert [(e.id, e.attempts, e.last_error) for e in later] == [("whk-3", 1, "HTTP 500")]
    assert [e.id for e in await fresh.list_outbox(status="dead")] == ["whk-2"]


async def test_list_outbox_filters_by_tenant(
    fresh: StateStore, tenant: str, other_tenant: str
) -> None:
    await fresh.create_approval(make_approval(tenant), outbox=[entry(tenant, 1)])
    await fresh.create_approval(make_approval(other_tenant), outbox=[entry(other_tenant, 2)])
    assert [e.id for e in await fresh.list_outbox(tenant=tenant)] == ["whk-1"]
    assert [e.id for e in await fresh.list_outbox(tenant=other_tenant)] == ["whk-2"]
    assert [e.id for e in await fresh.list_outbox()] == ["whk-1", "whk-2"]


async def test_concurrent_claims_hand_each_entry_to_one_claimer(
    fresh: StateStore, tenant: str
) -> None:
    await fresh.create_approval(
        make_approval(tenant), outbox=[entry(tenant, n) for n in range(1, 21)]
    )
    batches = await asyncio.gather(
        *(fresh.claim_outbox(now=T0 + 50, lease_s=LEASE_S, limit=3) for _ in range(10))
    )
    ids = [e.id for batch in batches for e in batch]
    assert sorted(ids) == sorted(f"whk-{n}" for n in range(1, 21))


async def test_bad_outbox_arguments_are_user_errors(fresh: StateStore, tenant: str) -> None:
    with pytest.raises(UserError, match="lease"):
        await fresh.claim_outbox(now=T0, lease_s=0, limit=1)
    with pytest.raises(UserError, match="limit"):
        await fresh.claim_outbox(now=T0, lease_s=1, limit=0)
    with pytest.raises(UserError, match="'sent'"):
        await fresh.list_outbox(status="sent")
    with pytest.raises(UserError, match="'sent'"):
        await fresh.create_approval(make_approval(tenant), outbox=[entry(tenant, 1, status="sent")])
    with pytest.raises(NotFoundError):
        await fresh.record_outbox_attempt(entry(tenant, 9))
