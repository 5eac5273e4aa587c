"""The JSON forms of what crosses between the workflow and its activities.

Temporal records every activity's input and result in the run's history, so
they are plain JSON values here: no dataclass whose shape a later release
could change under a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from penguiflow_agents.llm._types import LLMRequest, LLMResponse, LLMToolCall, Usage
from penguiflow_agents.tools._types import ToolSpec

__all__ = [
    "request_from_json",
    "request_to_json",
    "response_from_json",
    "response_to_json",
    "spec_from_json",
    "spec_to_json",
]


def spec_to_json(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "source": spec.source,
        "description": spec.description,
        "input_schema": dict(spec.input_schema),
        "output_schema": None if spec.output_schema is None else dict(spec.output_schema),
        "risk": spec.risk,
        "idempotent": spec.idempotent,
        "timeout_s": spec.timeout_s,
        "definition_hash": spec.definition_hash,
    }


def spec_from_json(data: Mapping[str, Any]) -> ToolSpec:
    output = data.get("output_schema")
    return ToolSpec(
        name=str(data["name"]),
        source=str(data["source"]),
        description=str(data.get("description", "")),
        input_schema=dict(data.get("input_schema") or {}),
        output_schema=None if output is None else dict(output),
        risk=str(data.get("risk", "low")),
        idempotent=bool(data.get("idempotent", False)),
        timeout_s=data.get("timeout_s"),
        definition_hash=str(data.get("definition_hash", "")),
    )


def request_to_json(request: LLMRequest) -> dict[str, Any]:
    return {
        "messages": [dict(m) for m in request.messages],
        "tools": [spec_to_json(s) for s in request.tools],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "timeout_s": request.timeout_s,
        "metadata": dict(request.metadata),
    }


def request_from_json(data: Mapping[str, Any]) -> LLMRequest:
    return LLMRequest(
        messages=list(data["messages"]),
        tools=[spec_from_json(s) for s in data.get("tools") or []],
        max_tokens=data.get("max_tokens"),
        temperature=data.get("temperature"),
        timeout_s=data.get("timeout_s"),
        metadata=dict(data.get("metadata") or {}),
    )


def response_to_json(response: LLMResponse) -> dict[str, Any]:
    return {
        "content": response.content,
        "tool_calls": [
            {
                "id": c.id,
                "name": c.name,
                "arguments": None if c.arguments is None else dict(c.arguments),
                "raw_arguments": c.raw_arguments,
                "parse_error": c.parse_error,
            }
            for c in response.tool_calls
        ],
        "usage": [response.usage.prompt_tokens, response.usage.completion_tokens],
        "cost_usd": response.cost_usd,
        "model": response.model,
        "finish_reason": response.finish_reason,
    }


def response_from_json(data: Mapping[str, Any]) -> LLMResponse:
    prompt, completion = data.get("usage") or (0, 0)
    return LLMResponse(
        content=data.get("content"),
        tool_calls=tuple(
            LLMToolCall(
                id=str(c["id"]),
                name=str(c["name"]),
                arguments=None if c.get("arguments") is None else dict(c["arguments"]),
                raw_arguments=str(c.get("raw_arguments") or ""),
                parse_error=c.get("parse_error"),
            )
            for c in data.get("tool_calls") or []
        ),
        usage=Usage(prompt_tokens=int(prompt), completion_tokens=int(completion)),
        cost_usd=data.get("cost_usd"),
        model=str(data.get("model", "")),
        finish_reason=data.get("finish_reason"),
    )
