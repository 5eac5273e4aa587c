"""The litellm adapter: any litellm model behind ``LLMClient``.

Native tool calling with provider-safe wire names (translated both ways
here, so nothing else sees them), usage and cost per call, a timeout per
call, retries with exponential backoff and jitter on 429/5xx/connection
errors, and JSON actions for models litellm reports as lacking function
calling. litellm exceptions are translated into ``LLMError`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import warnings
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from penguiflow_agents._retry import backoff_delay, parse_retry_after
from penguiflow_agents.exceptions import LLMError
from penguiflow_agents.llm._args import parse_tool_arguments
from penguiflow_agents.llm._json_actions import json_action_messages, parse_json_action
from penguiflow_agents.llm._litellm_fast import OpenAIClients, quiet_logging
from penguiflow_agents.llm._litellm_import import load_litellm, load_litellm_async
from penguiflow_agents.llm._names import WireNames
from penguiflow_agents.llm._script import turn_index
from penguiflow_agents.llm._types import (
    ChatMessage,
    LLMRequest,
    LLMResponse,
    LLMToolCall,
    TextDelta,
    Usage,
    check_client_options,
)
from penguiflow_agents.tools._types import ToolSpec

if TYPE_CHECKING:
    from penguiflow_agents.llm._openai import OpenAIClient

__all__ = ["LiteLLMClient", "ToolCalling", "native_tool_call"]

logger = logging.getLogger("penguiflow_agents.llm")

ToolCalling = Literal["auto", "native", "json"]
StructuredOutput = Literal["auto", "native", "tool"]

# Extra time past the provider timeout before we stop waiting ourselves.
_TIMEOUT_GRACE_S = 5.0
# How much of a provider error message an LLMError quotes.
_ERROR_CHARS = 600
# Message keys a provider accepts; anything else the caller keeps is not sent.
_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})
# Shorter "keys" (the replay model's "replay") are not secrets and not redacted.
_MIN_SECRET_CHARS = 8
# litellm's "litellm.BadRequestError: OpenAIException - " in front of the provider's message.
_LITELLM_PREFIX = re.compile(
    r"^(?:litellm\.\w+:\s*)?(?:\w+Error:\s*)?(?:\w+(?:Exception|Error)\s*-\s*)?"
)
# How the replay model's script errors begin (see _script.match_failure / past_end_message).
_REPLAY_SCRIPT_ERROR = "replay script"
# HTTP statuses worth another attempt.
_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class LiteLLMClient:
    """An ``LLMClient`` for any litellm model name (``openai/gpt-4.1-mini``, ``anthropic/...``).

    ``tool_calling``: ``"native"`` uses the provider's tool calling,
    ``"json"`` the JSON-action prompt, ``"auto"`` (default) asks litellm and
    falls back to JSON only for a model litellm knows to lack function calling.
    ``extra`` is passed to ``litellm.acompletion`` as is (``top_p``, ``seed``, ...).

    ``structured_output`` (for ``ReactPlanner(output_type=...)``): ``"native"``
    sends the answer's JSON schema as ``response_format`` (json_schema),
    ``"tool"`` lets the planner use its ``final_answer`` tool, ``"auto"``
    (default) is native when litellm says the model supports response schemas
    and tool calling is native.

    A model that speaks the OpenAI protocol (``openai/...``, a bare OpenAI
    model name, an OpenAI-compatible ``api_base``, the replay model) is served
    by the direct path (``OpenAIClient``: pooled httpx, litellm's price table
    read from its JSON file) and litellm is never imported for it; every
    other provider goes through ``litellm.acompletion``. The litellm path is
    also taken when ``extra`` holds a litellm-only option, when the
    application registered litellm callbacks, and for a temperature other
    than 1 on a reasoning model. ``aclose()`` closes the pooled connections.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        tool_calling: ToolCalling = "auto",
        extra: Mapping[str, Any] | None = None,
        is_replay: bool = False,
        spec: str | None = None,
        structured_output: StructuredOutput = "auto",
    ) -> None:
        check_client_options(
            "LiteLLMClient",
            model,
            tool_calling=tool_calling,
            structured_output=structured_output,
            timeout_s=timeout_s,
            max_retries=max_retries,
        )
        self.model = model
        self.spec = (
            spec or model
        )  # what the user typed (``replay:PATH``); runs record it for resume
        self.is_replay = is_replay
        self.api_base = api_base
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.extra = dict(extra or {})
        self._tool_calling = tool_calling
        self._priced = True  # False once litellm failed to price this model
        self._native: bool | None = None if tool_calling == "auto" else tool_calling == "native"
        self._vision: bool | None = None  # whether the model reads images (asked once)
        self._native_output: bool | None = (
            None if structured_output == "auto" else structured_output == "native"
        )
        self._clients = OpenAIClients()
        self._credentials_checked = False
        self._route: Literal["direct", "litellm"] | None = None  # decided on first use
        self._direct: OpenAIClient | None = None
        self._init: dict[str, Any] = {
            "api_base": api_base,
            "api_key": api_key,
            "timeout_s": timeout_s,
            "max_retries": max_retries,
            "initial_backoff_s": initial_backoff_s,
            "max_backoff_s": max_backoff_s,
            "tool_calling": tool_calling,
            "extra": self.extra,
            "is_replay": is_replay,
            "spec": self.spec,
            "structured_output": structured_output,
        }

    def direct(self) -> OpenAIClient | None:
        """The direct OpenAI-compatible client serving this model, or None when litellm does
        (decided once, from the model and ``extra``; reads litellm's price table, not litellm)."""
        if self._route is None:
            from penguiflow_agents.llm._openai import speaks_openai

            self._route = "direct" if speaks_openai(self.model, self.extra) else "litellm"
        if self._route == "litellm":
            return None
        if self._direct is None:
            from penguiflow_agents.llm._openai import OpenAIClient

            self._direct = OpenAIClient(self.model, **self._init)
        return self._direct

    def _direct_for(self, request: LLMRequest) -> OpenAIClient | None:
        """The direct client for this request, unless litellm must serve it."""
        direct = self.direct()
        if direct is None or _litellm_callbacks() or not direct.accepts(request):
            return None
        return direct

    def __repr__(self) -> str:
        return f"LiteLLMClient(model={self.model!r}, api_base={self.api_base!r}, is_replay={self.is_replay})"

    async def aclose(self) -> None:
        """Close the reused HTTP clients (idempotent); the next call opens new ones."""
        await self._clients.aclose()
        if self._direct is not None:
            await self._direct.aclose()

    async def warm_up(self) -> None:
        """Load what the first call needs now (off the event loop): litellm's price table for
        the direct path, else litellm itself."""
        from penguiflow_agents.llm._prices import load_prices

        await asyncio.to_thread(load_prices)
        direct = self.direct()
        if direct is None:
            await load_litellm_async()

    @property
    def native_tool_calling(self) -> bool:
        """Whether requests use the provider's tool calling (else JSON actions)."""
        if self._native is None:
            direct = self.direct()
            if direct is not None:
                self._native = direct.native_tool_calling
            else:
                self._native = _supports_tools(load_litellm(), self.model)
        return self._native

    async def supports_output_schema(self) -> bool:
        """Whether requests carry ``LLMRequest.output_schema`` as ``response_format``
        (else the planner asks for typed answers through a final tool)."""
        if self._native_output is None and self._route != "litellm":
            direct = self.direct()
            if direct is not None:
                self._native_output = await direct.supports_output_schema()
        if self._native_output is None:
            litellm = await load_litellm_async()
            self._native_output = self.native_tool_calling and _supports_schema(litellm, self.model)
        return self._native_output

    # -- requests ---------------------------------------------------------------

    def _limit(self, request: LLMRequest) -> float:
        """Seconds this request may take: the client's timeout, or less if the caller has less."""
        if request.timeout_s is not None and 0 < request.timeout_s < self.timeout_s:
            return request.timeout_s
        return self.timeout_s

    def _params(
        self, litellm: Any, request: LLMRequest, names: WireNames, native: bool
    ) -> dict[str, Any]:
        params: dict[str, Any] = dict(self.extra)
        if native:
            params["messages"] = [_wire_message(m, names) for m in request.messages]
            if request.tools:
                params["tools"] = [_tool_schema(spec, names) for spec in request.tools]
        else:
            params["messages"] = json_action_messages(request.messages, request.tools)
        if not self._reads_images(litellm):  # images a tool returned, described instead
            params["messages"] = [_text_only(m) for m in params["messages"]]
        wanted = request.output_schema
        if native and wanted is not None:
            schema: dict[str, Any] = {"name": wanted.name, "schema": dict(wanted.schema)}
            if wanted.description:
                schema["description"] = wanted.description
            params["response_format"] = {"type": "json_schema", "json_schema": schema}
        # The provider timeout is the client's own (a request with less time left is cut
        # by ``_call``): a timeout varying per call would defeat litellm's client cache.
        params.update(model=self.model, timeout=self.timeout_s, max_retries=0, num_retries=0)
        if self.api_base is not None:
            params["api_base"] = self.api_base
        if self._api_key is not None:
            params["api_key"] = self._api_key
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        return params

    def _reads_images(self, litellm: Any) -> bool:
        """Whether the model takes image content: yes unless litellm knows it and says no."""
        if self._vision is None:
            self._vision = _supports_vision(litellm, self.model)
        return self._vision

    def missing_credentials(self, litellm: Any = None) -> list[str]:
        """Names of the environment variables with API keys this model needs and lacks
        (none when ``api_key`` was given, or when litellm does not know the provider).
        litellm is imported only for a model the direct path does not serve."""
        if self._api_key:
            return []
        direct = self.direct()
        if direct is not None:
            return direct.missing_credentials()
        if litellm is None:
            litellm = load_litellm()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info = litellm.validate_environment(model=self.model, api_base=self.api_base)
        except Exception:
            return []
        missing = info.get("missing_keys") if isinstance(info, Mapping) else None
        return [str(k) for k in missing or [] if str(k).endswith("_KEY")]

    def _check_credentials(self, litellm: Any) -> None:
        """Fail at once, naming the variable, instead of retrying a call that cannot succeed."""
        if self._credentials_checked:
            return
        missing = self.missing_credentials(litellm)
        if missing:
            raise LLMError(
                f"the model {self.model!r} needs {' and '.join(missing)} in the environment "
                "(or api_key=); set it and try again."
            )
        self._credentials_checked = True

    async def complete(self, request: LLMRequest) -> LLMResponse:
        direct = self._direct_for(request)
        if direct is not None:
            return await direct.complete(request)
        litellm = await load_litellm_async()
        self._check_credentials(litellm)
        native = self.native_tool_calling
        names = WireNames.build(spec.name for spec in request.tools)
        params = self._params(litellm, request, names, native)
        limit = self._limit(request)
        async with self._lease(litellm, params, limit):
            raw = await self._call(litellm, params, limit)
        return self._response(litellm, raw, names, native, turn_index(request.messages) + 1)

    @contextlib.asynccontextmanager
    async def _lease(
        self, litellm: Any, params: dict[str, Any], limit: float
    ) -> AsyncIterator[None]:
        """Put a reused HTTP client in ``params`` while the request lasts (openai provider).

        Waiting for a free client counts against ``limit``."""
        if "client" in params:  # the caller's own, through ``extra``
            yield
            return
        lease = self._clients.lease(litellm, self.model, self.api_base, self._api_key, limit)
        try:
            async with lease as client:
                if client is not None:
                    params["client"] = client
                try:
                    yield
                finally:
                    params.pop("client", None)
        except TimeoutError:
            raise self._error(litellm, TimeoutError(), 0, limit) from None

    async def _call(self, litellm: Any, params: dict[str, Any], limit: float) -> Any:
        """``litellm.acompletion(**params)`` within ``limit`` seconds per attempt, with retries;
        errors become ``LLMError``."""
        timeout = limit
        if limit >= self.timeout_s:
            limit += _TIMEOUT_GRACE_S  # litellm's own timeout fires first and says so
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(limit):
                    with quiet_logging(litellm):
                        return await litellm.acompletion(**params)
            except Exception as exc:
                if not _retryable(litellm, exc) or attempt > self.max_retries:
                    raise self._error(litellm, exc, attempt, timeout) from None
                delay = self._backoff(attempt, exc)
                logger.warning(
                    "model %s: attempt %d failed (%s); retrying in %.2f s",
                    self.model,
                    attempt,
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)

    async def stream(self, request: LLMRequest) -> AsyncIterator[TextDelta | LLMResponse]:
        """Text deltas as the provider streams them, then the full ``LLMResponse``."""
        direct = self._direct_for(request)
        if direct is not None:
            async for item in direct.stream(request):
                yield item
            return
        from penguiflow_agents.llm._stream import stream_completion

        async for item in stream_completion(self, request):
            yield item

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        delay = backoff_delay(attempt, initial_s=self.initial_backoff_s, max_s=self.max_backoff_s)
        hinted = _retry_after_s(exc)
        if hinted is not None:
            delay = max(delay, min(hinted, self.max_backoff_s))
        return delay

    def _error(self, litellm: Any, exc: BaseException, attempts: int, timeout: float) -> LLMError:
        who = "the replay model" if self.is_replay else f"the model {self.model!r}"
        if isinstance(exc, TimeoutError) or isinstance(exc, litellm.Timeout):
            return LLMError(
                f"{who} did not answer within {timeout:g} s (attempt {attempts}); "
                f"raise the timeout or try again later."
            )
        message = _LITELLM_PREFIX.sub("", str(exc).strip()) or type(exc).__name__
        if self._api_key and len(self._api_key) >= _MIN_SECRET_CHARS:
            message = message.replace(self._api_key, "***")
        if len(message) > _ERROR_CHARS:
            message = message[:_ERROR_CHARS] + "..."
        if self.is_replay and _REPLAY_SCRIPT_ERROR in message:
            return LLMError(message)  # the replay model's own sentence says what to do
        status = getattr(exc, "status_code", None)
        where = f" (HTTP {status})" if isinstance(status, int) else ""
        advice = (
            "the provider stayed unavailable; try again later"
            if _retryable(litellm, exc)
            else "check the model name, the provider key and the request"
        )
        return LLMError(f"{who} failed after {attempts} attempt(s){where}: {message}; {advice}.")

    def _cost(self, litellm: Any, raw: Any) -> float | None:
        """The call's cost in USD as litellm prices it; ``None`` for a model without a price."""
        hidden = getattr(raw, "_hidden_params", None) or {}
        cost = hidden.get("response_cost") if isinstance(hidden, Mapping) else None
        if cost is None and self._priced:
            try:
                cost = litellm.completion_cost(completion_response=raw)
            except Exception:
                self._priced = False  # a model with no known price (local, new): stop asking
        return float(cost) if cost is not None else None

    def _response(
        self, litellm: Any, raw: Any, names: WireNames, native: bool, turn: int
    ) -> LLMResponse:
        choices = getattr(raw, "choices", None) or []
        if not choices:
            raise LLMError(
                f"the model {self.model!r} returned no choices; try again or use another model."
            )
        choice = choices[0]
        message = choice.message
        content: str | None = message.content if isinstance(message.content, str) else None
        calls: list[LLMToolCall] = []
        if native:
            calls = [
                native_tool_call(
                    call.id or f"call_{turn}_{i + 1}",
                    call.function.name,
                    call.function.arguments,
                    names,
                )
                for i, call in enumerate(getattr(message, "tool_calls", None) or [])
            ]
        else:
            content, calls = parse_json_action(content, turn=turn)
        if calls and content is not None and not content.strip():
            content = None
        usage = getattr(raw, "usage", None)
        return LLMResponse(
            content=content,
            tool_calls=tuple(calls),
            usage=Usage(
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            ),
            cost_usd=self._cost(litellm, raw),
            model=str(getattr(raw, "model", None) or self.model),
            finish_reason="tool_calls" if calls else (choice.finish_reason or "stop"),
        )


