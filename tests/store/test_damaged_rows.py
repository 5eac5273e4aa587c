"""One damaged approval row does not break listing: the others list, that one is marked.

Before, a row whose arguments or decision were not valid JSON made
``list_approvals`` (and ``approvals list``) fail for the whole tenant.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.cli import main
from penguiflow_agents.exceptions import ApprovalError
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import open_store
from tests.store.conftest import PG_SCHEMA
from tests.store.test_contract import make_approval


async def _damage_sqlite(url: str, tenant: str, column: str, value: str) -> None:
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"UPDATE approvals SET {column} = ? WHERE tenant = ? AND id = 'ap-2'", (value, tenant)
        )


async def _damage_postgres(dsn: str, tenant: str, column: str, value: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # PostgreSQL's JSON type refuses text that is not JSON; a wrong shape gets through.
        await conn.execute(
            f'UPDATE "{PG_SCHEMA}".approvals SET {column} = $1::json '
            "WHERE tenant = $2 AND id = 'ap-2'",
            value,
            tenant,
        )
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("column", "sqlite_value", "pg_value"),
    [
        ("arguments", "{not json", '"a string, not an object"'),
        ("decision", "[1, 2", "[1, 2]"),
    ],
)
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_damaged_row_is_listed_marked_and_never_decided(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tenant: str,
    kind: str,
    column: str,
    sqlite_value: str,
    pg_value: str,
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = str(request.getfixturevalue("pg_store_url"))
    store = await open_store(url)
    try:
        for i in (1, 2, 3):
            await store.create_approval(make_approval(tenant, f"ap-{i}", call_id=f"call-{i}"))
        if kind == "sqlite":
            await _damage_sqlite(url, tenant, column, sqlite_value)
        else:
            await _damage_postgres(
                request.getfixturevalue("postgres_dsn"), tenant, column, pg_value
            )
        listed = {r.id: r for r in await store.list_approvals(tenant)}
        assert set(listed) == {"ap-1", "ap-2", "ap-3"}
        assert listed["ap-1"].damaged is None and listed["ap-3"].damaged is None
        assert listed["ap-2"].damaged is not None and column.rstrip("s") in listed["ap-2"].damaged
        assert (await store.get_approval(tenant, "ap-2")).damaged is not None
        service = ApprovalService(store, PolicySet.from_documents([]))
        with pytest.raises(ApprovalError, match="damaged"):
            await service.decide(
                tenant=tenant,
                approval_id="ap-2",
                principal="bob",
                roles=["admin"],
                decision="approve",
            )
    finally:
        await store.aclose()


def test_approvals_list_shows_the_other_requests_and_marks_the_damaged_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio
    import json

    url = f"sqlite:///{tmp_path / 'state.db'}"

    async def setup() -> None:
        store = await open_store(url)
        try:
            for i in (1, 2, 3):
                await store.create_approval(make_approval("acme", f"ap-{i}", call_id=f"c{i}"))
        finally:
            await store.aclose()
        await _damage_sqlite(url, "acme", "arguments", "{not json")

    asyncio.run(setup())
    capsys.readouterr()
    assert main(["approvals", "list", "--tenant", "acme", "--store", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["id"] for a in listed] == ["ap-1", "ap-2", "ap-3"]
    assert [("damaged" in a) for a in listed] == [False, True, False]
    assert main(["approvals", "list", "--tenant", "acme", "--store", url]) == 0
    table = capsys.readouterr().out
    assert "ap-1" in table and "ap-3" in table and "DAMAGED" in table
