"""A lean span for the OpenTelemetry SDK's pipeline: the run's hot spans without the SDK's cost.

The planner makes two to three spans per step (``chat``, ``execute_tool``, a
``store`` write). Through ``opentelemetry.sdk.trace.Tracer.start_span`` each
costs ~60 µs of CPU here (a lock per span and per attribute write, the
attributes cleaned one by one into a ``BoundedAttributes``, a second
``ReadableSpan`` copied at the end), ten times the planner's own work for the
step. ``SpanFactory`` makes the same spans for the same tracer in ~6 µs:

- the same decisions: the tracer's sampler (asked for every span, except the
  standard ``always_on`` and ``parentbased_always_on`` whose answer is known
  from the parent's flags), its id generator, its resource and scope, its
  span limits (attribute value length, number of events and links);
- the same pipeline: the tracer's span processor gets ``on_start``,
  ``_on_ending`` and ``on_end`` as from an SDK span, so batch and simple
  processors, every exporter (OTLP, console, in-memory) and a user's own
  processors see an ordinary ``ReadableSpan``;
- a span is written only by the thread of the event loop that runs it (no
  lock), its attributes are a plain dict (the planner sets only strings,
  numbers, booleans and tuples of them), and it is frozen when it ends
  (later writes are ignored, as the SDK does).

``PENGUIFLOW_OTEL_SDK_SPANS=1`` makes the SDK's own spans instead (for a
comparison or a processor that needs an SDK ``Span``); a tracer that is not
the SDK's (a no-op or another implementation) is always used as it is.
"""

from __future__ import annotations

import logging
import os
import random
import traceback
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from time import time_ns
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.context import attach as _attach
from opentelemetry.context import detach as _detach
from opentelemetry.sdk.trace import Event, ReadableSpan, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

__all__ = [
    "SDK_SPANS_ENV",
    "LeanSpan",
    "SpanFactory",
    "attach_span",
    "current_span",
    "detach",
    "span_factory",
]

SDK_SPANS_ENV = "PENGUIFLOW_OTEL_SDK_SPANS"
_log = logging.getLogger(__name__)
_UNSET = Status(StatusCode.UNSET)
_SYNC_MULTI = SynchronousMultiSpanProcessor
_EMPTY_STATE = TraceState()
# TraceFlags by value: bit 0 sampled, bit 1 random trace id (W3C level 2).
_FLAGS = {v: TraceFlags(v) for v in range(4)}

try:  # the key the API keeps the current span under (read directly: see current_span)
    from opentelemetry.trace.propagation import _SPAN_KEY
except ImportError:  # pragma: no cover - another API version
    _SPAN_KEY = None  # type: ignore[assignment]