# -- helpers ----------------------------------------------------------------------


def _litellm_callbacks() -> bool:
    """Whether the application imported litellm and registered callbacks (they expect to see
    every call, so calls then go through litellm)."""
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return False
    from penguiflow_agents.llm._litellm_fast import _CALLBACK_LISTS

    return any(getattr(litellm, name, None) for name in _CALLBACK_LISTS)


def native_tool_call(
    call_id: str, wire_name: str | None, arguments: Any, names: WireNames
) -> LLMToolCall:
    """A provider's tool call with the canonical name and parsed (or unparsable) arguments."""
    raw_args = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    args, error = parse_tool_arguments(raw_args)
    return LLMToolCall(
        id=call_id,
        name=names.canonical(wire_name or ""),
        arguments=args,
        raw_arguments=raw_args,
        parse_error=error,
    )


def _supports_tools(litellm: Any, model: str) -> bool:
    """Native tool calling unless litellm knows the model and says it has none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # litellm's provider modules warn at first use
            if litellm.supports_function_calling(model):
                return True
            litellm.get_model_info(model)
    except Exception:
        return True  # a model litellm does not know: assume an OpenAI-compatible server
    return False


def _supports_vision(litellm: Any, model: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if litellm.supports_vision(model):
                return True
            litellm.get_model_info(model)
    except Exception:
        return True  # a model litellm does not know: let the server decide
    return False


def _text_only(message: ChatMessage) -> ChatMessage:
    """``message`` with image parts replaced by a sentence (for a model that reads no images)."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    texts = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif isinstance(part, Mapping) and part.get("type") == "image_url":
            texts.append("[an image, not shown: this model does not read images]")
    return {**message, "content": "\n".join(texts)}


