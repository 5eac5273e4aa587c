"""A node compiled into one flow: its inbox, successors and validation; a worker's state."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ValidationError

from ._envelopes import FlowError, FlowErrorCode, Message, rewrap
from ._errors import validation_summary
from ._node import Node
from ._queue import Inbox
from ._trace import Trace

__all__ = ["NodeRuntime", "Worker", "validate", "validate_output"]

_C = FlowErrorCode


class NodeRuntime:
    """A node inside one flow: its inbox, successors and compiled policy."""

    __slots__ = (
        "func",
        "in_model",
        "inbox",
        "items",
        "name",
        "node",
        "out_model",
        "policy",
        "succ_by_name",
        "succs",
    )

    def __init__(self, node: Node, queue_maxsize: int) -> None:
        self.node = node
        self.name = node.name
        self.func = node.func
        self.policy = node.policy
        validate = node.policy.validate
        self.in_model = node.in_model if validate in ("both", "in") else None
        self.out_model = node.out_model if validate in ("both", "out") else None
        self.inbox = Inbox(queue_maxsize)
        self.items = self.inbox.items
        self.succs: tuple[NodeRuntime, ...] = ()
        self.succ_by_name: dict[str, NodeRuntime] = {}

    def out_depth(self) -> int:
        depth = 0
        for succ in self.succs:
            depth += len(succ.items)
        return depth


class Worker:
    __slots__ = ("cancel_pending", "current", "rt", "task")

    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self.task: asyncio.Task[None] | None = None
        self.current: Trace | None = None  # the trace whose message is being handled
        self.cancel_pending = False  # we cancelled this task for its current trace


def validate(model: type[BaseModel], value: Any, what: str, node: str) -> Any:
    if type(value) is model:
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise FlowError(
            _C.VALIDATION_ERROR,
            f"node {node!r} {what} is not a valid {model.__name__} "
            f"({validation_summary(exc)}); fix the value or the model.",
            node=node,
        ) from exc


def validate_output(model: type[BaseModel], out: Any, node: str) -> Any:
    if isinstance(out, Message):
        checked = validate(model, out.payload, "returned a value that", node)
        return out if checked is out.payload else rewrap(out, checked)
    return validate(model, out, "returned a value that", node)
