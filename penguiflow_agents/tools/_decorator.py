"""``@tool``: turn an async or sync Python function into a tool.

The input schema comes from the type hints (pydantic models, dataclasses and
``Annotated[..., Field(...)]`` included), the description from the docstring
(its Google-style ``Args:`` section describes the parameters). A parameter
annotated ``CallContext`` receives the caller's context and is not part of the
schema. Sync functions run in a worker thread, never on the event loop.

    @tool(idempotent=True)
    def add_minutes(time: str, minutes: int) -> str:
        '''Add minutes to a wall-clock time.

        Args:
            time: a time of day, HH:MM.
            minutes: how many minutes to add (may be negative).
        '''
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.tools._types import ArgumentNormalizer, CallContext, ToolSpec

__all__ = ["ArgumentsRejected", "ToolDefinition", "tool", "tool_definition"]

F = TypeVar("F", bound=Callable[..., Any])
Risk = Literal["low", "medium", "high"]

_ATTR = "__penguiflow_tool__"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_SECTION_RE = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns|Return|Yields|Raises|Examples?|Notes?):\s*$"
)
_ARG_LINE_RE = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


class ArgumentsRejected(Exception):
    """The function's own argument model refused the (schema-valid) arguments."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolDefinition:
    """What ``@tool`` learned about a function: enough to list and call it."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    risk: Risk
    idempotent: bool
    timeout_s: float | None
    fn: Callable[..., Any]
    is_async: bool
    args_model: type[BaseModel]
    params: tuple[tuple[str, str], ...]  # (field name in args_model, parameter name)
    context_param: str | None
    normalizer: ArgumentNormalizer | None = None  # @tool(normalize=...), after pydantic

    def spec(self, source: str) -> ToolSpec:
        """The namespaced ``ToolSpec`` (``source.name``), hash filled."""
        return ToolSpec(
            name=f"{source}.{self.name}",
            source=source,
            description=self.description,
            input_schema=self.input_schema,
            risk=self.risk,
            idempotent=self.idempotent,
            timeout_s=self.timeout_s,
            binding={
                "transport": "python",
                "module": str(getattr(self.fn, "__module__", "")),
                "function": str(getattr(self.fn, "__qualname__", self.name)),
            },
            normalize=self.normalize_arguments,
        ).with_hash()

    def normalize_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The canonical form of schema-valid arguments.

        The function's pydantic model validates them (its validators may
        rewrite values: ``AfterValidator``, ``field_validator``), the result is
        dumped back to JSON by parameter name (keys the caller left out stay
        out), and the ``normalize=`` hook of ``@tool``, if any, has the last
        word. Raises ``pydantic.ValidationError`` or ``ValueError`` for
        arguments with no canonical form.
        """
        model = self.args_model.model_validate(dict(arguments))
        canonical = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        if self.normalizer is not None:
            canonical = self.normalizer(canonical)
        return dict(canonical)

    async def invoke(self, arguments: Mapping[str, Any], ctx: CallContext) -> Any:
        """Call the function; return its result converted to JSON-able data."""
        try:
            model = self.args_model.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            raise ArgumentsRejected(
                [
                    f"$.{'.'.join(str(p) for p in e['loc'])}: {e['msg']} ({e['type']})"
                    for e in exc.errors(include_url=False)
                ]
            ) from None
        kwargs = {param: getattr(model, field) for field, param in self.params}
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        if self.is_async:
            value = await self.fn(**kwargs)
        else:
            value = await asyncio.to_thread(self.fn, **kwargs)
        return to_jsonable(value)


