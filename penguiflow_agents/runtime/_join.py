"""join_k: wait for k messages of the same trace and pass them on together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from penguiflow_agents.exceptions import UserError

from ._context import Context
from ._envelopes import Message
from ._node import Node, NodePolicy

__all__ = ["Join", "join_k"]


class Join(Node):
    """A node that buffers payloads per trace until ``k`` have arrived.

    It then emits ``merge(payloads)`` (default: the list, in arrival order) in
    the envelope of the k-th message. A trace that ends first (cancelled,
    failed, past its deadline, or finished without k arrivals) has its buffer
    released, so joins that never complete do not hold memory.
    Envelope mode only.
    """

    __slots__ = ("_buffers", "k", "merge")

    def __init__(
        self,
        name: str,
        k: int,
        *,
        merge: Callable[[list[Any]], Any] | None = None,
        policy: NodePolicy | None = None,
    ) -> None:
        if not isinstance(k, int) or k < 1:
            raise UserError(f"join_k {name!r}: k must be an int >= 1, got {k!r}.")
        super().__init__(self._join, name=name, policy=policy)
        self.k = k
        self.merge = merge
        self._buffers: dict[str, list[Any]] = {}
        self._on_trace_end = self._release

    @property
    def pending(self) -> int:
        """Traces with a partial buffer right now."""
        return len(self._buffers)

    def _release(self, trace_id: str) -> None:
        self._buffers.pop(trace_id, None)

    async def _join(self, msg: Any, ctx: Context) -> Any:
        if not isinstance(msg, Message):
            raise UserError(
                f"join_k {self.name!r} groups messages by trace, which needs envelope mode; "
                "emit Messages into the flow."
            )
        buffer = self._buffers.setdefault(msg.trace_id, [])
        buffer.append(msg.payload)
        if len(buffer) < self.k:
            return None
        del self._buffers[msg.trace_id]
        return self.merge(buffer) if self.merge is not None else buffer


def join_k(
    name: str,
    k: int,
    *,
    merge: Callable[[list[Any]], Any] | None = None,
    policy: NodePolicy | None = None,
) -> Join:
    """A join node: after ``k`` messages of one trace, emit their payloads together."""
    return Join(name, k, merge=merge, policy=policy)