def _context_var() -> Any:
    """The ContextVar behind the API's default runtime context (None: another runtime context,
    e.g. one chosen with ``OTEL_PYTHON_CONTEXT``, used through the API's functions)."""
    try:
        from opentelemetry import context as api_context
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    except ImportError:  # pragma: no cover - another API version
        return None
    runtime = getattr(api_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


# What ``context.get_current`` / ``attach`` / ``detach`` read and set, three calls deep each:
# the spans of a run switch the current context twice per span.
_CONTEXT_VAR = _context_var() if _SPAN_KEY is not None else None


def _noop_hooks() -> frozenset[Any]:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    hooks = set()
    for cls in (SpanProcessor, SimpleSpanProcessor, BatchSpanProcessor):
        for name in ("on_start", "_on_ending"):
            fn = cls.__dict__.get(name)
            code = getattr(fn, "__code__", None)
            # Only a hook whose body is ``pass`` (or a docstring): checked, not assumed.
            if code is not None and code.co_code == _pass_code():
                hooks.add(fn)
    return frozenset(hooks)


def _pass_code() -> bytes:
    def hook(self: Any, span: Any, parent_context: Any = None) -> None:
        pass

    return hook.__code__.co_code


_NOOP_HOOKS = _noop_hooks()

# What the SDK's ``SimpleSpanProcessor.on_end`` reads, in this order: the version whose
# behaviour ``_simple_on_end`` repeats (another version is called as it is).
_SIMPLE_ON_END_NAMES = (
    "context",
    "trace_flags",
    "sampled",
    "_shutdown",
    "logger",
    "warning",
    "_metrics",
    "drop_items",
    "attach",
    "set_value",
    "_SUPPRESS_INSTRUMENTATION_KEY",
    "finish_items",
    "span_exporter",
    "export",
    "Exception",
    "exception",
    "detach",
)


def _simple_processor_parts() -> tuple[Any, Any, Any, Any] | None:
    """The SDK's simple processor class, its ``on_end``, the no-op processor metrics class
    and the suppression key, when ``on_end`` is the one ``_simple_on_end`` repeats."""
    try:
        from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
        from opentelemetry.sdk._shared_internal._processor_metrics import NoOpProcessorMetrics
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    except ImportError:  # pragma: no cover - another SDK version
        return None
    on_end = SimpleSpanProcessor.__dict__.get("on_end")
    if getattr(getattr(on_end, "__code__", None), "co_names", None) != _SIMPLE_ON_END_NAMES:
        return None  # pragma: no cover - another SDK version: its own on_end
    return SimpleSpanProcessor, on_end, NoOpProcessorMetrics, _SUPPRESS_INSTRUMENTATION_KEY


_SIMPLE_PARTS = _simple_processor_parts() if _CONTEXT_VAR is not None else None
_EXPORT_LOG = logging.getLogger("opentelemetry.sdk.trace.export")


def _simple_on_end(processor: Any) -> Any:
    """``processor.on_end`` (the SDK's ``SimpleSpanProcessor``) as the SDK does it, for a
    lean span: the span exported at once, with instrumentation suppressed meanwhile (the
    exporter's own HTTP calls make no spans), errors logged. Cheaper: the suppressed
    context is made once per current context (the spans of a run end under the same one)
    and set through the ContextVar, not through four layers of the API."""
    _, sdk_on_end, noop_metrics, key = _SIMPLE_PARTS  # type: ignore[misc]
    # [(the context it was made from, the same with instrumentation suppressed)]: one tuple,
    # replaced whole (a tool's own thread may end a span meanwhile)
    last: list[tuple[Any, Any]] = [(None, None)]

    def on_end(span: Any) -> None:
        if not span._context[3] & 1 or processor._shutdown:
            sdk_on_end(processor, span)  # not sampled: nothing; shut down: its warning
            return
        current = _CONTEXT_VAR.get()
        pair = last[0]
        if pair[0] is not current:
            suppressed = Context(current)
            dict.__setitem__(suppressed, key, True)
            pair = last[0] = (current, suppressed)
        token = _CONTEXT_VAR.set(pair[1])
        metrics = processor._metrics
        if type(metrics) is not noop_metrics:
            metrics.finish_items(1)
        try:
            processor.span_exporter.export((span,))
        except Exception:
            _EXPORT_LOG.exception("Exception while exporting Span.")
        finally:
            _CONTEXT_VAR.reset(token)

    return on_end


# What the SDK's ``BatchSpanProcessor.on_end`` and its ``BatchProcessor.emit`` read: the
# versions ``_batch_on_end`` repeats.
_BATCH_ON_END_NAMES = ("context", "trace_flags", "sampled", "_batch_processor", "emit")
_BATCH_EMIT_NAMES = (
    "_shutdown",
    "_logger",
    "info",
    "_exporting",
    "_metrics",
    "drop_items",
    "_pid",
    "os",
    "getpid",
    "_bsp_reset_once",
    "do_once",
    "_at_fork_reinit",
    "len",
    "_queue",
    "_max_queue_size",
    "warning",
    "appendleft",
    "_max_export_batch_size",
    "_worker_awaken",
    "is_set",
    "set",
)


def _batch_processor_class() -> Any:
    """The SDK's batch processor class, when its ``on_end`` and its queue's ``emit`` are the
    ones ``_batch_on_end`` repeats (else None)."""
    try:
        from opentelemetry.sdk._shared_internal import BatchProcessor
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:  # pragma: no cover - another SDK version
        return None
    on_end = BatchSpanProcessor.__dict__.get("on_end")
    emit = BatchProcessor.__dict__.get("emit")
    if (
        getattr(getattr(on_end, "__code__", None), "co_names", None) != _BATCH_ON_END_NAMES
        or getattr(getattr(emit, "__code__", None), "co_names", None) != _BATCH_EMIT_NAMES
    ):
        return None  # pragma: no cover - another SDK version: its own on_end
    return BatchSpanProcessor


_BATCH_CLASS = _batch_processor_class()
# This process's id, kept by a fork hook (the batch queue's check of its process, without a
# system call per span).
_PID = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _fast_on_end(processor: Any) -> Any:
    """``processor.on_end``, or what does the same for a lean span with less work (the SDK's
    simple and batch processors, as they are)."""
    if "on_end" in getattr(processor, "__dict__", ()):  # replaced on the instance: as it is
        return processor.on_end
    if _SIMPLE_PARTS is not None and type(processor) is _SIMPLE_PARTS[0]:
        return _simple_on_end(processor)
    if _BATCH_CLASS is not None and type(processor) is _BATCH_CLASS:
        queue_owner = getattr(processor, "_batch_processor", None)
        if hasattr(queue_owner, "__dict__") and "emit" not in vars(queue_owner):
            return _batch_on_end(processor)
    return processor.on_end


def _batch_on_end(processor: Any) -> Any:
    """``processor.on_end`` (the SDK's ``BatchSpanProcessor``) as the SDK does it, for a
    lean span: the span queued for the processor's thread, which is woken when a batch is
    full. Anything else than a sampled span into a queue with room, in the process that
    made the processor, goes through the SDK's own code (a full queue's drop and warning,
    a shut-down processor, a forked process)."""
    queue_owner = processor._batch_processor
    sdk_on_end = type(processor).on_end

    def on_end(span: Any) -> None:
        if not span._context[3] & 1:
            return
        queue = queue_owner._queue
        if (
            queue_owner._shutdown
            or queue_owner._pid != _PID[0]
            or len(queue) == queue_owner._max_queue_size
        ):
            sdk_on_end(processor, span)
            return
        queue.appendleft(span)
        if len(queue) >= queue_owner._max_export_batch_size:
            awaken = queue_owner._worker_awaken
            if not awaken.is_set():
                awaken.set()

    return on_end


def span_factory(tracer: Any) -> SpanFactory | None:
    """A ``SpanFactory`` for an SDK ``tracer``, or None (use ``tracer.start_span``)."""
    if os.environ.get(SDK_SPANS_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    try:
        from opentelemetry.sdk.trace import Tracer as SdkTracer
    except ImportError:  # pragma: no cover - the SDK is part of the [otel] extra
        return None
    if type(tracer) is not SdkTracer:  # a subclass may start spans its own way
        return None
    needed = ("sampler", "resource", "span_processor", "id_generator", "_span_limits")
    if not all(hasattr(tracer, name) for name in needed):  # pragma: no cover - another SDK
        return None
    return SpanFactory(tracer)


def _known_sampler(sampler: Any) -> str | None:
    """``"on"``: samples every span; ``"off"``: none; ``"parent"``: a child of a span of this
    process is sampled as its parent is (a root is asked); None: the sampler must be asked."""
    from opentelemetry.sdk.trace import sampling

    if sampler is sampling.ALWAYS_ON:
        return "on"
    if sampler is sampling.ALWAYS_OFF:
        return "off"
    if isinstance(sampler, sampling.ParentBased):  # parentbased_* (any root sampler)
        parts = (
            getattr(sampler, "_remote_parent_sampled", None),
            getattr(sampler, "_remote_parent_not_sampled", None),
            getattr(sampler, "_local_parent_sampled", None),
            getattr(sampler, "_local_parent_not_sampled", None),
        )
        on, off = sampling.ALWAYS_ON, sampling.ALWAYS_OFF
        if parts == (on, off, on, off) and type(sampler).should_sample is (
            sampling.ParentBased.should_sample
        ):
            return "parent"  # a root (or a remote parent's child) is still asked
    return None


def _root_always_on(sampler: Any) -> bool:
    from opentelemetry.sdk.trace import sampling

    return getattr(sampler, "_root", None) is sampling.ALWAYS_ON


class SpanFactory:
    """Starts ``LeanSpan``s for one SDK tracer (see the module docstring)."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        self._sampler = tracer.sampler
        self._known = _known_sampler(tracer.sampler)
        # child()'s decision: 1 always_on, 2 by the parent, 3 always_off, 0 ask the sampler.
        self._mode = {"on": 1, "parent": 2, "off": 3}.get(self._known or "", 0)
        # parentbased_always_on (the SDK's default): a root span is sampled without asking.
        self._root_on = self._known == "parent" and _root_always_on(tracer.sampler)
        self._processor = tracer.span_processor
        self._ids = tracer.id_generator
        self._resource = tracer.resource
        self._scope = getattr(tracer, "_instrumentation_scope", None)
        self._info = getattr(tracer, "instrumentation_info", None)
        limits = tracer._span_limits
        self._max_length: int | None = getattr(limits, "max_span_attribute_length", None)
        self._max_events: int | None = getattr(limits, "max_events", None)
        self._max_links: int | None = getattr(limits, "max_links", None)
        # The SDK's default generator's span id, drawn here (its method is one more call).
        self._random_ids: Any = self._ids if type(self._ids) is RandomIdGenerator else None
        self._random_bits = random.getrandbits
        random_ids = getattr(self._ids, "is_trace_id_random", None)
        self._random_root = bool(random_ids()) if callable(random_ids) else False
        self._random_flag = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
        # The processors' hooks, by the tuple of processors they were taken from (a processor
        # added later to the provider shows as a new tuple).
        self._sync = type(self._processor) is _SYNC_MULTI and isinstance(
            getattr(self._processor, "_span_processors", None), tuple
        )
        # The SDK's tracer configurator may turn a tracer off (then its own no-op spans).
        self._has_config = hasattr(tracer, "_tracer_config")
        self._procs: object = None
        self._starts: tuple[Any, ...] = ()
        self._endings: tuple[Any, ...] = ()
        self._ends: tuple[Any, ...] = ()
        # What a span's end calls: every ``_on_ending`` hook, then every ``on_end``; and the
        # one hook alone when there is only one (no loop, no iterator per span).
        self._finish: tuple[Any, ...] = ()
        self._finish_one: Any = None
        self._hooks()

    def _hooks(self) -> None:
        """The hooks to call, without the processors' known no-ops (``on_start`` and
        ``_on_ending`` of the SDK's simple and batch processors)."""
        multi = self._processor
        procs = getattr(multi, "_span_processors", None)
        if not self._sync or not isinstance(procs, tuple):
            # Another multi-processor (e.g. the concurrent one): its own hooks, as they are.
            self._procs = multi
            ending = getattr(multi, "_on_ending", None)
            self._starts = (multi.on_start,)
            self._endings = (ending,) if callable(ending) else ()
            self._ends = (multi.on_end,)
            self._set_finish()
            return
        self._procs = procs
        self._starts = tuple(p.on_start for p in procs if type(p).on_start not in _NOOP_HOOKS)
        self._endings = tuple(
            p._on_ending
            for p in procs
            if callable(getattr(p, "_on_ending", None)) and type(p)._on_ending not in _NOOP_HOOKS
        )
        self._ends = tuple(_fast_on_end(p) for p in procs)
        self._set_finish()

    def _set_finish(self) -> None:
        self._finish = (*self._endings, *self._ends)
        self._finish_one = self._finish[0] if len(self._finish) == 1 else None

    def start_span(
        self,
        name: str,
        context: Any = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        owned: bool = False,
    ) -> Any:
        """``Tracer.start_span`` (``owned``: ``attributes`` is a dict made for this span, kept
        as it is, not copied)."""
        if self._has_config and not self._tracer._tracer_config.is_enabled:
            return self._tracer.start_span(name, context, kind, attributes, links, start_time)
        # A SpanContext is a tuple: (trace_id, span_id, is_remote, trace_flags, trace_state,
        # is_valid), read by index here (its properties are one call each).
        current = (
            _CONTEXT_VAR.get().get(_SPAN_KEY)
            if context is None and _CONTEXT_VAR is not None
            else current_span(context)
        )
        parent: Any = (
            None
            if current is None
            else current._context
            if type(current) is LeanSpan
            else current.get_span_context()
            if isinstance(current, trace_api.Span)
            else None
        )
        ids = self._ids
        if parent is None or not parent[5]:
            parent = None
            # The SDK's default generator's trace id, drawn here (0, invalid, is drawn again
            # by the generator).
            trace_id = (
                self._random_bits(128) if ids is self._random_ids else 0
            ) or ids.generate_trace_id()
            random_id = self._random_root
            parent_flags = 0
        else:
            trace_id = parent[0]
            parent_flags = parent[3]
            random_id = bool(parent_flags & self._random_flag)
        known = self._known
        if known is not None and (
            known != "parent"
            or (parent is not None and not parent[2])
            or (parent is None and self._root_on)
        ):
            # ALWAYS_ON or ALWAYS_OFF, or a child of a span of this process under a sampler
            # that follows such a parent's decision (parentbased_*), or a root under
            # parentbased_always_on (the SDK's default): the answer is known.
            sampled = recording = known == "on" or (
                known == "parent" and (parent is None or bool(parent_flags & 1))
            )
            attrs: Any = attributes if owned else dict(attributes) if attributes else {}
            trace_state = parent[4] if parent is not None else _EMPTY_STATE
        else:
            result = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled = result.decision.is_sampled()
            recording = result.decision.is_recording()
            attrs = dict(result.attributes) if result.attributes else {}
            trace_state = result.trace_state if result.trace_state is not None else _EMPTY_STATE
        flags = _FLAGS[(1 if sampled else 0) | (self._random_flag if random_id else 0)]
        span_id = (
            self._random_bits(64) if ids is self._random_ids else 0
        ) or ids.generate_span_id()
        # What SpanContext(...) builds, without its checks: the ids come from the tracer's id
        # generator (never 0, in range) or from a valid parent.
        span_context = tuple.__new__(
            SpanContext,
            (trace_id, span_id, False, flags, trace_state, True),
        )
        if not recording:
            return trace_api.NonRecordingSpan(span_context)
        span = LeanSpan(self, name, span_context, parent, kind, attrs, links)
        span._start_time = start_time if start_time is not None else time_ns()
        span._end_time = None  # (read on the fast path: see child)
        if not record_exception:
            span._record_exception = False
        if not set_status_on_exception:
            span._set_status_on_exception = False
        if (self._processor._span_processors if self._sync else self._processor) is not self._procs:
            self._hooks()
        if self._starts:
            for hook in self._starts:
                hook(span, parent_context=context)
        return span

    def child(
        self,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        owned: bool = False,
        recorded_only: bool = False,
    ) -> tuple[Any, Any] | None:
        """``start_span(name, kind=kind, attributes=attributes)`` as a child of the current
        span, made current: (the span, its context token; ``detach`` it before the span ends).
        The run's own spans (model calls, tool calls, store writes), made without the general
        path's choices. ``attributes`` is kept, not copied: ``owned``, a dict made for this
        span (its own, written in place); else a dict no one writes to (copied by the span's
        first write). None when that path is needed (no span of this process
        is current, a sampler that must be asked, a tracer turned off; ``recorded_only``: a
        child that would not be recorded): then call ``start_span``.

        The decisions are the sampler's where its answer is known: under ``always_on`` the
        child is sampled, under ``always_off`` it is not, under ``parentbased_always_on`` (the
        SDK default) it follows its parent; in the parent's trace, with its trace state and
        its random-id flag. A child that is not sampled is the API's ``NonRecordingSpan`` with
        a span id of its own, as the SDK makes it (its processors never see it)."""
        values = _CONTEXT_VAR.get()
        current = values.get(_SPAN_KEY)
        of = type(current)
        if of is LeanSpan:
            if current._end_time is not None:
                return None
            # What its children share, decided once per parent (the run's spans have one).
            decided = current._children
            if decided is None or decided[0] is not self:
                decided = current._children = self._decide(current._context)
        elif of is trace_api.NonRecordingSpan:
            decided = self._decide(current._context)
        else:
            return None
        # (this factory, the parent's context, trace id, the child's flags, trace state,
        # sampled), or None: the general path decides (an invalid or remote parent, a sampler
        # that must be asked).
        if decided is None:
            return None
        _, parent, trace_id, flags, trace_state, sampled = decided
        if (recorded_only and not sampled) or (
            self._has_config and not self._tracer._tracer_config.is_enabled
        ):
            return None
        ids = self._ids
        span_id = (
            self._random_bits(64) if ids is self._random_ids else 0
        ) or ids.generate_span_id()
        # What SpanContext(...) builds, without its checks (see start_span).
        span_context = tuple.__new__(
            SpanContext, (trace_id, span_id, False, flags, trace_state, True)
        )
        if sampled:
            span: Any = _new(LeanSpan)
            span._name = name
            span._context = span_context
            span._parent = parent
            span._kind = kind
            # Kept as it is, not copied: a dict of the caller's that nothing writes to (a
            # tracer's static attributes, shared by its spans) is copied by the first write;
            # an ``owned`` one is the span's own.
            span._attributes = attributes
            span._own = owned
            span._factory = self
            span._start_time = time_ns()
            # Read again before the span ends: an attribute of its own is read on the fast
            # path, the class's default is not.
            span._end_time = None
            procs = self._processor._span_processors if self._sync else self._processor
            if procs is not self._procs:
                self._hooks()
            if self._starts:
                for hook in self._starts:
                    hook(span, parent_context=None)
        else:
            span = trace_api.NonRecordingSpan(span_context)
        if len(values) == 1:  # the span alone: a context of the new one alone
            made = Context({_SPAN_KEY: span})
        else:
            made = Context(values)
            dict.__setitem__(made, _SPAN_KEY, span)  # a Context refuses item writes
        return span, _CONTEXT_VAR.set(made)

    def _decide(self, parent: Any) -> tuple[Any, ...] | None:
        """What every child of a span with context ``parent`` shares: (this factory,
        ``parent``, trace id, flags, trace state, sampled); None: ``start_span`` decides."""
        if not parent[5]:  # an invalid parent: a root, the general path's
            return None
        mode = self._mode
        if mode == 1:
            sampled = True
        elif mode == 2 and not parent[2]:  # a local parent (a remote one: asked)
            sampled = bool(parent[3] & 1)
        elif mode == 3:
            sampled = False
        else:
            return None
        flags = parent[3]  # the parent's, unless the sampled bit differs
        if sampled is not bool(flags & 1):
            flags = _FLAGS[(1 if sampled else 0) | (flags & self._random_flag)]
        return (self, parent, parent[0], flags, parent[4], sampled)


_new = object.__new__


def current_span(context: Any = None) -> Any:
    """``opentelemetry.trace.get_current_span``, reading the context's span directly."""
    if _CONTEXT_VAR is None:  # pragma: no cover - another API version or runtime context
        return trace_api.get_current_span(context)
    span = (context if context is not None else _CONTEXT_VAR.get()).get(_SPAN_KEY)
    if span is None:
        return trace_api.INVALID_SPAN
    if type(span) is LeanSpan or isinstance(span, trace_api.Span):
        return span
    return trace_api.INVALID_SPAN


def attach_span(span: Any) -> Any:
    """``context.attach(trace.set_span_in_context(span))``: ``span`` current until detached."""
    if _CONTEXT_VAR is None:  # pragma: no cover - another API version or runtime context
        return _attach(trace_api.set_span_in_context(span))
    values = Context(_CONTEXT_VAR.get())
    dict.__setitem__(values, _SPAN_KEY, span)  # a Context refuses item writes: a new one
    return _CONTEXT_VAR.set(values)


def detach(token: Any) -> None:
    """``context.detach``: what was current before ``token``'s attach is current again (a
    token of another context is logged, as the API logs it, not raised)."""
    if _CONTEXT_VAR is None:  # pragma: no cover - another API version or runtime context
        _detach(token)
        return
    try:
        _CONTEXT_VAR.reset(token)
    except Exception:
        _log.exception("Failed to detach context")


_SIMPLE = frozenset({str, bool, int, float})


def _checked(key: str, value: Any) -> Any:
    """``value`` as an attribute value (a sequence of one simple type becomes a tuple), or
    None: not a valid attribute value (dropped, as the SDK drops it, with a log line)."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        kinds = {type(v) for v in value if v is not None}
        if len(kinds) <= 1 and kinds <= _SIMPLE:
            return tuple(value)
    _log.warning("invalid span attribute %r dropped: a %s", key, type(value).__name__)
    return None


def _clean(value: Any, max_length: int | None) -> Any:
    if isinstance(value, list):
        value = tuple(value)
    if max_length is not None:
        if isinstance(value, str):
            return value[:max_length]
        if isinstance(value, tuple):
            return tuple(v[:max_length] if isinstance(v, str) else v for v in value)
    return value


class LeanSpan(trace_api.Span, ReadableSpan):
    """A recording span that is its own ``ReadableSpan`` once it ends."""

    # What most spans keep as they start, as class attributes (a span sets its own only when it
    # changes one): fewer writes per span, and a smaller instance.
    _events: Sequence[Event] = ()  # a list once an event is added
    _links: Sequence[Link] = ()
    _status = _UNSET
    _start_time: int | None = None
    _end_time: int | None = None
    _record_exception = True
    _set_status_on_exception = True
    # Whether ``_attributes`` is this span's own dict, written in place by the event loop's
    # thread until the span ends (False: a dict it shares, e.g. a tracer's static attributes,
    # copied by the first write).
    _own = False
    # What its children share (``SpanFactory.child``), once one was started.
    _children: tuple[Any, ...] | None = None

    # ReadableSpan's fields that are the same for every span of a tracer: read from its factory.
    @property
    def _resource(self) -> Any:  # type: ignore[override]
        return self._factory._resource

    @property
    def _instrumentation_scope(self) -> Any:  # type: ignore[override]
        return self._factory._scope

    @property
    def _instrumentation_info(self) -> Any:  # type: ignore[override]
        return self._factory._info

    def __init__(
        self,
        factory: SpanFactory,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[Link],
    ) -> None:
        # ReadableSpan's fields, set directly (its __init__ would build a Resource by default).
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._own = True
        if links:
            self._links = links
        self._factory = factory

    def __repr__(self) -> str:
        return f"LeanSpan(name={self._name!r}, context={self._context!r})"

    # -- trace_api.Span ----------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]  # always set (ReadableSpan: optional)

    def is_recording(self) -> bool:
        return self._end_time is None

    # A write through the API (any thread) makes a new dict and never changes the one the span
    # had: once the span ends, an exporter's thread reads that dict while a late write (from
    # a tool's thread that outlived its call) may still be under way. Two writes racing with
    # each other may keep only one of them (the SDK takes a lock for each write instead).

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is None:
            mine: dict[str, Any] = dict(self._attributes or {})
            for key, value in attributes.items():
                if type(value) not in _SIMPLE:
                    value = _checked(key, value)
                    if value is None:
                        continue
                mine[key] = value
            self._attributes = mine

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_time is None:
            if type(value) not in _SIMPLE:
                value = _checked(key, value)
                if value is None:
                    return
            self._attributes = {**(self._attributes or {}), key: value}

    def writable(self) -> dict[str, Any]:
        """The span's attribute dict, to write valid values into from the event loop's thread
        before the span ends (its own: a shared one is copied first)."""
        attributes: dict[str, Any] = self._attributes  # type: ignore[assignment]
        if not self._own:
            attributes = self._attributes = dict(attributes)
            self._own = True
        return attributes

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is not None:
            return
        limit = self._factory._max_events
        if limit is not None and len(self._events) >= limit:
            return
        attrs = None
        if attributes:
            attrs = {}
            for key, value in attributes.items():
                value = _checked(key, value)
                if value is not None:
                    attrs[key] = value
        event = Event(name, attrs, timestamp if timestamp is not None else time_ns())
        self._events = [*self._events, event]

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._end_time is not None or context is None or not context.is_valid:
            return
        limit = self._factory._max_links
        if limit is not None and len(self._links) >= limit:
            return
        self._links = [*self._links, Link(context, attributes)]

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return  # OK is final, as in the SDK
        if isinstance(status, Status):
            self._status = status
        else:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        stacktrace = "".join(
            traceback.format_exception(type(exception), exception, exception.__traceback__)
        )
        attrs: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": stacktrace,
            "exception.escaped": str(escaped),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return  # ended already: the SDK only warns
        factory = self._factory
        max_length = factory._max_length
        # What exporters read is the dict as it is: nothing writes to it from now on (the
        # API's writes make a new dict, the loop's own writes come before end()).
        if max_length is not None:
            attributes: Any = self._attributes
            self._attributes = {k: _clean(v, max_length) for k, v in attributes.items()}
        self._end_time = end_time if end_time is not None else time_ns()
        if (
            factory._processor._span_processors if factory._sync else factory._processor
        ) is not factory._procs:
            factory._hooks()
        one = factory._finish_one
        if one is not None:
            one(self)
        else:
            for hook in factory._finish:
                hook(self)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {exc_val}"))
        self.end()