def to_jsonable(value: Any) -> Any:
    """Pydantic models, dataclasses, dates, ... as plain JSON data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        return str(value)


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk = "low",
    idempotent: bool = False,
    timeout_s: float | None = None,
    normalize: ArgumentNormalizer | None = None,
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk = "low",
    idempotent: bool = False,
    timeout_s: float | None = None,
    normalize: ArgumentNormalizer | None = None,
) -> F | Callable[[F], F]:
    """Mark a function as a tool; ``@tool`` or ``@tool(idempotent=True, ...)``.

    The function itself is returned unchanged (still directly callable); the
    tool definition is attached to it and read by ``tool_definition(fn)``.

    ``normalize`` canonicalises a call's arguments (a dict, already valid and
    passed through the parameters' pydantic validators) before the policy,
    the approval and the function see them; it returns the canonical dict or
    raises ``ValueError`` for arguments that have no canonical form. It must
    be idempotent.
    """

    def decorate(f: F) -> F:
        definition = _build(
            f,
            name=name,
            description=description,
            risk=risk,
            idempotent=idempotent,
            timeout_s=timeout_s,
            normalize=normalize,
        )
        setattr(f, _ATTR, definition)
        return f

    return decorate(fn) if fn is not None else decorate


def tool_definition(obj: object) -> ToolDefinition | None:
    """The ``ToolDefinition`` of a ``@tool`` function, else None."""
    definition = getattr(obj, _ATTR, None)
    return definition if isinstance(definition, ToolDefinition) else None


def _build(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    risk: Risk,
    idempotent: bool,
    timeout_s: float | None,
    normalize: ArgumentNormalizer | None = None,
) -> ToolDefinition:
    if not callable(fn):
        raise UserError(f"@tool decorates a function, got {fn!r}")
    tool_name: str = name or str(getattr(fn, "__name__", ""))
    if not _NAME_RE.match(tool_name):
        raise UserError(
            f"tool name {tool_name!r} must use only letters, digits, '_' and '-' "
            "(the source adds its own 'source.' prefix); pass @tool(name=...)"
        )
    if risk not in ("low", "medium", "high"):
        raise UserError(f"risk {risk!r} must be 'low', 'medium' or 'high'")
    if normalize is not None and not callable(normalize):
        raise UserError(f"normalize= of tool {tool_name!r} must be a function, got {normalize!r}")
    summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as exc:
        raise UserError(
            f"cannot resolve the type hints of {tool_name!r} ({exc}); "
            "import the types it names at module level"
        ) from None
    fields: dict[str, Any] = {}
    params: list[tuple[str, str]] = []
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UserError(
                f"tool {tool_name!r} takes *{param.name}; tools need named parameters only"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise UserError(
                f"tool {tool_name!r} has positional-only parameter {param.name!r}; "
                "tools are called with keyword arguments"
            )
        annotation = hints.get(param.name, Any)
        if _is_context(annotation):
            context_param = param.name
            continue
        default = ... if param.default is param.empty else param.default
        field_name = f"{param.name}_" if hasattr(BaseModel, param.name) else param.name
        fields[field_name] = (
            annotation,
            Field(default, alias=param.name, description=arg_docs.get(param.name)),
        )
        params.append((field_name, param.name))
    model_name = "".join(part.title() for part in tool_name.replace("-", "_").split("_"))
    args_model: type[BaseModel] = pydantic.create_model(
        f"{model_name}Arguments",
        __config__=ConfigDict(extra="forbid", populate_by_name=True),
        **fields,
    )
    try:
        schema = args_model.model_json_schema()
    except pydantic.PydanticUserError as exc:
        raise UserError(
            f"cannot build a JSON Schema for the parameters of tool {tool_name!r} ({exc}); "
            "annotate them with JSON-friendly types (str, int, list, pydantic models, ...)"
        ) from None
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return ToolDefinition(
        name=tool_name,
        description=(description if description is not None else summary).strip(),
        input_schema=schema,
        risk=risk,
        idempotent=idempotent,
        timeout_s=timeout_s,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        args_model=args_model,
        params=tuple(params),
        context_param=context_param,
        normalizer=normalize,
    )


def _is_context(annotation: Any) -> bool:
    """``CallContext`` or ``CallContext | None``."""
    if annotation is CallContext:
        return True
    args = typing.get_args(annotation)
    return bool(args) and CallContext in args and set(args) <= {CallContext, type(None)}


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into its summary and the ``Args:`` descriptions."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent = _indent_of_args(doc)
    for line in doc.splitlines():
        header = _SECTION_RE.match(line.strip()) if not line.startswith((" ", "\t")) else None
        if header:
            section, current = header.group(1), None
            continue
        if section is None:
            summary.append(line)
        elif section in ("Args", "Arguments", "Parameters", "Params") and line.strip():
            match = _ARG_LINE_RE.match(line.strip())
            if match and (current is None or _indent(line) <= arg_indent):
                current = match.group(1).lstrip("*")
                args[current] = match.group(3).strip()
            elif current is not None:
                args[current] = f"{args[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), args


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indent_of_args(doc: str) -> int:
    """Indentation of the first entry under an Args-like header."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if _SECTION_RE.match(line.strip()) and line.strip().rstrip(":") in (
            "Args",
            "Arguments",
            "Parameters",
            "Params",
        ):
            for nxt in lines[i + 1 :]:
                if nxt.strip():
                    return _indent(nxt)
    return 0
