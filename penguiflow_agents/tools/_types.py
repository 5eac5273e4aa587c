"""The tool seam: what a tool is, what a call returns, what a source must do.

Everything here is plain data; the registry, the policy layer and the planner
all speak these types. Nothing in this module does I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from penguiflow_agents._identity import Headers

__all__ = [
    "IMAGE_TYPES",
    "TRACE_HEADERS",
    "ArgumentNormalizer",
    "CallContext",
    "ToolErrorKind",
    "ToolMedia",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "canonical_json",
    "definition_hash",
    "sha256_json",
    "trace_headers",
]


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no insignificant whitespace, UTF-8 kept.

    Only JSON values are accepted (dict with string keys, list, tuple, str,
    int, float, bool, None): anything else raises ``TypeError`` instead of
    being silently stringified, since approvals bind to hashes of this text.
    NaN and infinities are refused too (they are not JSON).
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:  # NaN / Infinity
        raise TypeError(f"canonical JSON cannot hold {exc}; use a finite number.") from None
    except TypeError as exc:
        raise TypeError(
            f"canonical JSON holds only JSON values (objects with string keys, arrays, "
            f"strings, numbers, booleans, null): {exc}."
        ) from None


def sha256_json(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value`` (``TypeError`` for non-JSON values)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def definition_hash(
    name: str,
    description: str,
    input_schema: Mapping[str, Any],
    *,
    risk: str = "low",
    idempotent: bool = False,
    binding: Mapping[str, Any] | None = None,
) -> str:
    """Hash that identifies a tool definition; approvals bind to it.

    It covers everything that changes what a call does: the name, the
    description and input schema the model and the approver see, the risk and
    idempotency the manifest declares, and the transport's ``binding`` (http:
    method, URL and path templates, header *names*, query/body mapping; MCP:
    the server's command or URL and the tool's annotations; python: module and
    function). Secret values never enter it: bindings hold ``${VAR}`` names.
    """
    return sha256_json(
        {
            "name": name,
            "description": description,
            "input_schema": input_schema,
            "risk": risk,
            "idempotent": idempotent,
            "binding": dict(binding or {}),
        }
    )


# A tool's own normaliser: validated arguments in, canonical arguments out (same
# schema). It raises ValueError (or a pydantic ValidationError) for arguments
# that have no canonical form. It must be idempotent: f(f(x)) == f(x).
ArgumentNormalizer = Callable[[dict[str, Any]], dict[str, Any]]


class ToolErrorKind(StrEnum):
    """Why a call did not succeed. The planner shows it to the model."""

    INVALID_ARGUMENTS = "invalid_arguments"
    TIMEOUT = "timeout"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    TOOL_ERROR = "tool_error"
    DENIED = "denied"
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"
    # The source needs a person to authorize it (OAuth) first; nothing reached the server.
    # ``structured["authorization"]``: source, tenant, principal, url, reason.
    AUTHORIZATION_REQUIRED = "authorization_required"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    """One tool as the registry exposes it (namespaced name ``source.tool``)."""

    name: str
    source: str
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None = None
    risk: str = "low"  # low | medium | high
    idempotent: bool = False
    timeout_s: float | None = None  # per-tool override of the source's timeout
    # A call made again with the same run_id and call_id (a run taken over after a crash)
    # reattaches to the first call's work instead of repeating it (a2a: the remote task
    # bound in ``CallContext.store``), so the planner may make it again like an idempotent one.
    resumable: bool = False
    # What the call does on the wire, set by the source (see ``definition_hash``).
    binding: Mapping[str, Any] = field(default_factory=dict)
    definition_hash: str = ""
    # Canonicalises validated arguments before policy, approval and execution.
    normalize: ArgumentNormalizer | None = field(default=None, compare=False, repr=False)

    @property
    def bare_name(self) -> str:
        """The tool's name inside its source (``get_current_time``)."""
        return self.name.split(".", 1)[1] if "." in self.name else self.name

    def with_hash(self) -> ToolSpec:
        """Return a copy whose ``definition_hash`` is computed from the definition."""
        h = definition_hash(
            self.name,
            self.description,
            dict(self.input_schema),
            risk=self.risk,
            idempotent=self.idempotent,
            binding=self.binding,
        )
        return dataclasses.replace(self, definition_hash=h)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "input_schema": dict(self.input_schema),
            "risk": self.risk,
            "idempotent": self.idempotent,
            "definition_hash": self.definition_hash,
        }


