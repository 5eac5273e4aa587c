"""Thin wrappers at the seams: the model client, the tool catalog and the state store.

Each wrapper does what the inner object does, around a span (when tracing)
and a few metric updates (when metrics are on); every other attribute is the
inner object's. The tool wrapper also hands the ``execute_tool`` span's W3C
trace context to the call (``CallContext.extra["trace_headers"]``), which
``http`` sources send as ``traceparent`` and MCP sources as ``_meta``.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from penguiflow_agents.llm._types import LLMRequest, LLMResponse, TextDelta
from penguiflow_agents.telemetry._metrics import UNKNOWN_LABEL

try:
    from opentelemetry.trace import SpanKind

    _CLIENT: Any = SpanKind.CLIENT
    _INTERNAL: Any = SpanKind.INTERNAL
except ImportError:  # pragma: no cover - without the [otel] extra (no tracing either)
    _CLIENT = _INTERNAL = None
from penguiflow_agents.tools._types import TRACE_HEADERS, CallContext, ToolResult, ToolSpec

if TYPE_CHECKING:
    from penguiflow_agents.telemetry._otel import Tracing
    from penguiflow_agents.telemetry._telemetry import Telemetry

__all__ = ["TRACE_HEADERS_KEY", "TracedCatalog", "TracedLLM", "TracedStore", "wrap_llm"]

# Where a call's W3C trace context travels to the tool source (CallContext.extra).
TRACE_HEADERS_KEY = TRACE_HEADERS


def wrap_llm(llm: Any, telemetry: Telemetry) -> Any:
    """``llm`` wrapped; a streaming client stays a streaming client."""
    if isinstance(llm, TracedLLM):
        return llm
    if callable(getattr(llm, "stream", None)):
        return TracedStreamingLLM(llm, telemetry)
    return TracedLLM(llm, telemetry)


def _tenant(request: LLMRequest) -> str:
    return str(request.metadata.get("tenant", ""))


class _Carrier(Mapping[str, str]):
    """A call's W3C trace context (``traceparent``, ``tracestate``), formatted when a source
    first reads it (an in-process tool never does)."""

    __slots__ = ("_headers", "_span")

    def __init__(self, span: Any) -> None:
        self._span = span
        self._headers: dict[str, str] | None = None

    def _read(self) -> dict[str, str]:
        headers = self._headers
        if headers is None:
            from penguiflow_agents.telemetry._otel import Tracing

            headers = self._headers = Tracing.carrier(self._span)
            self._span = None
        return headers

    def __getitem__(self, key: str) -> str:
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def __repr__(self) -> str:
        return repr(self._read())


_new = object.__new__


def _outcome(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else "error"


class TracedLLM:
    """An ``LLMClient``: a ``chat {model}`` span and model metrics around each call."""

    def __init__(self, inner: Any, telemetry: Telemetry) -> None:
        self.inner = inner
        self.model: str = inner.model
        # What reopens the same model (read by the planner for every run: an attribute here,
        # not a miss through __getattr__).
        self.spec: str | None = getattr(inner, "spec", None)
        self._tracing = tracing = telemetry.tracing
        self._metrics = metrics = telemetry.metrics
        # The series of this model's successful calls, kept (None: looked up per call, by
        # tenant, with tenant labels).
        self._ok = (
            metrics.model_series(self.model, "")
            if metrics is not None and not metrics.tenant_label
            else None
        )
        # A current child span in one call: the tracer's lean path and this model's span name
        # and static attributes (None: through ``open_chat``, e.g. with message contents).
        self._child = tracing.child if tracing is not None else None
        self._chat = tracing.chat_static(self.model) if tracing is not None else None
        # ``complete`` reads its state from a closure: an attribute read on a class with
        # ``__getattr__`` takes the slow path each time.
        self.complete: Callable[[LLMRequest], Awaitable[LLMResponse]] = _completer(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"TracedLLM({self.inner!r})"

    def _done(self, response: LLMResponse, seconds: float, request: LLMRequest) -> None:
        metrics = self._metrics
        if metrics is not None:
            series = self._ok
            if series is None:
                series = metrics.model_series(self.model, _tenant(request))
            usage = response.usage
            series.record(seconds, usage.prompt_tokens, usage.completion_tokens, response.cost_usd)

    def _failed(self, exc: BaseException, seconds: float, request: LLMRequest) -> None:
        if self._metrics is not None:
            self._metrics.model_call(self.model, _outcome(exc), seconds, _tenant(request))


def _completer(wrapper: TracedLLM) -> Callable[[LLMRequest], Awaitable[LLMResponse]]:
    """``wrapper.complete``: a ``chat {model}`` span and model metrics around the inner call."""
    inner_complete = wrapper.inner.complete
    model = wrapper.model
    tracing = wrapper._tracing
    metrics = wrapper._metrics
    ok = wrapper._ok
    child = wrapper._child
    chat = wrapper._chat
    clock = time.perf_counter

    async def complete(request: LLMRequest) -> LLMResponse:
        span = token = None
        if tracing is not None:
            # Current while the client works: its own spans (e.g. HTTP) nest in it.
            opened = child(chat[0], _CLIENT, chat[1]) if chat is not None else None  # type: ignore[misc]
            span, token = (
                opened
                if opened is not None
                else tracing.open_chat(model, request.messages, tried=chat is not None)
            )
        started = clock()
        try:
            response: LLMResponse = await inner_complete(request)
        except BaseException as exc:
            wrapper._failed(exc, clock() - started, request)
            if tracing is not None:
                tracing.fail(span, exc, token)
            raise
        if metrics is not None:  # _done, inlined (once per model call)
            seconds = clock() - started
            series = ok if ok is not None else metrics.model_series(model, _tenant(request))
            usage = response.usage
            series.record(seconds, usage.prompt_tokens, usage.completion_tokens, response.cost_usd)
        if tracing is not None:
            tracing.end_chat(span, response, token)
        return response

    return complete


class TracedStreamingLLM(TracedLLM):
    """A streaming ``LLMClient``: the span covers the whole stream."""

    async def stream(self, request: LLMRequest) -> AsyncIterator[TextDelta | LLMResponse]:
        tracing = self._tracing
        span = tracing.chat(self.model, request.messages) if tracing is not None else None
        started = time.perf_counter()
        response: LLMResponse | None = None
        try:
            async for item in self.inner.stream(request):
                if isinstance(item, LLMResponse):
                    response = item
                yield item
        except BaseException as exc:
            self._failed(exc, time.perf_counter() - started, request)
            if tracing is not None:
                tracing.fail(span, exc)
            raise
        if response is not None:
            self._done(response, time.perf_counter() - started, request)
            if tracing is not None:
                tracing.end_chat(span, response)
        elif span is not None:
            span.end()


class TracedCatalog:
    """A ``ToolCatalog``: an ``execute_tool {tool}`` span and per-source duration per call."""

    def __init__(self, inner: Any, telemetry: Telemetry) -> None:
        self.inner = inner
        self._tracing = telemetry.tracing
        self._metrics = telemetry.metrics
        self._sources: dict[str, str] = {}  # tool name -> source, for registered tools only
        self._seconds: dict[str, Any] = {}  # source -> its call-duration histogram
        self._listed: list[ToolSpec] | None = None  # the last listing
        self._indexed: object = None  # the listing ``_sources`` was built from
        # A current child span in one call (the tracer's lean path; None: ``open_tool``), and
        # the span name and static attributes of each registered tool it was used for.
        tracing = self._tracing
        self._child = tracing.child if tracing is not None and not tracing.capture else None
        self._static: dict[str, tuple[str, Mapping[str, Any]]] = {}
        get = getattr(inner, "get", None)
        # A catalog that looks its tools up by name (ToolRegistry.get: the spec as last
        # listed) is listed directly, with no layer here; another one through ``_list``.
        self._get = get if callable(get) else None
        self.list_tools = inner.list_tools if self._get is not None else self._list
        # ``call`` reads its state from a closure: an attribute read on a class with
        # ``__getattr__`` takes the slow path each time.
        self.call: Callable[[str, Mapping[str, Any], CallContext | None], Awaitable[ToolResult]] = (
            _caller(self)
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"TracedCatalog({self.inner!r})"

    async def _list(self) -> list[ToolSpec]:
        specs: list[ToolSpec] = await self.inner.list_tools()
        self._listed = specs  # indexed when a call names a tool not seen yet
        return specs

    def _source(self, name: str) -> str | None:
        """The source of registered tool ``name`` (None: not registered; a tool once listed
        stays known, which keeps the label set bounded by what was registered)."""
        source = self._sources.get(name)
        if source is not None:
            return source
        if self._get is not None:
            spec = self._get(name)
            if spec is not None:
                source = self._sources[name] = spec.source
            return source
        if self._listed is not None and self._listed is not self._indexed:
            self._indexed = listed = self._listed
            self._sources.update((s.name, s.source) for s in listed)
            source = self._sources.get(name)
        return source


def _caller(
    catalog: TracedCatalog,
) -> Callable[[str, Mapping[str, Any], CallContext | None], Awaitable[ToolResult]]:
    """``catalog.call``: an ``execute_tool {tool}`` span and the source's call duration around
    the inner call."""
    inner_call = catalog.inner.call
    tracing = catalog._tracing
    metrics = catalog._metrics
    sources = catalog._sources
    durations = catalog._seconds
    child = catalog._child
    statics = catalog._static
    find_source = catalog._source

    async def call(
        name: str, arguments: Mapping[str, Any], ctx: CallContext | None = None
    ) -> ToolResult:
        source = sources.get(name)
        if source is None:
            source = find_source(name)
        known = source is not None
        if source is None:
            source = name.partition(".")[0] if "." in name else UNKNOWN_LABEL
        span = token = None
        if tracing is not None:
            # Current while the call runs: the tool's own spans and retry events go in it.
            call_id = ctx.call_id if ctx else None
            opened = None
            if known and call_id and child is not None:  # open_tool, inlined
                static = statics.get(name)
                if static is None:
                    static = statics[name] = tracing.tool_static(name, source)
                opened = child(
                    static[0], _INTERNAL, {**static[1], "gen_ai.tool.call.id": call_id}, True
                )
            span, token = (
                opened
                if opened is not None
                else tracing.open_tool(
                    name, source, call_id, arguments, known, tried=child is not None
                )
            )
            ctx = ctx if ctx is not None else CallContext()
            carrier = _new(_Carrier)  # _Carrier(span), without a call to __init__
            carrier._span = span
            carrier._headers = None
            ctx.extra[TRACE_HEADERS_KEY] = carrier
        try:
            result: ToolResult = await inner_call(name, arguments, ctx)
        except BaseException as exc:
            if tracing is not None:
                tracing.fail(span, exc, token)
            raise
        if known and metrics is not None:
            seconds = durations.get(source)  # tool_seconds_observe, inlined
            if seconds is None:
                seconds = durations[source] = metrics.tool_seconds_series(source)
            latency = result.latency_s
            seconds.counts[bisect_left(seconds.bounds, latency)] += 1  # type: ignore[arg-type]
            seconds.sum += latency
        if tracing is not None:
            tracing.end_tool(span, result, token)
        return result

    return call


# Store writes that get a span (reads are frequent and cheap; they would only add noise).
_TRACED_WRITES = (
    "create_run",
    "update_run",
    "claim_run",
    "create_approval",
    "decide_approval",
    "begin_call",
    "finish_call",
    "save_session",
    "prune_runs",
)


class TracedStore:
    """A ``StateStore``: a ``store {operation}`` span around each write made inside a trace."""

    def __init__(self, inner: Any, tracing: Tracing) -> None:
        self.inner = inner
        self._tracing = tracing
        name = type(inner).__name__.lower()
        self._system = next(
            (s for s in ("sqlite", "postgres", "memory") if s in name), "other"
        ).replace("postgres", "postgresql")
        for op in _TRACED_WRITES:
            method = getattr(inner, op, None)
            if method is not None:
                setattr(self, op, self._traced(op, method))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        # A method of the store's class (e.g. append_event, several per run) is kept here
        # once read: the next read finds it without this call.
        if (
            not name.startswith("__")
            and getattr(value, "__self__", None) is self.inner
            and name not in getattr(self.inner, "__dict__", ())
            and callable(getattr(type(self.inner), name, None))
        ):
            setattr(self, name, value)
        return value

    def __repr__(self) -> str:
        return f"TracedStore({self.inner!r})"

    def _traced(self, op: str, method: Any) -> Any:
        tracing = self._tracing
        system = self._system
        # The lean path's child start with this write's span name and attributes, kept.
        child = tracing.child
        name, attributes = tracing.store_static(op, system)

        async def traced(*args: Any, **kwargs: Any) -> Any:
            opened = child(name, _CLIENT, attributes, False, True) if child is not None else None
            span, token = (
                opened
                if opened is not None
                else tracing.open_store(op, system, tried=child is not None)
            )
            if span is None:  # outside a run's trace
                return await method(*args, **kwargs)
            try:
                result = await method(*args, **kwargs)
            except BaseException as exc:
                tracing.fail(span, exc, token)
                raise
            tracing.end_store(span, token)
            return result

        traced.__name__ = op
        return traced
