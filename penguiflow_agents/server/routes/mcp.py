"""``/mcp``: the MCP gateway (streamable HTTP), see ``server._mcp_gateway``.

Not in the OpenAPI document: its protocol is MCP's, not this API's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter
from starlette.routing import Route

from penguiflow_agents.server._mcp_gateway import GATEWAY_KEY, McpEndpoint, McpGateway
from penguiflow_agents.server._state import ServerState

__all__ = ["router"]


@asynccontextmanager
async def _gateway(app: Any) -> AsyncIterator[None]:
    """Runs inside the app's lifespan: the gateway lives while the server state does."""
    state = app.state.penguiflow
    assert isinstance(state, ServerState)
    gateway = McpGateway(state)
    async with gateway.running():
        state.extras[GATEWAY_KEY] = gateway
        try:
            yield
        finally:
            state.extras.pop(GATEWAY_KEY, None)


router = APIRouter(lifespan=_gateway)
# An ASGI app, not a request handler: the SDK writes the responses (JSON or SSE) itself.
router.routes.append(
    Route("/mcp", McpEndpoint(), methods=["GET", "POST", "DELETE"], include_in_schema=False)
)
