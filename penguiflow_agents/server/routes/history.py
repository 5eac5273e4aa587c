"""``GET /v1/runs``: the caller's tenant's runs, newest first (``runs list`` over HTTP)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from penguiflow_agents.history import list_runs
from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._models import ErrorBody
from penguiflow_agents.server._state import ServerState, server_state

__all__ = ["MAX_LIMIT", "router"]

# Most runs one answer lists (ask again with an older ``since`` window for more).
MAX_LIMIT = 1000

router = APIRouter(
    prefix="/v1/runs",
    tags=["runs"],
    responses={s: {"model": ErrorBody} for s in (401, 403, 422, 429)},
)


@router.get("", summary="the caller's tenant's runs, newest first (the shape of runs list --json)")
async def list_tenant_runs(
    status: Annotated[
        str | None, Query(max_length=32, description="only runs in this status")
    ] = None,
    since: Annotated[
        str | None,
        Query(max_length=32, description="only runs created within this age: 30d, 12h, 15m, 90s"),
    ] = None,
    tool: Annotated[
        str | None,
        Query(max_length=256, description="only runs that called this tool (a glob: files.*)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many")] = 100,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> Any:
    from penguiflow_agents.cli._observe import parse_duration

    after = None
    if since is not None:
        after = time.time() - parse_duration(since, option="since")
    runs = await list_runs(
        state.store, who.tenant, status=status or None, since=after, tool=tool, limit=limit
    )
    return {"runs": [r.to_dict() for r in runs]}
