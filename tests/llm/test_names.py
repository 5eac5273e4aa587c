"""Wire names: provider-safe, reversible, injective and order-free for any tool set."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow_agents.llm import WIRE_NAME_PATTERN, WireNames, to_wire_name

# Names built from the characters that make the mapping hard: dots, underscores,
# dashes, illegal punctuation and non-ASCII letters; some very long.
_NAME_CHARS = st.sampled_from([*list("ab_.-Z9 /é"), "__", ".."])
names = st.lists(_NAME_CHARS, min_size=0, max_size=40).map("".join) | st.text(max_size=90)


def test_dotted_names_use_double_underscore() -> None:
    wire = WireNames.build(["time.get_current_time", "files.read_file"])
    assert wire.wire("time.get_current_time") == "time__get_current_time"
    assert wire.canonical("time__get_current_time") == "time.get_current_time"


def test_a_name_already_containing_double_underscore_does_not_clash_with_its_dotted_twin() -> None:
    wire = WireNames.build(["a.b", "a__b"])
    assert wire.wire("a.b") == "a__b"
    assert wire.wire("a__b") != "a__b"
    assert WIRE_NAME_PATTERN.match(wire.wire("a__b"))
    assert wire.canonical(wire.wire("a__b")) == "a__b"


def test_names_that_sanitize_to_the_same_text_get_distinct_hashed_wire_names() -> None:
    wire = WireNames.build(["x.a b", "x.a/b", "x.a_b"])
    assert len(set(wire.to_wire.values())) == 3
    assert wire.wire("x.a_b") == "x__a_b"


def test_long_names_are_cut_to_64_characters_with_a_hash_suffix() -> None:
    long_a = "source." + "a" * 80
    long_b = "source." + "a" * 79 + "b"
    wire = WireNames.build([long_a, long_b])
    assert all(len(w) <= 64 for w in wire.to_wire.values())
    assert wire.wire(long_a) != wire.wire(long_b)
    assert wire.canonical(wire.wire(long_b)) == long_b


def test_a_hashed_name_that_clashes_with_a_plain_name_gets_a_longer_hash() -> None:
    hashed = to_wire_name("a b")
    wire = WireNames.build(["a b", hashed])
    assert wire.wire(hashed) == hashed
    assert wire.wire("a b") != hashed
    assert wire.canonical(wire.wire("a b")) == "a b"


def test_unknown_wire_names_from_the_model_map_back_by_the_plain_rule() -> None:
    wire = WireNames.build(["time.get_current_time"])
    assert wire.canonical("weather__forecast") == "weather.forecast"


@settings(max_examples=300, deadline=None)
@given(st.sets(names, max_size=12))
def test_the_mapping_is_injective_reversible_provider_safe_and_order_free(
    tool_names: set[str],
) -> None:
    wire = WireNames.build(tool_names)
    wires = [wire.wire(n) for n in tool_names]
    assert len(set(wires)) == len(wires)
    assert all(WIRE_NAME_PATTERN.match(w) for w in wires), wires
    assert all(wire.canonical(wire.wire(n)) == n for n in tool_names)
    shuffled = list(tool_names)
    random.Random(0).shuffle(shuffled)
    assert WireNames.build(reversed(shuffled)).to_wire == wire.to_wire


@settings(max_examples=300, deadline=None)
@given(names)
def test_every_standalone_wire_name_is_provider_safe(name: str) -> None:
    assert WIRE_NAME_PATTERN.match(to_wire_name(name))
