"""The message bus: how submitters hand run/resume jobs to workers in other processes.

``MessageBus`` is the seam (publish, consume, ack, touch, release); delivery
is at least once, with a visibility timeout after which the job of a worker
that died is delivered to another. ``MemoryBus`` serves tests and one process;
``RedisBus`` (Redis Streams, the ``[redis]`` extra) serves many.
``open_bus(url)`` picks one from a URL.

```python
bus = await open_bus("redis://127.0.0.1:6379/0")
await bus.publish({"kind": "run", ...})
for delivery in await bus.consume("worker-1", max_jobs=4, block_s=1.0):
    ...  # do the job, make its outcome durable, then:
    await bus.ack(delivery)
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from penguiflow_agents.bus._base import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    MAX_BLOCK_S,
    MAX_JOB_BYTES,
    Delivery,
    MessageBus,
)
from penguiflow_agents.bus._memory import MemoryBus
from penguiflow_agents.bus._open import DEFAULT_BUS_URL, open_bus
from penguiflow_agents.bus._signing import BUS_SECRET_ENV

if TYPE_CHECKING:
    from penguiflow_agents.bus._redis import RedisBus

__all__ = [
    "BUS_SECRET_ENV",
    "DEFAULT_BUS_URL",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_DELIVERIES",
    "DEFAULT_VISIBILITY_TIMEOUT_S",
    "MAX_BLOCK_S",
    "MAX_JOB_BYTES",
    "Delivery",
    "MemoryBus",
    "MessageBus",
    "RedisBus",
    "open_bus",
]


def __getattr__(name: str) -> Any:
    # The Redis adapter loads on first use (redis is an optional extra).
    if name == "RedisBus":
        from penguiflow_agents.bus._redis import RedisBus

        return RedisBus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
