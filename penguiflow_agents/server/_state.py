"""``ServerState``: what every router reaches through ``server_state(request)``.

One object per app, built by the app's lifespan (see ``_app``) and kept at
``app.state.penguiflow``. Routers added by other modules (the MCP gateway,
run history, the OpenAI-compatible endpoint) take it the same way:

```python
@router.get("/v1/things")
async def things(state: ServerState = Depends(server_state), who: Caller = Depends(caller)):
    ...
```
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from prometheus_client import CollectorRegistry

from penguiflow_agents.server._errors import ApiError

if TYPE_CHECKING:
    from penguiflow_agents.approvals import ApprovalService
    from penguiflow_agents.bus import MessageBus
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.policy._quotas import TenantQuotas
    from penguiflow_agents.server._executor import Planners, RunExecutor
    from penguiflow_agents.server._hub import EventHub
    from penguiflow_agents.server._keys import KeyRing
    from penguiflow_agents.server._limits import RateLimiter
    from penguiflow_agents.server._oidc import OIDCVerifier
    from penguiflow_agents.server._settings import ServerSettings
    from penguiflow_agents.store import StateStore
    from penguiflow_agents.tools import ToolRegistry

__all__ = ["ServerState", "server_state"]


@dataclass(slots=True, kw_only=True)
class ServerState:
    """The server's shared objects (one per app; read-only after startup).

    - ``store``: the state store, wrapped so that event readers are woken
      (``hub``); ``approvals`` the approvals service over it;
    - ``registry`` and ``policies``: the tools and the tenant policies;
    - ``planners``: a ``ReactPlanner`` per model (``await planners.get(model)``);
    - ``executor``: where runs execute (in process, or on workers via ``bus``);
    - ``keys``, ``oidc``, ``limiter``: identity and per-key limits; ``quotas``
      the tenants' quotas (in the bus's Redis with a Redis bus);
    - ``metrics``: the Prometheus registry served at ``/metrics``: register
      collectors in it (``Counter(..., registry=state.metrics)``);
    - ``extras``: a place for other modules' own objects, by name.
    """

    settings: ServerSettings
    store: StateStore
    registry: ToolRegistry
    policies: PolicySet
    approvals: ApprovalService
    planners: Planners
    executor: RunExecutor
    hub: EventHub
    keys: KeyRing
    limiter: RateLimiter
    metrics: CollectorRegistry
    oidc: OIDCVerifier | None = None
    bus: MessageBus | None = None
    quotas: TenantQuotas | None = None  # the tenants' quotas (policies' `quotas`)
    started_at: float = field(default_factory=time.time)
    extras: dict[str, Any] = field(default_factory=dict)


async def server_state(request: Request) -> ServerState:
    """The app's ``ServerState`` (a FastAPI dependency)."""
    state = getattr(request.app.state, "penguiflow", None)
    if state is None:
        raise ApiError(503, "the server is starting or stopping; try again shortly.")
    assert isinstance(state, ServerState)
    return state
