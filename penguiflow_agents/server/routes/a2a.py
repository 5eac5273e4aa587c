"""``/.well-known/agent-card.json`` and ``POST /a2a``: the platform as an A2A agent.

The card is public (it says how to call, not what a caller may do); the
JSON-RPC endpoint takes the bearer key like every route, and a task is a run
of that caller (see ``server/_a2a.py``). Needs the ``a2a`` extra
(``a2a-sdk``); without it both answer 404 with what to install.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._errors import ApiError
from penguiflow_agents.server._state import ServerState, server_state

__all__ = ["router"]

router = APIRouter(tags=["a2a"])


def _sdk() -> Any:
    try:
        from penguiflow_agents.server import _a2a
    except ImportError as exc:
        raise ApiError(
            404,
            f"this server does not speak A2A ({exc}); install penguiflow-agents[a2a].",
        ) from None
    return _a2a


@router.get(
    "/.well-known/agent-card.json",
    summary="the A2A Agent Card (public)",
    response_class=JSONResponse,
)
async def agent_card(request: Request, state: ServerState = Depends(server_state)) -> Response:
    a2a = _sdk()
    from a2a.server.request_handlers.response_helpers import agent_card_to_dict

    from penguiflow_agents.server._app import version

    base = str(request.base_url).rstrip("/")
    card = a2a.agent_card(base, version=version())
    return JSONResponse(agent_card_to_dict(card), headers={"Cache-Control": "no-cache"})


@router.post(
    "/a2a",
    summary="A2A JSON-RPC: SendMessage, SendStreamingMessage, GetTask, CancelTask, "
    "SubscribeToTask (and 0.3's message/send, message/stream, tasks/get, tasks/cancel)",
    response_class=JSONResponse,
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def a2a_rpc(
    request: Request,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> Response:
    a2a = _sdk()
    request.state.penguiflow_caller = who
    response: Response = await a2a.dispatcher(state).handle_requests(request)
    return response
