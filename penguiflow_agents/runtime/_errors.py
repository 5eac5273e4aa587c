"""Describing a failure for events, logs and FlowErrors without echoing the data that caused it.

Validation errors of pydantic and jsonschema repeat the offending input in
their text (``input_value={...}``, ``On instance: ...``), and that input is
usually a payload. For those only where and why is kept; any other
exception is described as ``"TypeName: message"``, its message as written.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["describe_error", "validation_summary"]

_MAX_LOCATIONS = 5  # validation problems named in one description


def validation_summary(exc: ValidationError) -> str:
    """Where and why validation failed, without echoing the (possibly sensitive) input."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:_MAX_LOCATIONS]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - _MAX_LOCATIONS
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _is_jsonschema_error(exc: BaseException) -> bool:
    # jsonschema is not imported here: recognise its ValidationError/SchemaError by shape.
    return type(exc).__module__.startswith("jsonschema") and hasattr(exc, "validator")


def describe_error(exc: BaseException) -> str:
    """``"TypeName: message"``; for a validation error, its locations and reasons only."""
    name = type(exc).__name__
    if isinstance(exc, ValidationError):
        return f"{name}: {exc.title} is not valid ({validation_summary(exc)})"
    if _is_jsonschema_error(exc):
        where = getattr(exc, "json_path", "$")
        return f"{name}: the value at {where} failed the schema's {exc.validator!r} check"  # type: ignore[attr-defined]
    return f"{name}: {exc}"