# Image types every multimodal provider reads (OpenAI, Anthropic, Gemini): what a tool's
# image result may be shown to the model as (MCP image content, an http tool's image body).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolMedia:
    """An image a tool returned (an MCP ``ImageContent``): base64 ``data`` of ``mime_type``.

    The planner shows it to the model as image content (a user message of
    ``image_url`` data parts after the step's tool results); ``output`` keeps
    a one-line description of it in the text.
    """

    mime_type: str
    data: str  # base64

    @property
    def size(self) -> int:
        """Bytes of the decoded image (about)."""
        return len(self.data) * 3 // 4

    def to_dict(self) -> dict[str, Any]:
        return {"mime_type": self.mime_type, "data": self.data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolMedia:
        return cls(mime_type=str(data["mime_type"]), data=str(data["data"]))

    def part(self) -> dict[str, Any]:
        """The OpenAI chat content part (litellm maps it for other providers)."""
        return {
            "type": "image_url",
            "image_url": {"url": f"data:{self.mime_type};base64,{self.data}"},
        }


@dataclass(slots=True, kw_only=True)
class ToolResult:
    """The outcome of one tool call. Never an exception: failures are data.

    ``output`` is what the model sees (text or JSON-able value); ``structured``
    keeps MCP structured content or the raw JSON body when there is one.
    ``media``: images the model is shown besides ``output`` (MCP image
    content, bounded by the source's ``max_result_bytes``); not part of
    ``to_dict()``, so never in events, logs or the calls table.
    """

    tool: str
    ok: bool
    output: Any = None
    structured: Any = None
    error_kind: ToolErrorKind | None = None
    error: str | None = None  # human-readable; never contains secrets
    latency_s: float = 0.0
    attempts: int = 0
    # Transient hint from a source (HTTP Retry-After), honoured by the retry
    # wrapper; not part of to_dict(), never stored.
    retry_after_s: float | None = None
    media: tuple[ToolMedia, ...] = ()

    @property
    def outcome(self) -> str:
        """``"ok"`` or the error kind, as the CLI's ``steps[].outcome``."""
        return "ok" if self.ok else str(self.error_kind or ToolErrorKind.TOOL_ERROR)

    @classmethod
    def success(
        cls,
        tool: str,
        output: Any,
        *,
        structured: Any = None,
        latency_s: float = 0.0,
        attempts: int = 1,
    ) -> ToolResult:
        return cls(
            tool=tool,
            ok=True,
            output=output,
            structured=structured,
            latency_s=latency_s,
            attempts=attempts,
        )

    @classmethod
    def failure(
        cls,
        tool: str,
        kind: ToolErrorKind,
        message: str,
        *,
        latency_s: float = 0.0,
        attempts: int = 0,
    ) -> ToolResult:
        return cls(
            tool=tool,
            ok=False,
            error_kind=kind,
            error=message,
            latency_s=latency_s,
            attempts=attempts,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "ok": self.ok,
            "output": self.output,
            "structured": self.structured,
            "error_kind": str(self.error_kind) if self.error_kind else None,
            "error": self.error,
            "latency_s": self.latency_s,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolResult:
        kind = data.get("error_kind")
        return cls(
            tool=str(data["tool"]),
            ok=bool(data["ok"]),
            output=data.get("output"),
            structured=data.get("structured"),
            error_kind=ToolErrorKind(kind) if kind else None,
            error=data.get("error"),
            latency_s=float(data.get("latency_s", 0.0)),
            attempts=int(data.get("attempts", 0)),
        )


EventSink = Callable[[str, Mapping[str, Any]], Awaitable[None] | None]

# CallContext.extra key: the call's W3C trace context ({"traceparent": ..., "tracestate": ...}),
# set by telemetry; http sources send it as headers, MCP sources in the request's ``_meta``.
TRACE_HEADERS = "trace_headers"
_W3C_KEYS = ("traceparent", "tracestate")


def trace_headers(ctx: CallContext | None) -> dict[str, str]:
    """The W3C trace context to send with a call (empty when the call is not traced)."""
    if ctx is None:
        return {}
    carrier = ctx.extra.get(TRACE_HEADERS)
    if not isinstance(carrier, Mapping):
        return {}
    return {k: str(carrier[k]) for k in _W3C_KEYS if isinstance(carrier.get(k), str)}


# ``CallContext.extra`` key: the ``ToolSpec`` the call's arguments were already validated and
# normalised against (``prepare_arguments``), set by a caller that did so (the planner checks
# every call before it runs). The registry then skips doing it again when that spec is still
# the tool's current one, and removes the key before the call reaches the source.
PREPARED_FOR_KEY = "penguiflow.prepared_for"


@dataclass(slots=True, kw_only=True)
class CallContext:
    """Who is calling and within what limits; flows from run to tool call.

    A ``@tool`` function that declares a parameter annotated ``CallContext``
    receives it (the model never sees that parameter): the caller's
    ``tenant``/``principal``/``roles``, the ``run_id``, ``trace_id`` and
    ``deadline`` of the run, and ``deps``, the application's dependencies
    given to the planner as ``ReactPlanner(..., deps=...)`` (a database pool,
    an HTTP client, settings).
    """

    headers: Headers | None = None
    run_id: str | None = None
    call_id: str | None = None
    trace_id: str | None = None
    deadline: float | None = None  # absolute, time.monotonic() clock
    on_event: EventSink | None = None  # e.g. progress notifications
    extra: dict[str, Any] = field(default_factory=dict)
    deps: Any = None  # the application's dependencies (``ReactPlanner(deps=...)``)
    store: Any = None  # the run's StateStore, for sources that keep call state (a2a)

    @property
    def tenant(self) -> str | None:
        return self.headers.tenant if self.headers is not None else None

    @property
    def principal(self) -> str | None:
        return self.headers.principal if self.headers is not None else None

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.headers.roles) if self.headers is not None else ()


@runtime_checkable
class ToolSource(Protocol):
    """A place tools come from: a Python module, an HTTP API, an MCP server.

    A source lists its tools and calls one. It raises nothing on a failed
    call: every failure comes back as a ``ToolResult`` with an error kind.
    Protection (semaphore, timeouts, retries, circuit breaker) is a wrapper
    around a source, not part of it.
    """

    name: str

    async def list_tools(self) -> list[ToolSpec]: ...

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        """Call ``tool`` (the bare name) with already-validated arguments."""
        ...

    async def aclose(self) -> None: ...
