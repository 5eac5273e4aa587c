"""Answering a server's elicitation (a question for the user, asked during a call).

A question goes to the person behind the call when one can answer: the
call's ``CallContext.extra["elicit"]`` (an ``ElicitFn``; ``chat`` prompts
inline, ``tools call`` on the TTY, the service over its stream). Otherwise,
and when that person does not answer within ``ELICIT_TIMEOUT_S``, the
manifest's ``elicitation`` decides:

- ``ask`` (default): ask the person; with none, cancel;
- ``defaults``: ask the person; with none, accept with the schema's defaults;
- ``decline``: never ask; decline.

A form answer is validated against the requested schema; an answer that
does not fit is refused (the server sees ``cancel``), never forwarded.
URL-mode questions are shown with their link; nothing is ever opened.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
import mcp_types as types
import structlog

__all__ = ["ELICIT_TIMEOUT_S", "ElicitFn", "Elicitation", "answer_elicitation", "schema_defaults"]

log = structlog.get_logger("penguiflow_agents.tools.mcp")

# Longest wait for the person to answer a server's question.
ELICIT_TIMEOUT_S = 300.0

Action = Literal["accept", "decline", "cancel"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Elicitation:
    """A server's question: a form (``schema``) or a link to visit (``url``, never opened for you)."""

    source: str
    message: str
    mode: Literal["form", "url"]
    schema: Mapping[str, Any] | None = None
    url: str | None = None


# Returns (action, content); content only for an accepted form.
ElicitFn = Callable[[Elicitation], Awaitable[tuple[Action, dict[str, Any] | None]]]


def schema_defaults(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``default`` of every top-level property that has one."""
    properties = (schema or {}).get("properties") or {}
    return {
        k: v["default"] for k, v in properties.items() if isinstance(v, dict) and "default" in v
    }


def _fallback(policy: str, question: Elicitation) -> types.ElicitResult:
    if policy == "defaults" and question.mode == "form":
        return types.ElicitResult(action="accept", content=schema_defaults(question.schema))
    return types.ElicitResult(action="decline" if policy == "decline" else "cancel")


async def answer_elicitation(
    source: str,
    policy: str,
    params: types.ElicitRequestFormParams | types.ElicitRequestURLParams,
    person: ElicitFn | None,
    *,
    timeout_s: float = ELICIT_TIMEOUT_S,
) -> types.ElicitResult:
    """The answer to one question, per the rules in the module docstring."""
    if isinstance(params, types.ElicitRequestURLParams):
        question = Elicitation(source=source, message=params.message, mode="url", url=params.url)
    else:
        schema = params.requested_schema
        schema_dict = schema if isinstance(schema, dict) else schema.model_dump(by_alias=True)
        question = Elicitation(
            source=source, message=params.message, mode="form", schema=schema_dict
        )
    if policy == "decline" or person is None:
        result = _fallback(policy, question)
        log.info("mcp_elicitation_answered", source=source, action=result.action, by="policy")
        return result
    try:
        outcome = person(question)
        action, content = await asyncio.wait_for(
            outcome if inspect.isawaitable(outcome) else _done(outcome), timeout_s
        )
    except TimeoutError:
        log.info("mcp_elicitation_timed_out", source=source, timeout_s=timeout_s)
        return _fallback(policy, question)
    if action != "accept" or question.mode == "url":
        return types.ElicitResult(action=action)
    content = dict(content or {})
    try:
        jsonschema.validate(content, dict(question.schema or {}))
    except jsonschema.ValidationError as exc:
        log.warning("mcp_elicitation_answer_refused", source=source, reason=exc.message)
        return types.ElicitResult(action="cancel")
    return types.ElicitResult(action="accept", content=content)


async def _done(value: Any) -> Any:
    return value