def _supports_schema(litellm: Any, model: str) -> bool:
    """Whether litellm knows the model to accept a JSON schema as ``response_format``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(litellm.supports_response_schema(model))
    except Exception:
        return False


def _tool_schema(spec: ToolSpec, names: WireNames) -> dict[str, Any]:
    parameters = dict(spec.input_schema) or {"type": "object", "properties": {}}
    parameters.setdefault("type", "object")
    return {
        "type": "function",
        "function": {
            "name": names.wire(spec.name),
            "description": spec.description,
            "parameters": parameters,
        },
    }


def _wire_arguments(arguments: Any) -> str:
    """Arguments as JSON text a provider accepts; broken text is sent as ``{}``."""
    if isinstance(arguments, Mapping):
        return json.dumps(dict(arguments), ensure_ascii=False)
    if isinstance(arguments, str):
        parsed, _ = parse_tool_arguments(arguments)
        return arguments if parsed is not None and arguments.strip() else json.dumps(parsed or {})
    return "{}"


def _wire_message(message: ChatMessage, names: WireNames) -> ChatMessage:
    out = {k: v for k, v in message.items() if k in _MESSAGE_KEYS}
    if message.get("role") == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": call.get("id"),
                "type": "function",
                "function": {
                    "name": names.wire(str(call.get("function", {}).get("name", ""))),
                    "arguments": _wire_arguments(call.get("function", {}).get("arguments")),
                },
            }
            for call in message["tool_calls"]
        ]
    elif message.get("role") == "tool" and isinstance(message.get("name"), str):
        out["name"] = names.wire(message["name"])
    return out


def _retryable(litellm: Any, exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | litellm.Timeout):
        return False  # one timeout is already the longest we wait
    if isinstance(
        exc, litellm.RateLimitError | litellm.APIConnectionError | litellm.InternalServerError
    ):
        return True
    if isinstance(exc, litellm.ServiceUnavailableError | litellm.BadGatewayError):
        return True
    import httpx  # already loaded by litellm; not at module level, to keep this package light

    if isinstance(exc, httpx.TransportError | ConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in _RETRY_STATUSES


def _retry_after_s(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
    except (TypeError, ValueError, AttributeError):
        return None
    return parse_retry_after(value if isinstance(value, str) else None)
