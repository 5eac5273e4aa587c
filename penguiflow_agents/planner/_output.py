"""Typed final answers: ``ReactPlanner(..., output_type=SomeModel)``.

The final answer must be a JSON object that validates as the pydantic model
``output_type``; ``RunResult.output`` holds the instance (``answer`` its JSON).
The schema reaches the model one of two ways:

- natively, when the model client says it can constrain its answer to a JSON
  schema (``await llm.supports_output_schema()``, e.g. litellm's
  ``response_format`` json_schema for OpenAI): the request carries
  ``LLMRequest.output_schema`` and the text answer is the JSON object;
- otherwise through a final tool, ``final_answer``, whose arguments are the
  answer (no registered tool has that name: registered names are dotted).

An answer that is not valid JSON or fails the model is repaired the way bad
tool arguments are: the model is told what is wrong, with the schema, and
asked again; such turns count toward ``max_consecutive_errors``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.llm._types import LLMClient, LLMToolCall, OutputSchema
from penguiflow_agents.tools._types import ToolSpec

__all__ = [
    "FINAL_TOOL",
    "OutputSpec",
    "Verdict",
    "how_to_answer",
    "invalid_output",
    "judge",
    "native_output",
    "not_alone",
    "output_spec",
    "parse_output",
    "text_answer",
]

# The final tool's name (registered tool names are always ``source.tool``: no clash).
FINAL_TOOL = "final_answer"
# How much of a rejected answer is quoted back to the model.
_QUOTE_CHARS = 500
_ILLEGAL = re.compile(r"[^a-zA-Z0-9_-]")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """The output type with its JSON schema, as the request field and as the final tool."""

    model: type[BaseModel]
    schema: OutputSchema
    tool: ToolSpec

    def validate(self, value: Any) -> BaseModel:
        """``value`` (JSON text or a parsed object) as an instance (``ValidationError``/``ValueError``)."""
        if isinstance(value, str):
            return self.model.model_validate_json(value)
        return self.model.model_validate(value)

    def stored(self, value: Any) -> BaseModel | None:
        """A stored output (JSON object) as an instance again; None when it no longer validates."""
        if value is None:
            return None
        try:
            return self.validate(value)
        except (ValidationError, ValueError):
            return None


def output_spec(output_type: Any) -> OutputSpec | None:
    if output_type is None:
        return None
    if not (isinstance(output_type, type) and issubclass(output_type, BaseModel)):
        raise UserError(
            f"ReactPlanner output_type must be a pydantic model class (a BaseModel subclass), "
            f"got {output_type!r}."
        )
    try:
        schema = output_type.model_json_schema()
    except Exception as exc:
        raise UserError(
            f"ReactPlanner output_type {output_type.__name__} has no JSON schema "
            f"({type(exc).__name__}: {exc}); use fields pydantic can describe as JSON."
        ) from None
    name = (_ILLEGAL.sub("_", output_type.__name__) or "answer")[:64]
    doc = (output_type.__doc__ or "").strip()
    description = doc if doc and not doc.startswith(BaseModel.__doc__ or "\0") else ""
    spec = ToolSpec(
        name=FINAL_TOOL,
        source="",
        description=(
            "Give your final answer by calling this tool once, alone, with the answer as its "
            "arguments, when you have everything you need. "
            + (f"The answer: {description}" if description else "")
        ).strip(),
        input_schema=schema,
        idempotent=True,
    )
    return OutputSpec(
        model=output_type,
        schema=OutputSchema(name=name, schema=schema, description=description),
        tool=spec,
    )


async def native_output(llm: LLMClient) -> bool:
    """Whether ``llm`` constrains answers to a JSON schema itself (else: the final tool)."""
    ask = getattr(llm, "supports_output_schema", None)
    if not callable(ask):
        return False
    try:
        return bool(await ask())
    except Exception:
        return False


def parse_output(spec: OutputSpec, value: Any, *, via_tool: bool) -> BaseModel | str:
    """The instance, or the sentence telling the model what is wrong with its answer
    (``via_tool``: it came as the final tool's arguments, and must come so again)."""
    try:
        return spec.validate(value)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors(include_url=False)[:10])
    except ValueError as exc:
        problems = str(exc)
    if isinstance(value, str):
        sent = value
    else:
        sent = json.dumps(value, ensure_ascii=False, default=str)
    quoted = sent if len(sent) <= _QUOTE_CHARS else sent[:_QUOTE_CHARS] + "..."
    return invalid_output(spec, problems, quoted, via_tool=via_tool)


