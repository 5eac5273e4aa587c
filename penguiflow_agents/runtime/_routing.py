"""Routers: nodes that send each message on to one (or several) of their successors.

A router chooses by a predicate on the message, by the type of the payload
(a discriminated union), or by a table (for example one route per tenant). A
message no route accepts ends its trace with an ``unroutable`` FlowError that
names the router; it is never dropped silently. A router forwards the message
itself, unchanged (a union router forwards the validated payload).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeAlias

from pydantic import TypeAdapter, ValidationError

from penguiflow_agents.exceptions import UserError

from ._context import Context
from ._envelopes import FlowError, FlowErrorCode, Message, rewrap
from ._node import Node, NodePolicy

__all__ = ["Route", "predicate_router", "table_router", "union_router"]

Route: TypeAlias = Node | str | Sequence[Node | str] | None
"""Where a router sends a message: a successor (node or name), several, or None for no route."""


def _payload(msg: Any) -> Any:
    return msg.payload if isinstance(msg, Message) else msg


def _unroutable(router: str, msg: Any, reason: str) -> FlowError:
    return FlowError(
        FlowErrorCode.UNROUTABLE,
        f"router {router!r} found no route for a {type(_payload(msg)).__name__} payload: {reason}.",
        node=router,
    )


def _is_empty(route: Route) -> bool:
    if route is None:
        return True
    if isinstance(route, (Node, str)):
        return False
    return len(route) == 0


def predicate_router(
    name: str,
    predicate: Callable[[Any], Route | Awaitable[Route]],
    *,
    policy: NodePolicy | None = None,
) -> Node:
    """A router that asks ``predicate(msg)`` which successor(s) get the message.

    ``predicate`` (plain or async) receives what the router received (a
    ``Message`` in envelope mode) and returns a successor, its name, a list
    of them, or None/[] when no route applies (an ``unroutable`` FlowError).
    """

    async def route(msg: Any, ctx: Context) -> None:
        chosen = predicate(msg)
        if inspect.isawaitable(chosen):
            chosen = await chosen
        if _is_empty(chosen):
            raise _unroutable(name, msg, "the predicate chose no successor")
        await ctx.emit(msg, to=chosen)

    return Node(route, name=name, policy=policy)


def union_router(
    name: str,
    union: Any,
    *,
    routes: Mapping[type, Node | str] | None = None,
    policy: NodePolicy | None = None,
) -> Node:
    """A router by payload type: validate the payload as ``union``, route by the member it is.

    ``union`` is a union of pydantic models, typically discriminated
    (``Annotated[Question | Complaint, Field(discriminator="kind")]``), so a
    plain dict payload is parsed into the right model. The message goes to
    ``routes[type]`` if given, else to the successor whose ``in_model`` is
    that type. A payload that fits no member, or a member no successor
    takes, is unroutable.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(union)
    table = dict(routes) if routes is not None else None

    async def route(msg: Any, ctx: Context) -> None:
        try:
            value = adapter.validate_python(_payload(msg))
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)[:3]
            )
            raise _unroutable(name, msg, f"it matches no member of the union ({where})") from exc
        kind = type(value)
        target: Node | str | None = None
        if table is not None:
            target = next((t for cls, t in table.items() if issubclass(kind, cls)), None)
        else:
            target = next(
                (
                    s
                    for s in ctx.successors
                    if isinstance(s.in_model, type) and issubclass(kind, s.in_model)
                ),
                None,
            )
        if target is None:
            raise _unroutable(
                name,
                value,
                f"no successor takes a {kind.__name__} (give one in_model={kind.__name__})",
            )
        await ctx.emit(rewrap(msg, value) if isinstance(msg, Message) else value, to=target)

    return Node(route, name=name, policy=policy)


def _tenant_of(msg: Any) -> Hashable:
    if not isinstance(msg, Message):
        raise UserError(
            "table_router without key= routes by tenant, which needs envelope mode; "
            "emit Messages or pass key=."
        )
    return msg.headers.tenant


def table_router(
    name: str,
    table: Mapping[Hashable, Route],
    *,
    key: Callable[[Any], Hashable] | None = None,
    default: Route = None,
    policy: NodePolicy | None = None,
) -> Node:
    """A router by lookup: ``table[key(msg)]`` names the successor(s).

    ``key`` defaults to the message's tenant (a per-tenant policy table); a
    key missing from the table uses ``default``, and without one the message
    is unroutable.
    """
    routes = dict(table)
    key_of = key if key is not None else _tenant_of

    async def route(msg: Any, ctx: Context) -> None:
        value = key_of(msg)
        chosen = routes.get(value, default)
        if _is_empty(chosen):
            raise _unroutable(
                name, msg, f"key {value!r} is not in the table and there is no default"
            )
        await ctx.emit(msg, to=chosen)

    return Node(route, name=name, policy=policy)
