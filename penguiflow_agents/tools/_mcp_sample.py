"""Answering a server's sampling request (a completion from the client's model, asked mid-call).

Off unless the manifest says ``sampling: {allow: true}``: only then does the
client declare the ``sampling`` capability, so a server cannot ask otherwise.
When on, a request is answered by the person-less model of the run behind the
call: the call's ``CallContext.extra["sample"]`` (a ``SampleFn`` the planner
sets, which counts the tokens in the run's budget and audits the request as
store events). ``max_tokens`` is capped at the manifest's ``max_tokens``
(default 1000). Text messages only; with no run behind the call (``tools
call``), or when the run's budget is spent, the request is refused with an
error the server sees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import mcp_types as types
import structlog

__all__ = ["SampleFn", "SampleRequest", "SampleResult", "SamplingRefused", "answer_sampling"]

log = structlog.get_logger("penguiflow_agents.tools.mcp")


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleRequest:
    """What the server asked for, as chat messages for the run's model."""

    source: str
    messages: Sequence[dict[str, str]]  # {"role": "system"|"user"|"assistant", "content": ...}
    max_tokens: int
    temperature: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleResult:
    text: str
    model: str
    stop_reason: str = "endTurn"


class SamplingRefused(Exception):
    """The run cannot answer this request (says why, to the server)."""


# Answers one request with the run's model (raises SamplingRefused).
SampleFn = Callable[[SampleRequest], Awaitable[SampleResult]]


def _messages(params: types.CreateMessageRequestParams) -> list[dict[str, str]] | str:
    out: list[dict[str, str]] = []
    if params.system_prompt:
        out.append({"role": "system", "content": params.system_prompt})
    for message in params.messages:
        blocks = message.content if isinstance(message.content, list) else [message.content]
        texts = []
        for block in blocks:
            if not isinstance(block, types.TextContent):
                return f"only text messages can be sampled, not {block.type!r} content"
            texts.append(block.text)
        out.append({"role": message.role, "content": "\n".join(texts)})
    return out


async def answer_sampling(
    source: str,
    params: types.CreateMessageRequestParams,
    sampler: SampleFn | None,
    *,
    max_tokens: int,
) -> types.CreateMessageResult | types.ErrorData:
    """The run's completion for the server, or an error it sees."""
    if sampler is None:
        return _refused(source, "no run's model is behind this call (sampling needs a run)")
    messages = _messages(params)
    if isinstance(messages, str):
        return _refused(source, messages)
    request = SampleRequest(
        source=source,
        messages=messages,
        max_tokens=max(1, min(params.max_tokens, max_tokens)),
        temperature=params.temperature,
    )
    try:
        result = await sampler(request)
    except SamplingRefused as exc:
        return _refused(source, str(exc))
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=result.text),
        model=result.model,
        stop_reason=result.stop_reason,
    )


def _refused(source: str, why: str) -> types.ErrorData:
    log.info("mcp_sampling_refused", source=source, reason=why)
    return types.ErrorData(code=types.INVALID_REQUEST, message=f"sampling refused: {why}")
