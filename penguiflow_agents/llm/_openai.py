"""The direct OpenAI-compatible path: chat completions over pooled httpx, no litellm.

``LiteLLMClient`` hands every call for a model that speaks the OpenAI
protocol (``openai/...``, a bare OpenAI model name, an OpenAI-compatible
``api_base``, the replay model) to an ``OpenAIClient``; litellm is then
never imported (its import alone is ~200 MB and ~3 s, and its per-call
object building costs ~4 ms of CPU). The request body, the wire names, the
tool-call parsing, the retries (exponential backoff with jitter, honouring
``Retry-After``), the errors (``LLMError``, the same sentences) and the
usage and cost (litellm's own price table, read from its JSON file) are
what the litellm path gives.

HTTP: a free list of ``httpx.AsyncClient`` with one keep-alive connection
each, one request at a time (see ``_litellm_fast.OpenAIClients`` for why not
one client with a large pool), up to ``MAX_CONNECTIONS`` in flight per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from penguiflow_agents._retry import backoff_delay, parse_retry_after
from penguiflow_agents.exceptions import LLMError, UserError
from penguiflow_agents.llm._json_actions import json_action_messages, parse_json_action
from penguiflow_agents.llm._litellm_fast import MAX_CONNECTIONS, _ssl_context
from penguiflow_agents.llm._names import WireNames
from penguiflow_agents.llm._prices import cost_usd, load_prices, model_info, wire_model
from penguiflow_agents.llm._script import turn_index
from penguiflow_agents.llm._types import (
    LLMRequest,
    LLMResponse,
    LLMToolCall,
    TextDelta,
    Usage,
    check_client_options,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["DIRECT_EXTRA_KEYS", "OpenAIClient", "speaks_openai"]

logger = logging.getLogger("penguiflow_agents.llm")

# ``extra`` keys the direct path sends as they are (OpenAI chat-completions parameters). A client
# whose ``extra`` holds anything else (a litellm option such as ``client=`` or ``drop_params``)
# stays on litellm, which knows what to do with it.
DIRECT_EXTRA_KEYS = frozenset(
    {
        "top_p",
        "seed",
        "stop",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "parallel_tool_calls",
        "tool_choice",
        "response_format",
        "reasoning_effort",
        "service_tier",
        "store",
        "max_completion_tokens",
        "modalities",
        "prediction",
        "verbosity",
        "extra_headers",
        "extra_body",
    }
)
_DEFAULT_BASE = "https://api.openai.com/v1"
_DIRECT_MODES = frozenset({"chat"})
_TIMEOUT_GRACE_S = 5.0
_ERROR_CHARS = 600
_MIN_SECRET_CHARS = 8
_REPLAY_SCRIPT_ERROR = "replay script"
_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def speaks_openai(model: str, extra: Mapping[str, Any]) -> bool:
    """Whether calls for ``model`` can take the direct path: an OpenAI model (``openai/...``, or
    a bare name litellm's table files under openai) answered by chat completions, and no
    litellm-only option in ``extra``."""
    if any(key not in DIRECT_EXTRA_KEYS for key in extra):
        return False
    prefixed = model.startswith("openai/")
    info = model_info(model)
    if info is None:
        return prefixed  # a model of an OpenAI-compatible server (vLLM, the replay model, ...)
    if info.get("litellm_provider", "openai") != "openai":
        return False
    return str(info.get("mode") or "chat") in _DIRECT_MODES


class _Failure(Exception):
    """An HTTP error answer: its status, the provider's message and its Retry-After."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(slots=True, kw_only=True)
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _Pool:
    """Single-connection httpx clients, one request each; per event loop."""

    __slots__ = ("_free", "_headers", "_loop", "_slots", "_timeout_s")

    def __init__(self, headers: dict[str, str], timeout_s: float) -> None:
        self._headers = headers
        self._timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free: list[httpx.AsyncClient] = []
        self._slots: asyncio.Semaphore | None = None

    def _new(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            verify=_ssl_context(),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=httpx.Timeout(self._timeout_s),
            headers=self._headers,
            follow_redirects=True,
        )

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop, self._free = loop, []
            self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        slots = self._slots
        await slots.acquire()
        try:
            client = self._free.pop() if self._free else self._new()
            try:
                yield client
            finally:
                if self._loop is loop and not client.is_closed:
                    self._free.append(client)
        finally:
            slots.release()

    async def aclose(self) -> None:
        free, self._free = self._free, []
        loop, self._loop = self._loop, None
        self._slots = None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop is running:
            for client in free:
                with contextlib.suppress(Exception):
                    await client.aclose()


class OpenAIClient:
    """An ``LLMClient`` for a model that speaks OpenAI chat completions, on httpx alone.

    ``LiteLLMClient`` uses one by itself for such models; it can also be built
    directly (same arguments as ``LiteLLMClient``, ``extra`` limited to
    OpenAI parameters). The API key is ``api_key``, else ``OPENAI_API_KEY``;
    the base URL ``api_base``, else ``OPENAI_BASE_URL`` / ``OPENAI_API_BASE``,
    else OpenAI's. ``aclose()`` closes the pooled connections.
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
        tool_calling: str = "auto",
        extra: Mapping[str, Any] | None = None,
        is_replay: bool = False,
        spec: str | None = None,
        structured_output: str = "auto",
    ) -> None:
        check_client_options(
            "OpenAIClient",
            model,
            tool_calling=tool_calling,
            structured_output=structured_output,
            timeout_s=timeout_s,
            max_retries=max_retries,
        )
        extra = dict(extra or {})
        unknown = sorted(k for k in extra if k not in DIRECT_EXTRA_KEYS)
        if unknown:
            raise UserError(
                f"OpenAIClient extra has {', '.join(unknown)}, not OpenAI chat-completions "
                "parameters; use LiteLLMClient for litellm options."
            )
        self.model = model
        self.spec = spec or model
        self.is_replay = is_replay
        self.api_base = api_base
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self._extra_headers = dict(extra.pop("extra_headers", None) or {})
        self._extra_body = dict(extra.pop("extra_body", None) or {})
        self.extra = extra
        self._wire_model = wire_model(model)
        self._native: bool | None = None if tool_calling == "auto" else tool_calling == "native"
        self._native_output: bool | None = (
            None if structured_output == "auto" else structured_output == "native"
        )
        self._info: Mapping[str, Any] | None = None
        self._info_loaded = False
        self._pool: _Pool | None = None
        self._url = ""

    def __repr__(self) -> str:
        return f"OpenAIClient(model={self.model!r}, api_base={self.api_base!r}, is_replay={self.is_replay})"

    # -- what the table knows ------------------------------------------------------

    @property
    def info(self) -> Mapping[str, Any] | None:
        """litellm's table entry for the model (None when it has none)."""
        if not self._info_loaded:
            self._info = model_info(self.model)
            self._info_loaded = True
        return self._info

    def _supports(self, flag: str, *, unknown: bool) -> bool:
        info = self.info
        if info is None:
            return unknown
        return bool(info.get(flag))

    @property
    def native_tool_calling(self) -> bool:
        if self._native is None:
            self._native = self._supports("supports_function_calling", unknown=True)
        return self._native

    async def supports_output_schema(self) -> bool:
        if self._native_output is None:
            self._native_output = self.native_tool_calling and self._supports(
                "supports_response_schema", unknown=False
            )
        return self._native_output

    def _reads_images(self) -> bool:
        return self._supports("supports_vision", unknown=True)

    def _reasoning(self) -> bool:
        return self._supports("supports_reasoning", unknown=False)

    def accepts(self, request: LLMRequest) -> bool:
        """Whether this path can send ``request`` as litellm would (a reasoning model takes
        no temperature but 1, which litellm alone knows how to refuse or drop)."""
        return request.temperature in (None, 1) or not self._reasoning()

    async def warm_up(self) -> None:
        """Read the price table now (off the event loop) instead of on the first call."""
        await asyncio.to_thread(load_prices)

    # -- credentials and endpoint -------------------------------------------------------

    def _key(self) -> str | None:
        litellm = sys.modules.get("litellm")
        return (
            self._api_key
            or (getattr(litellm, "api_key", None) if litellm is not None else None)
            or (getattr(litellm, "openai_key", None) if litellm is not None else None)
            or os.environ.get("OPENAI_API_KEY")
            or None
        )

    def missing_credentials(self, litellm: Any = None) -> list[str]:
        """``["OPENAI_API_KEY"]`` when no API key is given nor set, else ``[]``."""
        return [] if self._key() else ["OPENAI_API_KEY"]

    def _base(self) -> str:
        litellm = sys.modules.get("litellm")
        return (
            self.api_base
            or (getattr(litellm, "api_base", None) if litellm is not None else None)
            or os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE")
            or _DEFAULT_BASE
        )

    def _http(self) -> _Pool:
        if self._pool is None:
            key = self._key()
            if not key:
                raise LLMError(
                    f"the model {self.model!r} needs OPENAI_API_KEY in the environment "
                    "(or api_key=); set it and try again."
                )
            headers = {
                "authorization": f"Bearer {key}",
                "content-type": "application/json",
                "accept": "application/json",
            }
            org = os.environ.get("OPENAI_ORGANIZATION") or os.environ.get("OPENAI_ORG_ID")
            if org:
                headers["openai-organization"] = org
            project = os.environ.get("OPENAI_PROJECT_ID")
            if project:
                headers["openai-project"] = project
            headers.update({k.lower(): str(v) for k, v in self._extra_headers.items()})
            self._url = self._base().rstrip("/") + "/chat/completions"
            self._pool = _Pool(headers, self.timeout_s)
        return self._pool

    async def aclose(self) -> None:
        """Close the pooled connections (idempotent); the next call opens new ones."""
        if self._pool is not None:
            await self._pool.aclose()

    # -- requests ---------------------------------------------------------------

    def _limit(self, request: LLMRequest) -> float:
        if request.timeout_s is not None and 0 < request.timeout_s < self.timeout_s:
            return request.timeout_s
        return self.timeout_s

    def _body(
        self, request: LLMRequest, names: WireNames, native: bool, stream: bool = False
    ) -> bytes:
        from penguiflow_agents.llm._litellm import _text_only, _tool_schema, _wire_message

        body: dict[str, Any] = dict(self.extra)
        body["model"] = self._wire_model
        if native:
            messages = [_wire_message(m, names) for m in request.messages]
        else:
            messages = json_action_messages(request.messages, request.tools)
        if not self._reads_images():
            messages = [_text_only(m) for m in messages]
        body["messages"] = messages
        if native and request.tools:
            body["tools"] = [_tool_schema(spec, names) for spec in request.tools]
        wanted = request.output_schema
        if native and wanted is not None:
            schema: dict[str, Any] = {"name": wanted.name, "schema": dict(wanted.schema)}
            if wanted.description:
                schema["description"] = wanted.description
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        if request.max_tokens is not None:
            body["max_completion_tokens" if self._reasoning() else "max_tokens"] = (
                request.max_tokens
            )
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(self._extra_body)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    async def complete(self, request: LLMRequest) -> LLMResponse:
        pool = self._http()
        native = self.native_tool_calling
        names = WireNames.build(spec.name for spec in request.tools)
        payload = self._body(request, names, native)
        limit = self._limit(request)
        data = await self._post(pool, payload, limit)
        return self._response(data, names, native, turn_index(request.messages) + 1)

    async def _post(self, pool: _Pool, payload: bytes, limit: float) -> Any:
        """One request within ``limit`` seconds per attempt, with retries; the parsed body."""
        import httpx

        attempt = 0
        while True:
            attempt += 1
            failure: BaseException
            try:
                async with asyncio.timeout(limit):
                    async with pool.lease() as http:
                        response = await http.post(self._url, content=payload)
            except (TimeoutError, httpx.TimeoutException):
                raise self._timeout(attempt, limit) from None
            except (httpx.TransportError, ConnectionError) as exc:
                failure = exc
            else:
                if response.status_code < 400:
                    try:
                        return json.loads(response.content)
                    except ValueError:
                        raise LLMError(
                            f"{self._who()} answered HTTP {response.status_code} with a body "
                            "that is not JSON; check api_base."
                        ) from None
                failure = _failure(response)
            if not _retryable(failure) or attempt > self.max_retries:
                raise self._error(failure, attempt) from None
            await self._wait(attempt, failure)

    async def _wait(self, attempt: int, failure: BaseException) -> None:
        delay = self._backoff(attempt, failure)
        logger.warning(
            "model %s: attempt %d failed (%s); retrying in %.2f s",
            self.model,
            attempt,
            _kind(failure),
            delay,
        )
        await asyncio.sleep(delay)

    def _backoff(self, attempt: int, failure: BaseException) -> float:
        delay = backoff_delay(attempt, initial_s=self.initial_backoff_s, max_s=self.max_backoff_s)
        hinted = failure.retry_after_s if isinstance(failure, _Failure) else None
        if hinted is not None:
            delay = max(delay, min(hinted, self.max_backoff_s))
        return delay

    def _who(self) -> str:
        return "the replay model" if self.is_replay else f"the model {self.model!r}"

    def _timeout(self, attempts: int, limit: float) -> LLMError:
        return LLMError(
            f"{self._who()} did not answer within {limit:g} s (attempt {attempts}); "
            f"raise the timeout or try again later."
        )

    def _error(self, failure: BaseException, attempts: int) -> LLMError:
        message = str(failure).strip() or type(failure).__name__
        if self._api_key and len(self._api_key) >= _MIN_SECRET_CHARS:
            message = message.replace(self._api_key, "***")
        key = self._key()
        if key and len(key) >= _MIN_SECRET_CHARS:
            message = message.replace(key, "***")
        if len(message) > _ERROR_CHARS:
            message = message[:_ERROR_CHARS] + "..."
        if self.is_replay and _REPLAY_SCRIPT_ERROR in message:
            return LLMError(message)
        where = f" (HTTP {failure.status})" if isinstance(failure, _Failure) else ""
        advice = (
            "the provider stayed unavailable; try again later"
            if _retryable(failure)
            else "check the model name, the provider key and the request"
        )
        return LLMError(
            f"{self._who()} failed after {attempts} attempt(s){where}: {message}; {advice}."
        )

    def _cost(self, usage: Any) -> tuple[Usage, float | None]:
        prompt = completion = cached = 0
        if isinstance(usage, Mapping):
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details")
            if isinstance(details, Mapping):
                cached = int(details.get("cached_tokens") or 0)
        return (
            Usage(prompt_tokens=prompt, completion_tokens=completion),
            cost_usd(self.info, prompt, completion, cached),
        )

    def _response(self, data: Any, names: WireNames, native: bool, turn: int) -> LLMResponse:
        from penguiflow_agents.llm._litellm import native_tool_call

        choices = data.get("choices") if isinstance(data, Mapping) else None
        if not choices or not isinstance(choices[0], Mapping):
            raise LLMError(
                f"the model {self.model!r} returned no choices; try again or use another model."
            )
        choice = choices[0]
        message = choice.get("message") or {}
        raw_content = message.get("content")
        content: str | None = raw_content if isinstance(raw_content, str) else None
        calls: list[LLMToolCall]
        if native:
            calls = []
            for i, call in enumerate(message.get("tool_calls") or []):
                function = call.get("function") or {}
                calls.append(
                    native_tool_call(
                        call.get("id") or f"call_{turn}_{i + 1}",
                        function.get("name"),
                        function.get("arguments"),
                        names,
                    )
                )
        else:
            content, calls = parse_json_action(content, turn=turn)
        if calls and content is not None and not content.strip():
            content = None
        usage, cost = self._cost(data.get("usage"))
        return LLMResponse(
            content=content,
            tool_calls=tuple(calls),
            usage=usage,
            cost_usd=cost,
            model=str(data.get("model") or self.model),
            finish_reason="tool_calls" if calls else (choice.get("finish_reason") or "stop"),
        )

    # -- streaming ----------------------------------------------------------------

    async def stream(self, request: LLMRequest) -> AsyncIterator[TextDelta | LLMResponse]:
        """Text deltas as the server streams them, then the full ``LLMResponse``.

        Retries cover opening the stream; a failure after it opened is an ``LLMError``."""
        if not self.native_tool_calling:
            response = await self.complete(request)
            if response.content and not response.tool_calls:
                yield TextDelta(text=response.content)
            yield response
            return
        import httpx

        pool = self._http()
        names = WireNames.build(spec.name for spec in request.tools)
        payload = self._body(request, names, native=True, stream=True)
        limit = self._limit(request)
        attempt = 0
        while True:
            attempt += 1
            failure: BaseException
            async with contextlib.AsyncExitStack() as stack:
                try:
                    async with asyncio.timeout(limit):
                        http = await stack.enter_async_context(pool.lease())
                        sent = http.build_request("POST", self._url, content=payload)
                        opened = await http.send(sent, stream=True)
                        stack.push_async_callback(opened.aclose)
                        if opened.status_code >= 400:
                            await opened.aread()
                except (TimeoutError, httpx.TimeoutException):
                    raise self._timeout(attempt, limit) from None
                except (httpx.TransportError, ConnectionError) as exc:
                    failure = exc
                else:
                    if opened.status_code < 400:
                        async for item in self._events(opened, limit, request, names):
                            yield item
                        return
                    failure = _failure(opened)
            if not _retryable(failure) or attempt > self.max_retries:
                raise self._error(failure, attempt) from None
            await self._wait(attempt, failure)

    async def _events(
        self, response: httpx.Response, limit: float, request: LLMRequest, names: WireNames
    ) -> AsyncIterator[TextDelta | LLMResponse]:
        from penguiflow_agents.llm._litellm import native_tool_call

        content: list[str] = []
        calls: dict[int, _PartialCall] = {}
        usage: Any = None
        finish: str | None = None
        model = self.model
        lines = response.aiter_lines()
        try:
            while True:
                try:
                    async with asyncio.timeout(limit):
                        line = await lines.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise self._timeout(1, limit) from None
                except Exception as exc:
                    raise self._error(exc, 1) from None
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                if not isinstance(chunk, Mapping):
                    continue
                if isinstance(chunk.get("error"), Mapping):
                    raise self._error(_Failure(0, str(chunk["error"].get("message"))), 1)
                model = str(chunk.get("model") or model)
                if isinstance(chunk.get("usage"), Mapping):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    if text:
                        content.append(text)
                        yield TextDelta(text=text)
                    for piece in delta.get("tool_calls") or []:
                        partial = calls.setdefault(int(piece.get("index") or 0), _PartialCall())
                        partial.id = piece.get("id") or partial.id
                        function = piece.get("function")
                        if function:
                            name = function.get("name")
                            if name and name != partial.name:
                                partial.name += name
                            partial.arguments.append(function.get("arguments") or "")
        finally:
            with contextlib.suppress(Exception):
                await lines.aclose()  # type: ignore[attr-defined]
        turn = turn_index(request.messages) + 1
        tool_calls = tuple(
            native_tool_call(p.id or f"call_{turn}_{i + 1}", p.name, "".join(p.arguments), names)
            for i, p in sorted(calls.items())
        )
        if not content and not tool_calls:
            raise LLMError(
                f"the model {self.model!r} streamed neither text nor tool calls; try again."
            )
        totals, cost = self._cost(usage)
        yield LLMResponse(
            content="".join(content) or None,
            tool_calls=tool_calls,
            usage=totals,
            cost_usd=cost,
            model=model,
            finish_reason="tool_calls" if tool_calls else (finish or "stop"),
        )


def _failure(response: httpx.Response) -> _Failure:
    """An error answer as a ``_Failure``: the provider's ``error.message``, else its text."""
    text = response.text
    message = text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            message = str(error["message"])
        elif isinstance(error, str):
            message = error
        elif body.get("message"):
            message = str(body["message"])
    return _Failure(
        response.status_code, message or f"HTTP {response.status_code}", _retry_after(response)
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` in seconds
    or as an HTTP date), or None."""
    headers = response.headers
    value = headers.get("retry-after-ms")
    if value is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(value) / 1000)
    return parse_retry_after(headers.get("retry-after"))


def _retryable(failure: BaseException) -> bool:
    if isinstance(failure, _Failure):
        return failure.status in _RETRY_STATUSES
    import httpx

    if isinstance(failure, httpx.TimeoutException):
        return False
    return isinstance(failure, httpx.TransportError | ConnectionError)


def _kind(failure: BaseException) -> str:
    return f"HTTP {failure.status}" if isinstance(failure, _Failure) else type(failure).__name__
