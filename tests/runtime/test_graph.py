"""Building a flow: edges, names, cycles and the egress rule."""

from __future__ import annotations

import pytest

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.runtime import Node, NodePolicy, create


async def _echo(msg: object, ctx: object) -> object:
    return msg


def _node(name: str) -> Node:
    return Node(_echo, name=name)


def test_a_cycle_is_refused_with_its_nodes_named() -> None:
    a, b, c = _node("a"), _node("b"), _node("c")
    with pytest.raises(UserError) as info:
        create(a.to(b), b.to(c), c.to(a), c.to())
    assert "'a' -> 'b' -> 'c' -> 'a'" in str(info.value)
    assert "allow_cycles=True" in str(info.value)


def test_a_self_loop_is_a_cycle() -> None:
    a, out = _node("loop"), _node("out")
    with pytest.raises(UserError, match="'loop' -> 'loop'"):
        create(a.to(a, out), out.to())


def test_a_cycle_is_accepted_when_allowed() -> None:
    a, out = _node("loop"), _node("out")
    flow = create(a.to(a, out), out.to(), allow_cycles=True)
    assert flow.node_names == ("loop", "out")


def test_a_graph_without_an_egress_node_is_refused() -> None:
    a, b = _node("a"), _node("b")
    with pytest.raises(UserError, match="no egress node"):
        create(a.to(b), b.to(a), allow_cycles=True)


def test_two_different_nodes_with_one_name_are_refused() -> None:
    with pytest.raises(UserError, match="two different nodes are named 'x'"):
        create(_node("x").to(_node("x")))


def test_edges_may_be_pairs_and_a_single_egress_node() -> None:
    a, b = _node("a"), _node("b")
    assert create((a, b)).node_names == ("a", "b")
    assert create(_node("solo").to()).node_names == ("solo",)


def test_create_refuses_what_is_not_an_edge() -> None:
    with pytest.raises(UserError, match="takes edges"):
        create("a -> b")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="at least one edge"):
        create()


def test_a_node_needs_an_async_function() -> None:
    def sync(msg: object, ctx: object) -> object:
        return msg

    with pytest.raises(UserError, match="async def"):
        Node(sync)  # type: ignore[arg-type]


def test_bad_policy_and_sizes_are_refused_with_the_value() -> None:
    with pytest.raises(UserError, match="max_retries must be >= 0, got -1"):
        NodePolicy(max_retries=-1)
    with pytest.raises(UserError, match="'sometimes'"):
        NodePolicy(validate="sometimes")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="queue_maxsize must be an int >= 1, got 0"):
        create(_node("a").to(), queue_maxsize=0)
    with pytest.raises(UserError, match="concurrency must be an int >= 1"):
        Node(_echo, concurrency=0)


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    policy = NodePolicy(backoff_base=0.1, backoff_mult=2.0, max_backoff=0.5, jitter=0.2)
    assert policy.backoff(1, 1.0) == pytest.approx(0.1)
    assert policy.backoff(2, 1.0) == pytest.approx(0.2)
    assert policy.backoff(10, 1.0) == pytest.approx(0.5)
    assert policy.backoff(2, 0.0) == pytest.approx(0.16)  # shrunk by up to jitter, never grown
    assert policy.backoff(2, 0.5) == pytest.approx(0.18)
