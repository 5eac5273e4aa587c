"""Streaming for ``LiteLLMClient``: text deltas as they arrive, then the full response.

Retries cover opening the stream (429/5xx/connection errors before the first
chunk); a failure after text has been yielded is an ``LLMError``, since the
caller has already shown part of the answer. Each wait for the next chunk is
bounded by the call's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from penguiflow_agents.exceptions import LLMError
from penguiflow_agents.llm._litellm_import import load_litellm_async
from penguiflow_agents.llm._names import WireNames
from penguiflow_agents.llm._script import turn_index
from penguiflow_agents.llm._types import LLMRequest, LLMResponse, TextDelta, Usage

if TYPE_CHECKING:
    from penguiflow_agents.llm._litellm import LiteLLMClient

__all__ = ["stream_completion"]


@dataclass(slots=True, kw_only=True)
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def _stream_cost(litellm: Any, model: str, usage: Usage) -> float | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prompt, completion = litellm.cost_per_token(
                model=model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
        return float(prompt + completion)
    except Exception:
        return None  # a model with no known price


async def stream_completion(
    client: LiteLLMClient, request: LLMRequest
) -> AsyncIterator[TextDelta | LLMResponse]:
    if not client.native_tool_calling:
        response = await client.complete(request)  # JSON actions must be parsed whole
        if response.content and not response.tool_calls:
            yield TextDelta(text=response.content)
        yield response
        return
    litellm = await load_litellm_async()
    client._check_credentials(litellm)
    names = WireNames.build(spec.name for spec in request.tools)
    params = client._params(litellm, request, names, native=True)
    params.update(stream=True, stream_options={"include_usage": True})
    timeout = client._limit(request)
    async with client._lease(litellm, params, timeout):
        async for item in _chunks(client, litellm, params, timeout, request, names):
            yield item


async def _chunks(
    client: LiteLLMClient,
    litellm: Any,
    params: dict[str, Any],
    limit: float,
    request: LLMRequest,
    names: WireNames,
) -> AsyncIterator[TextDelta | LLMResponse]:
    """The stream of one leased request: text deltas, then the whole response."""
    from penguiflow_agents.llm._litellm import native_tool_call

    timeout = limit
    stream = await client._call(litellm, params, timeout)
    content: list[str] = []
    calls: dict[int, _PartialCall] = {}
    usage = Usage()
    finish: str | None = None
    model = client.model
    iterator = stream.__aiter__()
    try:
        while True:
            try:
                async with asyncio.timeout(timeout):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise client._error(litellm, exc, 1, timeout) from None
            model = str(getattr(chunk, "model", None) or model)
            chunk_usage = getattr(chunk, "usage", None)
            if chunk_usage is not None and getattr(chunk_usage, "prompt_tokens", None) is not None:
                usage = Usage(
                    prompt_tokens=int(chunk_usage.prompt_tokens or 0),
                    completion_tokens=int(chunk_usage.completion_tokens or 0),
                )
            for choice in getattr(chunk, "choices", None) or []:
                finish = getattr(choice, "finish_reason", None) or finish
                delta = choice.delta
                text = getattr(delta, "content", None)
                if text:
                    content.append(text)
                    yield TextDelta(text=text)
                for piece in getattr(delta, "tool_calls", None) or []:
                    partial = calls.setdefault(int(getattr(piece, "index", 0) or 0), _PartialCall())
                    partial.id = piece.id or partial.id
                    function = piece.function
                    if function is not None:
                        if function.name and function.name != partial.name:
                            partial.name += (
                                function.name
                            )  # sent once by most providers, in pieces by a few
                        partial.arguments.append(function.arguments or "")
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
    turn = turn_index(request.messages) + 1
    tool_calls = tuple(
        native_tool_call(p.id or f"call_{turn}_{i + 1}", p.name, "".join(p.arguments), names)
        for i, p in (sorted(calls.items()))
    )
    if not content and not tool_calls:
        raise LLMError(
            f"the model {client.model!r} streamed neither text nor tool calls; try again."
        )
    yield LLMResponse(
        content="".join(content) or None,
        tool_calls=tool_calls,
        usage=usage,
        cost_usd=_stream_cost(litellm, client.model, usage),
        model=model,
        finish_reason="tool_calls" if tool_calls else (finish or "stop"),
    )
