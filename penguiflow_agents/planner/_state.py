"""The resumable state of one run, and its JSON form in ``RunRecord.state``.

A paused run is nothing but this state in the store: the conversation so far,
the trajectory, the usage, and the step it stopped in (which calls of that
step already have a result, which wait for which approval). A running run is
checkpointed the same way after every model turn and every step, with the
calls of the step in flight (``InflightStep``), so that another process can
take it over if its owner dies. Any process that opens the store can rebuild
it with ``RunState.from_dict`` and go on.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core

from penguiflow_agents.exceptions import StoreError
from penguiflow_agents.llm._types import LLMToolCall, Usage
from penguiflow_agents.planner._types import PendingApproval, RunResult, Step

__all__ = ["STATE_VERSION", "InflightStep", "PausedStep", "RunState"]

STATE_VERSION = 1  # bump (and keep reading the old form) when the layout changes


@dataclass(slots=True, kw_only=True)
class PausedStep:
    """A model turn whose calls are partly done and partly waiting for approval."""

    step: int
    order: list[str]  # call ids in the order the model sent them
    done: dict[str, str]  # call id -> the tool message content the model will see
    waiting: list[PendingApproval]

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "order": list(self.order),
            "done": dict(self.done),
            "waiting": [p.to_dict() for p in self.waiting],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PausedStep:
        return cls(
            step=int(data["step"]),
            order=[str(c) for c in data["order"]],
            done={str(k): str(v) for k, v in dict(data["done"]).items()},
            waiting=[PendingApproval.from_dict(p) for p in data["waiting"]],
        )


@dataclass(slots=True, kw_only=True)
class InflightStep:
    """A model turn whose calls are running: what a takeover must settle first.

    ``calls`` are the model's calls in order; ``done`` maps the id of each call
    that already has a result to the tool message content the model will see
    (the same dict the step fills in while it runs, so every checkpoint has
    the results known at that moment).
    """

    step: int
    calls: list[LLMToolCall]
    done: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "calls": [
                {
                    "id": c.id,
                    "name": c.name,
                    "arguments": None if c.arguments is None else dict(c.arguments),
                    "raw_arguments": c.raw_arguments,
                    "parse_error": c.parse_error,
                }
                for c in self.calls
            ],
            "done": dict(self.done),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InflightStep:
        calls = []
        for c in data["calls"]:
            arguments = c.get("arguments")
            calls.append(
                LLMToolCall(
                    id=str(c["id"]),
                    name=str(c["name"]),
                    arguments=None if arguments is None else dict(arguments),
                    raw_arguments=str(c.get("raw_arguments") or ""),
                    parse_error=c.get("parse_error"),
                )
            )
        return cls(
            step=int(data["step"]),
            calls=calls,
            done={str(k): str(v) for k, v in dict(data["done"]).items()},
        )


class _Encoded:
    """The JSON texts of a list that only grows, each kept with the item it was encoded from
    (held, so its id is never reused): ``texts`` encodes only the items it has not seen."""

    __slots__ = ("encoded", "items")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.encoded: list[str] = []

    def texts(self, current: list[Any], encode: Callable[[Any], str]) -> list[str]:
        """The texts of ``current``'s items, in order (the cache's own list: do not keep it)."""
        items, encoded = self.items, self.encoded
        if len(items) > len(current) or not all(map(operator.is_, items, current)):
            kept = 0  # an item replaced or removed: encoded again from there
            for seen, item in zip(items, current, strict=False):
                if seen is not item:
                    break
                kept += 1
            del items[kept:], encoded[kept:]
        for item in current[len(items) :]:
            encoded.append(encode(item))  # first: a failing item is not kept
            items.append(item)
        return encoded


def _text(value: Any) -> str:
    return pydantic_core.to_json(value).decode()


def _step_text(step: Step) -> str:
    return _text(step.to_dict())


@dataclass(slots=True, kw_only=True)
class RunState:
    """Everything a run needs to go on; lives in a local variable, never on the planner."""

    query: str
    model: str
    session_id: str | None = None
    trace_id: str = ""
    # W3C trace context of the run's last span (telemetry): a resume links to it.
    trace_context: dict[str, str] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    history_len: int = 0  # messages[:history_len] are the system prompt + session history
    steps: list[Step] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    model_calls: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    paused: PausedStep | None = None
    inflight: InflightStep | None = None
    # call id -> content parts (a label, then image_url parts) of the images a call of the
    # open step returned; ``close_step`` shows them to the model after the step's tool results.
    media: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    media_bytes: int = 0  # bytes of the images this run has shown the model (max_image_bytes)
    # ``json_text``'s caches: each message and each step already encoded, with the object it came
    # from. The conversation and the trajectory only grow, and a message or a step is never
    # changed once appended, so a checkpoint encodes the new ones only (tests/planner check
    # every encoding against a full one).
    _messages_seen: _Encoded = field(
        default_factory=_Encoded, init=False, repr=False, compare=False
    )
    _steps_seen: _Encoded = field(default_factory=_Encoded, init=False, repr=False, compare=False)
    # The fixed fields (``_fixed``) as last encoded, with their values then.
    _fixed_seen: tuple[tuple[Any, ...], str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def add_cost(self, cost: float | None) -> None:
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def result(
        self,
        run_id: str,
        status: str,
        *,
        answer: str | None = None,
        error: str | None = None,
        output: Any = None,
    ) -> RunResult:
        return RunResult(
            status=status,
            run_id=run_id,
            answer=answer,
            error=error,
            steps=list(self.steps),
            pending_approvals=list(self.paused.waiting) if self.paused else [],
            usage=self.usage,
            cost=self.cost,
            model=self.model,
            session_id=self.session_id,
            output=output,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"messages": list(self.messages), **self._fields()}

    def json_text(self) -> str:
        """The JSON text of ``to_dict()``, as a store keeps it, encoding only the messages and
        steps appended since the last call (each decoded to text once, so the whole is joined as
        text and never decoded). Raises pydantic-core's error for a value JSON cannot hold (the
        caller falls back to a full encoding of its text forms)."""
        steps = self._steps_seen.texts(self.steps, _step_text)
        messages = self._messages_seen.texts(self.messages, _text)
        # The fields fixed for the run are encoded once (pydantic-core takes ~0.5 kIr a value).
        fixed = (self.query, self.model, self.session_id, self.trace_id, self.history_len)
        seen = self._fixed_seen
        if seen is None or seen[0] != fixed:
            seen = self._fixed_seen = (fixed, _text(self._fixed())[1:-1])
        changing = _text(self._changing())[1:-1]  # never empty, as the fixed part
        steps_text, messages_text = ",".join(steps), ",".join(messages)
        return f'{{{seen[1]},{changing},"steps":[{steps_text}],"messages":[{messages_text}]}}'

    def _fields(self) -> dict[str, Any]:
        """``to_dict()`` but the messages."""
        return {**self._fixed(), **self._changing(), "steps": [s.to_dict() for s in self.steps]}

    def _fixed(self) -> dict[str, Any]:
        """The fields a run keeps from its start (``json_text`` encodes them once)."""
        return {
            "v": STATE_VERSION,
            "query": self.query,
            "model": self.model,
            "session_id": self.session_id,
            "trace_id": self.trace_id,
            "history_len": self.history_len,
        }

    def _changing(self) -> dict[str, Any]:
        """The fields but the fixed ones, the steps and the messages."""
        fields = {
            "usage": [self.usage.prompt_tokens, self.usage.completion_tokens],
            "trace_context": dict(self.trace_context),
            "cost": self.cost,
            "model_calls": self.model_calls,
            "consecutive_errors": self.consecutive_errors,
            "last_error": self.last_error,
            "paused": self.paused.to_dict() if self.paused else None,
            "inflight": self.inflight.to_dict() if self.inflight else None,
        }
        if self.media:
            fields["media"] = {k: list(v) for k, v in self.media.items()}
        if self.media_bytes:
            fields["media_bytes"] = self.media_bytes
        return fields

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, run_id: str) -> RunState:
        version = data.get("v")
        if version != STATE_VERSION:
            raise StoreError(
                f"run {run_id!r} holds state version {version!r}, but this planner reads "
                f"version {STATE_VERSION}; resume it with the penguiflow-agents release that paused it."
            )
        try:
            prompt, completion = data["usage"]
            paused = data.get("paused")
            inflight = data.get("inflight")
            return cls(
                query=str(data["query"]),
                model=str(data["model"]),
                session_id=data.get("session_id"),
                trace_id=str(data.get("trace_id") or ""),
                trace_context={
                    str(k): str(v) for k, v in dict(data.get("trace_context") or {}).items()
                },
                messages=list(data["messages"]),
                history_len=int(data["history_len"]),
                steps=[Step.from_dict(s) for s in data["steps"]],
                usage=Usage(prompt_tokens=int(prompt), completion_tokens=int(completion)),
                cost=data.get("cost"),
                model_calls=int(data["model_calls"]),
                consecutive_errors=int(data["consecutive_errors"]),
                last_error=data.get("last_error"),
                paused=PausedStep.from_dict(paused) if paused else None,
                inflight=InflightStep.from_dict(inflight) if inflight else None,
                media={
                    str(k): [dict(p) for p in v] for k, v in dict(data.get("media") or {}).items()
                },
                media_bytes=int(data.get("media_bytes") or 0),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"the stored state of run {run_id!r} is damaged ({type(exc).__name__}: {exc}); "
                "it cannot be resumed."
            ) from None
