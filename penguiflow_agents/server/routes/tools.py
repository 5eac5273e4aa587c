"""``GET /v1/tools``: the caller's view of the tools (the shape of ``tools list --json``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._documents import tool_json
from penguiflow_agents.server._models import ErrorBody, ToolDocument
from penguiflow_agents.server._state import ServerState, server_state

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/tools",
    tags=["tools"],
    responses={s: {"model": ErrorBody} for s in (401, 429)},
)


@router.get("", response_model=list[ToolDocument], summary="the tools the caller may use")
async def list_tools(
    who: Caller = Depends(caller), state: ServerState = Depends(server_state)
) -> Any:
    specs = await state.registry.list_tools()
    view = state.policies.view(specs, who.headers)
    return [tool_json(spec) for spec in view.tools]
