"""Canonical arguments: validate, then normalise, before anything else sees a call.

The order every call follows (DESIGN.md, "Approvals"):

    validate -> normalise -> policy ``when`` -> bind (hash) -> approve (shown) -> execute

``prepare_arguments(spec, arguments)`` does the first two steps: the
arguments must match the tool's input schema, then the tool's normaliser
(``ToolSpec.normalize``: the pydantic validators of an ``@tool`` function and
its ``normalize=`` hook) turns them into their canonical form, which must
still match the schema. What comes out is the *only* form the policy's
``when`` clause, the approval's argument hash, the approver and the tool see,
so a rule on ``/shared/`` cannot be dodged by writing ``shared/a.txt`` or
``/notes/../shared/a.txt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from penguiflow_agents.tools._types import ToolSpec, canonical_json
from penguiflow_agents.tools._validate import argument_errors

__all__ = ["ArgumentProblem", "prepare_arguments"]

# Longest rendering of a refused value quoted in a problem.
_QUOTED_CHARS = 300


@dataclass(frozen=True, slots=True)
class ArgumentProblem:
    """Why a call's arguments were refused: each failing path, or the normaliser's reason."""

    errors: tuple[str, ...]

    @property
    def message(self) -> str:
        return "; ".join(self.errors)


def _cut(text: str) -> str:
    return text if len(text) <= _QUOTED_CHARS else text[:_QUOTED_CHARS] + "…"


def _normaliser_errors(exc: Exception) -> list[str]:
    if isinstance(exc, pydantic.ValidationError):
        out = []
        for err in exc.errors(include_url=False):
            path = "$" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.get("loc", ())
            )
            message = str(err.get("msg", "is not valid"))
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            out.append(f"{path}: {_cut(message)}")
        return out or ["$: the arguments have no canonical form"]
    return [f"$: {_cut(str(exc) or type(exc).__name__)}"]


def prepare_arguments(
    spec: ToolSpec, arguments: Mapping[str, Any]
) -> dict[str, Any] | ArgumentProblem:
    """The canonical arguments of a call of ``spec``, or why they are refused."""
    errors = argument_errors(spec.input_schema, arguments)
    if errors:
        return ArgumentProblem(tuple(errors))
    args = dict(arguments)
    normalize = spec.normalize
    if normalize is None:
        return args
    try:
        canonical = normalize(dict(args))
    except (ValueError, TypeError, pydantic.ValidationError) as exc:
        return ArgumentProblem(tuple(_normaliser_errors(exc)))
    if not isinstance(canonical, dict):
        return ArgumentProblem(
            (f"$: the tool's normaliser returned {type(canonical).__name__}, not an object",)
        )
    try:
        canonical_json(canonical)
    except TypeError as exc:
        return ArgumentProblem((f"$: the normalised arguments are not JSON ({exc})",))
    again = argument_errors(spec.input_schema, canonical)
    if again:  # a normaliser must keep the arguments inside the schema
        return ArgumentProblem(tuple(f"after normalising, {e}" for e in again))
    return canonical