def invalid_output(spec: OutputSpec, problems: str, quoted: str, *, via_tool: bool) -> str:
    schema = json.dumps(spec.schema.schema, ensure_ascii=False, sort_keys=True)
    how = (
        f"Call {FINAL_TOOL!r} again with arguments matching this schema"
        if via_tool
        else "Answer again with one JSON object matching this schema"
    )
    return (
        f"Error (invalid_output): your final answer does not match the required "
        f"{spec.model.__name__}: {problems.rstrip('.')}. You sent: {quoted!r}. {how}: {schema}."
    )


def text_answer(spec: OutputSpec, text: str) -> str:
    """A plain-text answer where the final tool was expected: ask for the tool call."""
    schema = json.dumps(spec.schema.schema, ensure_ascii=False, sort_keys=True)
    quoted = text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."
    return (
        f"Error (invalid_output): the final answer must be given by calling {FINAL_TOOL!r}, "
        f"not as text. You sent: {quoted!r}. Call {FINAL_TOOL!r} with arguments matching this "
        f"schema: {schema}."
    )


def not_alone() -> str:
    return (
        f"Error (invalid_output): {FINAL_TOOL!r} was called together with other tools, so the "
        f"answer was not accepted. Call {FINAL_TOOL!r} alone once you have the other results."
    )


def _problem(error: Mapping[str, Any]) -> str:
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    return f"{where}: {error['msg']}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a model turn that tried to give the final answer comes to.

    ``output`` is the accepted instance, or None with ``reply`` saying what is
    wrong. ``call_id``: the answer came as the final tool's (only) call, so the
    reply is that call's tool message; else it was text, and the reply is a
    user message. ``mixed``: final tool calls sent along with other calls:
    each is refused with ``reply`` and the other calls run.
    """

    output: BaseModel | None = None
    reply: str = ""
    call_id: str | None = None
    mixed: tuple[str, ...] = ()


# The tool message that answers an accepted final tool call.
ACCEPTED = "The final answer was accepted."


def judge(
    spec: OutputSpec, native: bool, content: str | None, calls: list[LLMToolCall]
) -> Verdict | None:
    """The verdict on a turn, or None when it is not an attempt at the final answer
    (tool calls without the final tool, or neither calls nor text)."""
    finals = [c for c in calls if c.name == FINAL_TOOL]
    if calls:
        if not finals:
            return None
        if len(calls) > 1:
            return Verdict(reply=not_alone(), mixed=tuple(c.id for c in finals))
        call = finals[0]
        if call.arguments is None:
            raw = call.raw_arguments
            quoted = raw if len(raw) <= _QUOTE_CHARS else raw[:_QUOTE_CHARS] + "..."
            reason = f"the arguments are not a JSON object ({call.parse_error or 'unreadable'})"
            return Verdict(
                reply=invalid_output(spec, reason, quoted, via_tool=True), call_id=call.id
            )
        parsed = parse_output(spec, dict(call.arguments), via_tool=True)
        if isinstance(parsed, BaseModel):
            return Verdict(output=parsed, reply=ACCEPTED, call_id=call.id)
        return Verdict(reply=parsed, call_id=call.id)
    if not (content and content.strip()):
        return None
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content
    parsed = parse_output(spec, text, via_tool=not native)
    if isinstance(parsed, BaseModel):
        return Verdict(output=parsed)
    if not native and not text.lstrip().startswith(("{", "[")):
        return Verdict(reply=text_answer(spec, content))  # prose: ask for the tool call
    return Verdict(reply=parsed)


def how_to_answer(spec: OutputSpec | None, native: bool) -> str:
    """How the model gives its final answer, for the empty-turn reminder."""
    if spec is None:
        return "answer the user in plain text"
    if native:
        return f"answer with one JSON object matching the {spec.model.__name__} schema"
    return f"give your final answer by calling {FINAL_TOOL!r}"
