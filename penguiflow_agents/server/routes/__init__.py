"""One router per resource; ``create_app`` includes every router of ``ROUTERS``.

To add routes (another module's resource), write ``routes/<resource>.py`` with
a module-level ``router = APIRouter(...)`` whose handlers take
``Depends(caller)`` and ``Depends(server_state)``, and add its module name to
``ROUTERS``.
"""

from __future__ import annotations

__all__ = ["ROUTERS"]

# Modules of this package whose ``router`` the app includes, in this order.
ROUTERS: tuple[str, ...] = (
    "health",
    "history",
    "runs",
    "elicitations",
    "auth",
    "tools",
    "approvals",
    "openai_compat",
    "inbox",
    "a2a",
    "mcp",
)
