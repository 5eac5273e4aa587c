"""Checking a flow graph: unique names, cycles (refused unless allowed), an egress."""

from __future__ import annotations

from collections.abc import Iterable

from penguiflow_agents.exceptions import UserError

from ._node import Edges, Node

__all__ = ["Graph", "build_graph"]


class Graph:
    __slots__ = ("ingress", "nodes", "successors")

    def __init__(
        self, nodes: list[Node], successors: dict[Node, list[Node]], ingress: list[Node]
    ) -> None:
        self.nodes = nodes  # in order of first mention
        self.successors = successors
        self.ingress = ingress


def _find_cycle(nodes: list[Node], successors: dict[Node, list[Node]]) -> list[Node] | None:
    """A cycle as a path [a, b, ..., a], or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(nodes, white)
    for root in nodes:
        if colour[root] != white:
            continue
        path: list[Node] = [root]
        stack = [iter(successors[root])]
        colour[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
            elif colour[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            elif colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(successors[nxt]))
    return None


def build_graph(edges: Iterable[Edges | tuple[Node, Node]], *, allow_cycles: bool) -> Graph:
    nodes: list[Node] = []
    successors: dict[Node, list[Node]] = {}
    by_name: dict[str, Node] = {}

    def add(node: Node) -> None:
        if node in successors:
            return
        other = by_name.get(node.name)
        if other is not None:
            raise UserError(
                f"two different nodes are named {node.name!r}; give each node a unique name."
            )
        by_name[node.name] = node
        successors[node] = []
        nodes.append(node)

    for edge in edges:
        if isinstance(edge, Edges):
            src, dsts = edge.source, edge.successors
        elif (
            isinstance(edge, tuple)
            and len(edge) == 2
            and isinstance(edge[0], Node)
            and isinstance(edge[1], Node)
        ):
            src, dsts = edge[0], (edge[1],)
        else:
            raise UserError(f"create() takes edges such as `a.to(b, c)` or `(a, b)`, got {edge!r}.")
        add(src)
        for dst in dsts:
            add(dst)
            if dst not in successors[src]:
                successors[src].append(dst)

    if not nodes:
        raise UserError("create() needs at least one edge, e.g. create(node.to()).")
    if not allow_cycles:
        cycle = _find_cycle(nodes, successors)
        if cycle is not None:
            path = " -> ".join(repr(n.name) for n in cycle)
            raise UserError(
                f"the flow has a cycle: {path}; remove an edge, or pass allow_cycles=True "
                "(each trace then gets a hop budget, max_hops)."
            )
    if not any(not successors[n] for n in nodes):
        raise UserError(
            "the flow has no egress node (every node has a successor), so nothing could ever be "
            "fetched; end it with a node that has no successors, e.g. `last.to()`."
        )
    has_pred = {d for n in nodes for d in successors[n] if d is not n}
    ingress = [n for n in nodes if n not in has_pred]
    if not ingress:
        ingress = [nodes[0]]
    return Graph(nodes, successors, ingress)
