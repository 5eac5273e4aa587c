"""The HTTP service (``penguiflow-agents serve``): FastAPI, the ``[server]`` extra.

```python
from penguiflow_agents.server import ServerSettings, create_app

app = create_app(ServerSettings(tools="tools", policies="policies", keys="keys.yaml"))
# uvicorn.run(app, host="127.0.0.1", port=8400)
```

Routes, identity, error shapes and the SSE format: docs/DESIGN.md, "HTTP service".
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import jwt  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the HTTP service needs the [server] extra: pip install 'penguiflow-agents[server]' "
        f"(missing: {exc.name})"
    ) from exc

from penguiflow_agents.server._app import LLMFactory, create_app
from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._errors import ApiError
from penguiflow_agents.server._keys import ApiKey, KeyRing, add_key, hash_key, new_key, revoke_key
from penguiflow_agents.server._oidc import OIDCConfig
from penguiflow_agents.server._settings import ServerSettings
from penguiflow_agents.server._state import ServerState, server_state

__all__ = [
    "ApiError",
    "ApiKey",
    "Caller",
    "KeyRing",
    "LLMFactory",
    "OIDCConfig",
    "ServerSettings",
    "ServerState",
    "add_key",
    "caller",
    "create_app",
    "hash_key",
    "new_key",
    "revoke_key",
    "server_state",
]
