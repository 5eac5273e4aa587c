"""Argument validation: compiled validators are cached; each failing path and constraint listed."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow_agents.tools import argument_errors
from penguiflow_agents.tools._validate import validator_for

SCHEMA = {
    "type": "object",
    "properties": {
        "qty": {"type": "integer", "maximum": 3},
        "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    },
    "required": ["qty", "email"],
    "additionalProperties": False,
}


def test_valid_arguments_have_no_errors() -> None:
    assert argument_errors(SCHEMA, {"qty": 1, "email": "a@b"}) == []


def test_every_failing_path_is_listed_with_its_constraint() -> None:
    errors = argument_errors(SCHEMA, {"qty": 9, "tags": ["a", 2, "c"], "colour": "red"})
    assert "$.email: is required (required)" in errors
    assert any(e.startswith("$.qty:") and e.endswith("(maximum)") for e in errors)
    assert any(e.startswith("$.tags[1]:") and e.endswith("(type)") for e in errors)
    assert any(e.startswith("$.tags:") and e.endswith("(maxItems)") for e in errors)
    assert (
        "$.colour: is not allowed here; allowed: email, qty, tags (additionalProperties)" in errors
    )
    assert len(errors) == 5


def test_pattern_failures_quote_the_value() -> None:
    errors = argument_errors(SCHEMA, {"qty": 1, "email": "nope"})
    assert errors == [
        f"$.email: 'nope' does not match {SCHEMA['properties']['email']['pattern']!r} (pattern)"
    ]


def test_compiled_validators_are_cached_per_distinct_schema() -> None:
    first = validator_for(SCHEMA)
    assert first is not None
    assert validator_for(SCHEMA) is first
    assert validator_for(copy.deepcopy(SCHEMA)) is first, "equal schemas share one validator"
    other = validator_for({"type": "object", "properties": {}})
    assert other is not first


def test_an_invalid_schema_is_reported_not_raised() -> None:
    errors = argument_errors({"type": "no-such-type"}, {})
    assert len(errors) == 1 and "not valid JSON Schema" in errors[0]
    assert validator_for({"type": "no-such-type"}) is None


FLAT = {
    "type": "object",
    "properties": {
        "s": {"type": "string", "description": "text"},
        "i": {"type": "integer"},
        "n": {"type": "number", "default": 1.5},
        "b": {"type": "boolean"},
    },
    "required": ["s", "i"],
    "additionalProperties": False,
}
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)


@given(
    st.dictionaries(st.sampled_from(["s", "i", "n", "b", "extra"]), _json_scalars, max_size=5),
    st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_flat_schema_verdicts_agree_with_jsonschema(
    arguments: dict[str, Any], strict: bool
) -> None:
    """The fast path for flat schemas never accepts what jsonschema refuses, nor the reverse."""
    schema = {**FLAT, "additionalProperties": not strict}
    reference = jsonschema.Draft202012Validator(schema)
    assert (argument_errors(schema, arguments) == []) == reference.is_valid(arguments)
