"""Nodes: an async function ``(msg, ctx)`` plus how to run it, and the edges between them."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel

from penguiflow_agents._retry import backoff_delay
from penguiflow_agents.exceptions import UserError

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["Edges", "Node", "NodeFunc", "NodePolicy"]

NodeFunc: TypeAlias = Callable[[Any, "Context"], Awaitable[Any]]
Validate: TypeAlias = Literal["both", "in", "out", "none"]
_VALIDATE_MODES = ("both", "in", "out", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePolicy:
    """How a node is run: validation, a time limit per attempt, retries with backoff.

    Attempt ``n`` (n >= 1) that fails is followed, if ``n <= max_retries``, by a
    pause of ``min(max_backoff, backoff_base * backoff_mult ** (n - 1))``
    shrunk at random by up to ``jitter`` (a fraction; ``_retry.backoff_delay``). Validation
    failures and a ``FlowError`` raised by the node are never retried.
    """

    validate: Validate = "both"  # which of in_model / out_model (if given) are enforced
    timeout_s: float | None = None  # per attempt; None = no limit but the message's deadline
    max_retries: int = 0  # further attempts after the first
    backoff_base: float = 0.1
    backoff_mult: float = 2.0
    max_backoff: float = 5.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.validate not in _VALIDATE_MODES:
            raise UserError(
                f"NodePolicy.validate must be one of {_VALIDATE_MODES!r}, got {self.validate!r}."
            )
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise UserError(
                f"NodePolicy.timeout_s must be positive or None, got {self.timeout_s!r}."
            )
        if self.max_retries < 0:
            raise UserError(f"NodePolicy.max_retries must be >= 0, got {self.max_retries!r}.")
        if self.backoff_base < 0 or self.backoff_mult < 1 or self.max_backoff < 0:
            raise UserError(
                "NodePolicy backoff needs backoff_base >= 0, backoff_mult >= 1 and "
                f"max_backoff >= 0; got {self.backoff_base!r}, {self.backoff_mult!r}, "
                f"{self.max_backoff!r}."
            )
        if not 0 <= self.jitter <= 1:
            raise UserError(f"NodePolicy.jitter must be within [0, 1], got {self.jitter!r}.")

    def backoff(self, attempt: int, rand: float) -> float:
        """The pause after failed attempt ``attempt``; ``rand`` is uniform in [0, 1)."""
        return backoff_delay(
            attempt,
            initial_s=self.backoff_base,
            max_s=self.max_backoff,
            multiplier=self.backoff_mult,
            jitter=self.jitter,
            rand=lambda: rand,
        )


_DEFAULT_POLICY = NodePolicy()


def _is_async_callable(func: object) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - we want the bound __call__
    return call is not None and inspect.iscoroutinefunction(call)


class Node:
    """A step of a flow: ``async def func(msg, ctx)``.

    ``msg`` is what was emitted to the node (a ``Message`` in envelope mode,
    the bare payload otherwise). The returned value goes to every successor
    (a bare value is put back into the incoming envelope); ``None`` sends
    nothing, and ``ctx.emit`` sends extra outputs. A node without successors
    is an egress: its outputs are what ``flow.fetch`` returns.

    ``in_model``/``out_model`` (pydantic models) validate the payload going in
    and the value coming out, as ``policy.validate`` says. ``concurrency``
    lets the node handle that many messages at once (order is then not kept).
    A Node object belongs to one flow.
    """

    __slots__ = (
        "_on_start",
        "_on_stop",
        "_on_trace_end",
        "concurrency",
        "func",
        "in_model",
        "name",
        "out_model",
        "policy",
    )

    def __init__(
        self,
        func: NodeFunc,
        *,
        name: str | None = None,
        policy: NodePolicy | None = None,
        concurrency: int = 1,
        in_model: type[BaseModel] | None = None,
        out_model: type[BaseModel] | None = None,
    ) -> None:
        if not _is_async_callable(func):
            raise UserError(
                f"Node needs an async function `async def fn(msg, ctx)`, got {func!r}; "
                "declare it with `async def`."
            )
        resolved = name if name is not None else getattr(func, "__name__", None)
        if not isinstance(resolved, str) or not resolved:
            raise UserError(f"Node {func!r} needs a name; pass name='...'.")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise UserError(
                f"Node {resolved!r}: concurrency must be an int >= 1, got {concurrency!r}."
            )
        for label, model in (("in_model", in_model), ("out_model", out_model)):
            if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise UserError(
                    f"Node {resolved!r}: {label} must be a pydantic model class, got {model!r}."
                )
        self.func = func
        self.name = resolved
        self.policy = policy if policy is not None else _DEFAULT_POLICY
        self.concurrency = concurrency
        self.in_model = in_model
        self.out_model = out_model
        # Hooks for stateful patterns (join buffers, subflows); set by this package only.
        self._on_trace_end: Callable[[str], None] | None = None
        self._on_start: Callable[[], None] | None = None
        self._on_stop: Callable[[], Awaitable[None]] | None = None

    def to(self, *successors: Node) -> Edges:
        """Edges from this node to each successor; ``node.to()`` declares an egress node."""
        for succ in successors:
            if not isinstance(succ, Node):
                raise UserError(f"Node {self.name!r}.to() takes Nodes, got {succ!r}.")
        return Edges(self, successors)

    def __repr__(self) -> str:
        return f"Node({self.name!r})"


@dataclass(frozen=True, slots=True)
class Edges:
    """``source -> each of successors``; what ``Node.to`` returns and ``create`` takes."""

    source: Node
    successors: tuple[Node, ...]
