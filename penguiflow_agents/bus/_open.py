"""``open_bus(url)``: pick and open a message bus from a URL."""

from __future__ import annotations

from typing import Any

from penguiflow_agents.bus._base import MessageBus
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.store import redact_url

__all__ = ["DEFAULT_BUS_URL", "open_bus"]

DEFAULT_BUS_URL = "redis://127.0.0.1:6379/0"

_ACCEPTED = (
    "redis://host:6379/0 (rediss:// with TLS, unix:///path/redis.sock; "
    "?stream=NAME&group=NAME pick the stream and group), or memory:// (one process only)"
)


async def open_bus(url: str, **options: Any) -> MessageBus:
    """Open the bus a URL names, ready to use (connected, consumer group created).

    ``options`` go to the bus (``max_backlog``, ``visibility_timeout_s``,
    ``max_deliveries``, ``secret``; for Redis also ``stream`` and ``group``).
    A Redis bus signs and checks jobs with ``secret`` or
    ``$PENGUIFLOW_BUS_SECRET``, which it requires when its host is not
    loopback.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from penguiflow_agents.bus._memory import MemoryBus

        return MemoryBus(**options)
    if scheme in ("redis", "rediss", "unix"):
        from penguiflow_agents.bus._redis import RedisBus

        return await RedisBus.open(url, **options)
    shown = redact_url(url)
    what = f"has the unknown scheme {scheme!r}" if scheme else "has no scheme"
    raise UserError(f"bus URL {shown!r} {what}; use {_ACCEPTED}.")
