"""Tool-argument validation with cached, compiled jsonschema validators.

``argument_errors(schema, arguments)`` returns one line per failing path and
constraint (``$.items[0].qty: 5 is greater than the maximum of 3 (maximum)``),
or an empty list. Validators are compiled once per distinct schema (keyed by
its canonical JSON) and kept in a bounded LRU cache.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema import validators
from jsonschema.protocols import Validator

from penguiflow_agents.tools._types import canonical_json

__all__ = ["argument_errors", "format_path", "validator_for"]

# Distinct input schemas whose compiled validators are kept.
VALIDATOR_CACHE_SIZE = 1024
# Failing paths listed before the rest are summarised.
MAX_REPORTED_ERRORS = 20
# Allowed property names quoted in an "is not allowed here" line.
MAX_ALLOWED_SHOWN = 12


class _SchemaError(Exception):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


FastCheck = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class _Compiled:
    validator: Validator | _SchemaError
    fast: FastCheck | None  # says "valid" for certain, or defers to the validator


@functools.lru_cache(maxsize=VALIDATOR_CACHE_SIZE)
def _compile(schema_json: str) -> _Compiled:
    schema = json.loads(schema_json)
    cls = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        error = _SchemaError(f"the tool's input schema is not valid JSON Schema: {exc.message}")
        return _Compiled(error, None)
    return _Compiled(cls(schema, format_checker=cls.FORMAT_CHECKER), _fast_check(schema))


# Fast path by object identity: a registry validates the same (never mutated)
# schema mapping on every call; the entry keeps the object alive so its id is
# not reused while cached.
_by_identity: dict[int, tuple[Mapping[str, Any], _Compiled]] = {}


def validator_for(schema: Mapping[str, Any]) -> Validator | None:
    """The compiled validator for ``schema`` (None if the schema itself is invalid)."""
    validator = _lookup(schema).validator
    return None if isinstance(validator, _SchemaError) else validator


def _lookup(schema: Mapping[str, Any]) -> _Compiled:
    hit = _by_identity.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    compiled = _compile(canonical_json(schema))
    if len(_by_identity) >= VALIDATOR_CACHE_SIZE:
        _by_identity.clear()
    _by_identity[id(schema)] = (schema, compiled)
    return compiled


# The flat schemas most tools have (an object of scalar properties) get a
# plain-Python check that can only say "valid"; anything it is unsure of goes
# to jsonschema, which also writes the error list.
_FLAT_KEYS = frozenset(
    {"type", "properties", "required", "additionalProperties", "title", "description", "$schema"}
)
_PROPERTY_KEYS = frozenset({"type", "title", "description", "default", "examples"})
_SCALARS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _fast_check(schema: Mapping[str, Any]) -> FastCheck | None:
    if not set(schema) <= _FLAT_KEYS or schema.get("type") != "object":
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if (
        not isinstance(properties, dict)
        or not isinstance(required, list)
        or not isinstance(extra, bool)
    ):
        return None
    types: dict[str, tuple[type, ...]] = {}
    for name, prop in properties.items():
        if not isinstance(prop, dict) or not set(prop) <= _PROPERTY_KEYS:
            return None
        kind = prop.get("type")
        if kind not in _SCALARS:
            return None
        types[name] = _SCALARS[kind]
    needed = tuple(required)

    def check(arguments: Mapping[str, Any]) -> bool:
        for name in needed:
            if name not in arguments:
                return False
        for name, value in arguments.items():
            allowed = types.get(name)
            if allowed is None:
                if not extra:
                    return False
            elif type(value) not in allowed:  # exact: bool is not an integer here
                return False
        return True

    return check


def format_path(path: Sequence[Any]) -> str:
    """``["items", 0, "qty"]`` -> ``$.items[0].qty``."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def argument_errors(schema: Mapping[str, Any], arguments: Any) -> list[str]:
    """Each failing path and constraint of ``arguments`` against ``schema``."""
    if not isinstance(arguments, Mapping):
        return [f"$: arguments must be a JSON object, got {type(arguments).__name__}"]
    compiled = _lookup(schema)
    validator = compiled.validator
    if isinstance(validator, _SchemaError):
        return [f"$: {validator.message}"]
    if compiled.fast is not None and compiled.fast(arguments):
        return []
    found = sorted(
        validator.iter_errors(arguments),
        key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)),
    )
    lines: list[str] = []
    for err in found:
        lines.extend(_describe(err))
    if len(lines) > MAX_REPORTED_ERRORS:
        rest = len(lines) - MAX_REPORTED_ERRORS
        lines = [*lines[:MAX_REPORTED_ERRORS], f"... and {rest} more"]
    return lines


def _describe(err: jsonschema.ValidationError) -> list[str]:
    path = list(err.absolute_path)
    constraint = str(err.validator)
    if constraint == "required" and isinstance(err.instance, Mapping):
        required: Any = err.validator_value
        missing = [
            name for name in required if name not in err.instance and repr(name) in err.message
        ]
        if missing:
            return [f"{format_path([*path, name])}: is required (required)" for name in missing]
    if constraint == "additionalProperties" and isinstance(err.instance, Mapping):
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        extra = _unexpected(err.instance, schema)
        if extra:
            allowed = _allowed_names(schema)
            return [
                f"{format_path([*path, name])}: is not allowed here{allowed} (additionalProperties)"
                for name in extra
            ]
        return [f"{format_path(path)}: {err.message} (additionalProperties)"]
    return [f"{format_path(path)}: {err.message} ({constraint})"]


def _unexpected(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The property names of ``instance`` that ``additionalProperties: false`` refuses."""
    properties = schema.get("properties") or {}
    patterns = list((schema.get("patternProperties") or {}).keys())
    return [
        name
        for name in instance
        if name not in properties and not any(re.search(p, name) for p in patterns)
    ]


def _allowed_names(schema: Mapping[str, Any]) -> str:
    names = list((schema.get("properties") or {}).keys())
    if not names:
        return "; this object takes no properties"
    shown = ", ".join(names[:MAX_ALLOWED_SHOWN])
    more = f", ... ({len(names)} in all)" if len(names) > MAX_ALLOWED_SHOWN else ""
    return f"; allowed: {shown}{more}"
