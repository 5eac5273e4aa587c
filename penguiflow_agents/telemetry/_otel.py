"""OpenTelemetry: a tracer provider from the standard ``OTEL_*`` variables, GenAI spans, W3C context.

Imported only when tracing is on (extra ``[otel]``). Span names and attributes
follow the OpenTelemetry GenAI semantic conventions:

- ``invoke_agent``: one run, or one resume of it (a resume is a child of the
  span that paused it, in the run's trace, and also links to it; the context
  that triggered the resume is a ``resumed_by`` link); ``gen_ai.operation.name``, ``gen_ai.agent.name``,
  ``gen_ai.request.model``, ``gen_ai.conversation.id``, token usage, and
  ``penguiflow.run.id`` / ``penguiflow.tenant`` / ``penguiflow.run.status``;
- ``chat {model}``: one model call; ``gen_ai.request.model``,
  ``gen_ai.provider.name`` (and the older ``gen_ai.system``),
  ``gen_ai.usage.input_tokens`` / ``output_tokens``, ``gen_ai.response.finish_reasons``;
- ``execute_tool {tool}``: one tool call; ``gen_ai.tool.name``,
  ``gen_ai.tool.call.id``, ``penguiflow.tool.source``, ``penguiflow.tool.outcome``
  (retries are span events);
- ``approval_wait {tool}``: from an approval request to its decision;
- ``store {operation}``: a write to the state store, inside a run.

Message contents (prompts, answers, tool arguments and results) are recorded
only when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from penguiflow_agents.exceptions import ConfigError
from penguiflow_agents.telemetry._spans import (
    _CONTEXT_VAR,
    _EMPTY_STATE,
    LeanSpan,
    attach_span,
    current_span,
    detach,
    span_factory,
)

__all__ = ["CAPTURE_ENV", "Tracing", "tracer_provider_from_env"]

_log = logging.getLogger(__name__)
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
TRACER_NAME = "penguiflow_agents"
DEFAULT_SERVICE_NAME = "penguiflow-agents"
AGENT_NAME = "penguiflow-agents"
_PROPAGATOR = TraceContextTextMapPropagator()
# Span kinds, read once: an enum member read through its class costs ten local reads.
_CLIENT = SpanKind.CLIENT
_INTERNAL = SpanKind.INTERNAL


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def tracer_provider_from_env() -> Any:
    """A ``TracerProvider`` as the standard ``OTEL_*`` variables ask, or None when they do not.

    Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``,
    ``console``; ``none`` is off) or an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` is
    set, and ``OTEL_SDK_DISABLED`` is not true. The exporter reads its own
    variables (endpoint, headers, timeout); only OTLP over HTTP/protobuf is shipped.
    """
    env = os.environ
    if _env_true("OTEL_SDK_DISABLED"):
        return None
    names_text = env.get("OTEL_TRACES_EXPORTER")
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if names_text is None and not endpoint:
        return None
    names = [n.strip().lower() for n in (names_text or "otlp").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:  # pragma: no cover - the [otel] extra is missing
        raise ConfigError(
            "environment",
            "OTEL_TRACES_EXPORTER",
            "traces are asked for, but the OpenTelemetry SDK is not installed; "
            "install the extra: pip install 'penguiflow-agents[otel]'",
        ) from None
    attributes: dict[str, Any] = {}
    if not env.get("OTEL_SERVICE_NAME") and "service.name" not in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol != "http/protobuf":
                raise ConfigError(
                    "environment",
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    f"{protocol!r} is not supported; penguiflow-agents ships the OTLP exporter "
                    "over HTTP: use 'http/protobuf' (port 4318)",
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":  # stdout is for results: spans go to stderr
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        else:
            raise ConfigError(
                "environment",
                "OTEL_TRACES_EXPORTER",
                f"{name!r} is not an exporter penguiflow-agents ships; use 'otlp', 'console' "
                "or 'none'",
            )
    return provider


def provider_name(model: str) -> str:
    """``gen_ai.provider.name`` from a litellm model name (``openai/gpt-4.1`` -> ``openai``)."""
    if model.startswith("replay"):
        return "replay"
    head, sep, _ = model.partition("/")
    return head if sep else "openai"


class Tracing:
    """Spans for one process: a tracer and whether message contents are recorded."""

    def __init__(self, provider: Any = None, *, capture_content: bool | None = None) -> None:
        self.tracer = (
            provider.get_tracer(TRACER_NAME)
            if provider is not None
            else trace.get_tracer(TRACER_NAME)
        )
        self.capture = _env_true(CAPTURE_ENV) if capture_content is None else capture_content
        # The run's own spans through the lean path when the tracer is the SDK's (_spans.py).
        factory = span_factory(self.tracer)
        self._factory = factory
        self._start = factory.start_span if factory is not None else self.tracer.start_span
        # A current child span in one step (None: start, then attach).
        self.child = factory.child if factory is not None and _CONTEXT_VAR is not None else None
        # Span names and attributes that do not change from call to call, per model and per
        # registered tool (bounded by the process's configuration).
        self._chat_static: dict[str, tuple[str, dict[str, Any]]] = {}
        self._tool_static: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._store_static: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._providers: dict[str, str] = {}  # model -> gen_ai.provider.name

    # -- context -----------------------------------------------------------------------------

    @staticmethod
    def carrier(span: Any = None) -> dict[str, str]:
        """The W3C trace context (``traceparent``, ``tracestate``) of ``span`` or the current one.

        Formatted here as the W3C propagator does (it is on every tool call's path, and the
        propagator builds a context and walks its fields for the same two headers)."""
        sc = (span if span is not None else current_span()).get_span_context()
        # (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid): a tuple.
        trace_id, span_id, _, flags, state, valid = sc
        if not valid:
            return {}
        out = {"traceparent": _traceparent(_hex32(trace_id), span_id, flags)}
        if state is not _EMPTY_STATE and state:
            out["tracestate"] = state.to_header()
        return out

    @staticmethod
    def ids(span: Any) -> tuple[str | None, dict[str, str]]:
        """``(trace_id(span), carrier(span))`` in one pass (once per run)."""
        trace_id, span_id, _, flags, state, valid = span.get_span_context()
        if not valid:
            return None, {}
        hex_id = _hex32(trace_id)
        out = {"traceparent": _traceparent(hex_id, span_id, flags)}
        if state is not _EMPTY_STATE and state:
            out["tracestate"] = state.to_header()
        return hex_id, out

    @staticmethod
    def extract(carrier: Mapping[str, str]) -> Any:
        return _PROPAGATOR.extract(dict(carrier))

    # Make ``span`` current (its token) / restore what was current (called on every span).
    attach = staticmethod(attach_span)
    detach = staticmethod(detach)

    @staticmethod
    def recording() -> bool:
        """Whether a span is being recorded in this context (store spans only nest in one)."""
        return bool(current_span().is_recording())

    @staticmethod
    def current_event(name: str, attributes: Mapping[str, Any]) -> None:
        span = current_span()
        if span.is_recording():
            span.add_event(name, dict(attributes))

    # -- spans ---------------------------------------------------------------------------------

    def invoke_agent(
        self,
        *,
        run_id: str,
        tenant: str,
        model: str,
        resumed: bool,
        session_id: str | None,
        carrier: Mapping[str, str],
        link: Mapping[str, str],
    ) -> Any:
        parent = self.extract(carrier) if carrier else None
        links = []
        if link:
            paused_by = self.extract(link)
            linked = trace.get_current_span(paused_by).get_span_context()
            if linked.is_valid:
                links.append(Link(linked, {"penguiflow.link": "paused_by"}))
                # The run's trace goes on: the resume is a child of the span that paused it,
                # under the same trace id however late the decision came; the context that
                # triggered the resume (a request, a bus job), if any, is linked instead.
                if carrier:
                    by = trace.get_current_span(parent).get_span_context()
                    if by.is_valid and by.trace_id != linked.trace_id:
                        links.append(Link(by, {"penguiflow.link": "resumed_by"}))
                parent = paused_by
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": AGENT_NAME,
            "gen_ai.request.model": model,
            "gen_ai.provider.name": self._providers.get(model) or self._provider(model),
            "penguiflow.run.id": run_id,
            "penguiflow.tenant": tenant,
            "penguiflow.run.resumed": resumed,
        }
        if session_id:
            attributes["gen_ai.conversation.id"] = session_id
        if self._factory is not None:  # a lean span keeps the dict made here
            return self._factory.start_span(
                "invoke_agent", parent, _INTERNAL, attributes, links, owned=True
            )
        return self._start(
            "invoke_agent",
            context=parent,
            kind=_INTERNAL,
            attributes=attributes,
            links=links,
        )

    def _provider(self, model: str) -> str:
        provider = self._providers[model] = provider_name(model)
        return provider

    @staticmethod
    def end_run(span: Any, status: str, error: str | None, usage: tuple[int, int]) -> None:
        lean = type(span) is LeanSpan
        if span._end_time is None if lean else span.is_recording():  # else nothing to build
            # A string and numbers: valid as they are, written straight into a lean span.
            attributes: dict[str, Any] = span.writable() if lean else {}
            attributes["penguiflow.run.status"] = status
            attributes["gen_ai.usage.input_tokens"] = usage[0]
            attributes["gen_ai.usage.output_tokens"] = usage[1]
            if status in ("failed", "cancelled"):
                attributes["error.type"] = status
                span.set_status(Status(StatusCode.ERROR, error or status))
            if not lean:
                span.set_attributes(attributes)
        span.end()

    @contextlib.contextmanager
    def activity(
        self, name: str, carrier: Mapping[str, str], attributes: Mapping[str, Any]
    ) -> Iterator[Any]:
        """A current span ``name`` (a Temporal activity: model turn or tool call) whose parent
        is the run's trace context ``carrier`` (none: a root span)."""
        token = otel_context.attach(self.extract(carrier)) if carrier else None
        try:
            with self.tracer.start_as_current_span(
                name, kind=_INTERNAL, attributes=dict(attributes)
            ) as span:
                yield span
        finally:
            if token is not None:
                otel_context.detach(token)

    def _open(self, name: str, kind: SpanKind, attributes: Mapping[str, Any]) -> tuple[Any, Any]:
        """A span ``name`` started through the general path and made current (when ``child``
        declined or there is none): (the span, its context token)."""
        span = self._start(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        return span, attach_span(span)

    def open_chat(self, model: str, messages: Any, *, tried: bool = False) -> tuple[Any, Any]:
        """A ``chat {model}`` span, current until ``end_chat`` (or ``fail``) is given its
        token: the client's own spans (e.g. HTTP) nest in it. (The span, its context token.)
        ``tried``: ``child`` already declined these attributes (not asked again)."""
        static = self._chat_static.get(model)
        name, attributes = (
            static
            if static is not None and not self.capture
            else self._chat_attributes(model, messages)
        )
        child = self.child
        if child is not None and not (tried and static is not None and not self.capture):
            opened = child(name, _CLIENT, attributes)
            if opened is not None:
                return opened
        return self._open(name, _CLIENT, attributes)

    def chat_static(self, model: str) -> tuple[str, Mapping[str, Any]] | None:
        """The name and attributes of every ``chat {model}`` span, for ``child`` to start one
        with (None: ``open_chat`` is needed: no lean path, or message contents recorded)."""
        if self.child is None or self.capture:
            return None
        return self._chat_attributes(model, ())

    def _chat_attributes(self, model: str, messages: Any) -> tuple[str, Mapping[str, Any]]:
        static = self._chat_static.get(model)
        if static is None:
            provider = provider_name(model)
            static = self._chat_static[model] = (
                f"chat {model}",
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.provider.name": provider,
                    "gen_ai.system": provider,
                },
            )
        name, attributes = static
        if self.capture:
            attributes = {
                **attributes,
                "gen_ai.input.messages": _json([_no_image_data(m) for m in messages]),
            }
        # The span copies the attributes: one dict per model serves every call.
        return name, attributes

    def chat(self, model: str, messages: Any) -> Any:
        """A ``chat {model}`` span, not made current (a stream's: it spans the consumer's
        code between items)."""
        name, attributes = self._chat_attributes(model, messages)
        return self._start(
            name,
            kind=_CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def end_chat(self, span: Any, response: Any, token: Any = None) -> None:
        """``span`` ended with ``response``; ``token``: what ``open_chat`` made current, no longer
        current."""
        lean = type(span) is LeanSpan
        if not _ending(span, token, lean):
            return
        usage = response.usage
        reason = response.finish_reason or ("tool_calls" if response.tool_calls else "stop")
        # One tuple per reason, kept: a span's attributes then hold nothing the garbage
        # collector must track (a new tuple would make its dict tracked until a full collection).
        reasons = _REASONS.get(reason)
        if reasons is None:
            reasons = (reason,) if len(_REASONS) > 64 else _REASONS.setdefault(reason, (reason,))
        # Strings, numbers and a tuple of strings built here: valid as they are, written
        # straight into a lean span (into a copy of the model's static attributes it shares:
        # the one copy its attributes need).
        attributes: dict[str, Any] = (
            {
                **span._attributes,
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "gen_ai.response.finish_reasons": reasons,
            }
            if lean
            else {
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "gen_ai.response.finish_reasons": reasons,
            }
        )
        if lean:
            span._attributes = attributes
            span._own = True
        if response.model:
            attributes["gen_ai.response.model"] = response.model
        if response.cost_usd is not None:
            attributes["penguiflow.cost_usd"] = float(response.cost_usd)
        if not lean:
            span.set_attributes(attributes)  # one lock and one pass, not one per attribute
        if self.capture:
            out = {
                "role": "assistant",
                "content": response.content,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments}
                    for c in response.tool_calls
                ],
            }
            span.set_attribute("gen_ai.output.messages", _json([out]))
        span.end()

    @staticmethod
    def fail(span: Any, exc: BaseException, token: Any = None) -> None:
        if token is not None:
            _detach_now(token)
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()

    def open_tool(
        self,
        name: str,
        source: str,
        call_id: str | None,
        arguments: Any,
        known: bool = True,
        *,
        tried: bool = False,
    ) -> tuple[Any, Any]:
        """An ``execute_tool {name}`` span, current until ``end_tool`` (or ``fail``) is given
        its token: the tool's own spans and retry events go in it. ``known``: a registered
        tool (its span name and static attributes are kept for the next call; a name the
        model made up is not). (The span, its context token.) ``tried``: ``child`` already
        declined the common case's attributes (not asked again)."""
        static = self._tool_static.get((name, source)) if known else None
        attributes: Mapping[str, Any]
        if static is not None and call_id and not self.capture:
            # The common case, inlined (once per tool call): the static attributes and the id,
            # in a dict of its own that the span takes as it is.
            span_name, attributes = static[0], {**static[1], "gen_ai.tool.call.id": call_id}
            owned = True
        else:
            span_name, attributes = self._tool_attributes(name, source, call_id, arguments, known)
            owned = tried = False
        child = self.child
        if child is not None and not tried:
            opened = child(span_name, _INTERNAL, attributes, owned)
            if opened is not None:
                return opened
        return self._open(span_name, _INTERNAL, attributes)

    def tool_static(self, name: str, source: str) -> tuple[str, Mapping[str, Any]]:
        """The name and attributes of every ``execute_tool {name}`` span of registered tool
        ``name`` (without the call id)."""
        return self._tool_attributes(name, source, None, None, True)

    def _tool_attributes(
        self, name: str, source: str, call_id: str | None, arguments: Any, known: bool
    ) -> tuple[str, Mapping[str, Any]]:
        static = self._tool_static.get((name, source)) if known else None
        if static is None:
            static = (
                f"execute_tool {name}",
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": name,
                    "gen_ai.tool.type": "function",
                    "penguiflow.tool.source": source,
                },
            )
            if known:
                self._tool_static[(name, source)] = static
        span_name, attributes = static
        if call_id or self.capture:
            attributes = dict(attributes)
            if call_id:
                attributes["gen_ai.tool.call.id"] = call_id
            if self.capture:
                attributes["gen_ai.tool.call.arguments"] = _json(arguments)
        return span_name, attributes

    def end_tool(self, span: Any, result: Any, token: Any = None) -> None:
        """``span`` ended with ``result``; ``token``: what ``open_tool`` made current, no longer
        current."""
        lean = type(span) is LeanSpan
        if not _ending(span, token, lean):
            return
        outcome = result.outcome
        if lean:  # a string and a number: valid as they are
            attributes = span._attributes if span._own else span.writable()
            attributes["penguiflow.tool.outcome"] = outcome
            attributes["penguiflow.tool.attempts"] = int(result.attempts)
        else:
            span.set_attributes(
                {
                    "penguiflow.tool.outcome": outcome,
                    "penguiflow.tool.attempts": int(result.attempts),
                }
            )
        if not result.ok:
            span.set_attribute("error.type", outcome)
            span.set_status(Status(StatusCode.ERROR, outcome))
        elif self.capture:
            span.set_attribute("gen_ai.tool.call.result", _json(result.output))
        span.end()

    def approval_wait(
        self,
        parent: Any,
        *,
        tool: str,
        approval_id: str,
        status: str,
        requested_at: float,
        decided_at: float,
    ) -> None:
        span = self._start(
            f"approval_wait {tool}",
            context=trace.set_span_in_context(parent),
            kind=_INTERNAL,
            start_time=int(requested_at * 1e9),
            attributes={
                "gen_ai.tool.name": tool,
                "penguiflow.approval.id": approval_id,
                "penguiflow.approval.outcome": status,
            },
        )
        span.end(end_time=int(max(decided_at, requested_at) * 1e9))

    def open_store(self, operation: str, system: str, *, tried: bool = False) -> tuple[Any, Any]:
        """A ``store {operation}`` span, current until ``end_store`` (or ``fail``) is given its
        token: a database client's own spans nest in it. (The span, its context token; (None,
        None) outside a recorded span: store writes are traced only inside a run.) ``tried``:
        ``child`` already declined (not asked again)."""
        static = self.store_static(operation, system)
        child = self.child
        if child is not None and not tried:
            opened = child(static[0], _CLIENT, static[1], False, True)
            if opened is not None:
                return opened
        if not self.recording():  # a write outside a run's trace: no span
            return None, None
        return self._open(static[0], _CLIENT, static[1])

    def store_static(self, operation: str, system: str) -> tuple[str, dict[str, Any]]:
        """The name and attributes of every ``store {operation}`` span."""
        static = self._store_static.get((operation, system))
        if static is None:
            static = self._store_static[(operation, system)] = (
                f"store {operation}",
                {"db.system.name": system, "db.operation.name": operation},
            )
        return static

    @staticmethod
    def end_store(span: Any, token: Any) -> None:
        try:  # _detach_now, inlined (once per store write)
            _RESET(token)
        except Exception:
            _log.exception("Failed to detach context")
        span.end()

    @staticmethod
    def trace_id(span: Any) -> str | None:
        ctx = span.get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else None


# finish reason -> (reason,): the value of ``gen_ai.response.finish_reasons`` (a few per
# provider; past 64, a new tuple each time).
_REASONS: dict[str, tuple[str]] = {}
# Hex digits of ids through bytes: half the work of a format spec or printf-style formatting.
_FLAG_HEX = tuple(f"{flags:02x}" for flags in range(256))


def _hex32(trace_id: int) -> str:
    """``f"{trace_id:032x}"``."""
    return trace_id.to_bytes(16, "big").hex()


def _traceparent(hex_id: str, span_id: int, flags: int) -> str:
    """A W3C ``traceparent`` (version 00) of a trace id already in hex."""
    return "-".join(("00", hex_id, span_id.to_bytes(8, "big").hex(), _FLAG_HEX[flags]))


def _ending(span: Any, token: Any, lean: bool) -> bool:
    """Before ``span`` gets its last attributes: ``token`` detached (if any); False when the
    span records nothing (sampled out, or ended already): it is ended, nothing to build."""
    if token is not None:
        try:
            _RESET(token)
        except Exception:
            _log.exception("Failed to detach context")
    if span._end_time is None if lean else span.is_recording():
        return True
    span.end()
    return False


def _detach_now(token: Any) -> None:
    """``detach(token)``: a token of another context is logged, as the API logs it, not
    raised (inlined where a span ends)."""
    try:
        _RESET(token)
    except Exception:
        _log.exception("Failed to detach context")


# What makes a token's context current again (the API's detach without its layers, when its
# runtime context is the default one).
_RESET: Any = _CONTEXT_VAR.reset if _CONTEXT_VAR is not None else detach


def _no_image_data(message: Any) -> Any:
    """A message with the base64 of its images left out (a span attribute is no image store)."""
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return message
    parts = []
    for part in content:
        url = part.get("image_url", {}).get("url") if isinstance(part, dict) else None
        if isinstance(url, str) and url.startswith("data:"):
            head, _, data = url.partition(",")
            part = {**part, "image_url": {"url": f"{head},<{len(data)} base64 characters>"}}
        parts.append(part)
    return {**message, "content": parts}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
