"""What a run returns and what ``ReactPlanner.stream`` yields: plain data, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from penguiflow_agents.llm._types import Usage

__all__ = [
    "RUN_RESULT_STATUSES",
    "FinalAnswer",
    "LLMResponded",
    "Paused",
    "PendingApproval",
    "PlannerEvent",
    "RunFinished",
    "RunResult",
    "Step",
    "StepStarted",
    "TextChunk",
    "ToolActivity",
    "ToolCallFinished",
    "ToolCallStarted",
]

RUN_RESULT_STATUSES = ("completed", "failed", "cancelled", "paused")


@dataclass(slots=True, kw_only=True)
class Step:
    """One tool call of a run's trajectory, with its whole result.

    ``outcome`` is ``"ok"`` or why not: a ``ToolErrorKind`` (``invalid_arguments``,
    ``not_found``, ``denied``, ``timeout``, ...), or for gated calls ``rejected``,
    ``expired``, ``approval_void`` (the approval no longer matched the call) or
    ``unknown`` (a process died mid-call; the outcome is unknown).
    ``result`` is the tool's full output on success, else the error text.
    """

    tool: str
    arguments: dict[str, Any]
    outcome: str
    result: Any = None
    latency_s: float = 0.0
    call_id: str = ""
    step: int = 0  # the model turn (1-based) that asked for this call
    approval_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def latency(self) -> float:
        """Seconds the call took (same as ``latency_s``)."""
        return self.latency_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "arguments": self.arguments,
            "outcome": self.outcome,
            "result": self.result,
            "latency_s": self.latency_s,
            "call_id": self.call_id,
            "step": self.step,
            "approval_id": self.approval_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            tool=str(data["tool"]),
            arguments=dict(data.get("arguments") or {}),
            outcome=str(data["outcome"]),
            result=data.get("result"),
            latency_s=float(data.get("latency_s", 0.0)),
            call_id=str(data.get("call_id", "")),
            step=int(data.get("step", 0)),
            approval_id=data.get("approval_id"),
        )


@dataclass(slots=True, kw_only=True)
class PendingApproval:
    """A call the run is waiting on, by ``kind``:

    - ``approval``: decide approval ``id``, then resume the run;
    - ``authorization``: the run's owner (``principal``) must authorize ``source``
      (``url``, or ``auth login``), then resume the run; the call then runs once.
    """

    id: str
    tool: str
    arguments: dict[str, Any]
    call_id: str = ""
    approvers: list[str] = field(default_factory=list)
    reason: str | None = None
    expires_at: float = 0.0  # time.time()
    kind: str = "approval"  # approval | authorization
    source: str | None = None  # authorization: the source to authorize
    principal: str | None = None  # authorization: who must authorize ("*": the tenant)
    url: str | None = None  # authorization: where that person authorizes
    attempt: int = 0  # authorization: calls tried after an authorization (exactly-once keys)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "tool": self.tool,
            "arguments": self.arguments,
            "call_id": self.call_id,
            "approvers": list(self.approvers),
            "reason": self.reason,
            "expires_at": self.expires_at,
        }
        if self.kind == "authorization":
            out.update(
                source=self.source, principal=self.principal, url=self.url, attempt=self.attempt
            )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingApproval:
        return cls(
            id=str(data["id"]),
            tool=str(data["tool"]),
            arguments=dict(data.get("arguments") or {}),
            call_id=str(data.get("call_id", "")),
            approvers=[str(a) for a in data.get("approvers") or []],
            reason=data.get("reason"),
            expires_at=float(data.get("expires_at", 0.0)),
            kind=str(data.get("kind") or "approval"),
            source=data.get("source"),
            principal=data.get("principal"),
            url=data.get("url"),
            attempt=int(data.get("attempt") or 0),
        )


@dataclass(slots=True, kw_only=True)
class RunResult:
    """How a run ended (or paused).

    ``status`` is ``completed`` (``answer`` is the model's final answer),
    ``failed`` or ``cancelled`` (``error`` says why), or ``paused`` (waiting
    for the decisions in ``pending_approvals``; ``ReactPlanner.resume`` goes on).

    ``output``: with ``ReactPlanner(output_type=Model)``, the completed run's
    answer as a validated ``Model`` instance (``answer`` is its JSON); a
    ``RunResult`` read back from JSON (``from_dict``) holds the JSON object.
    """

    status: str
    run_id: str
    answer: str | None = None
    error: str | None = None
    steps: list[Step] = field(default_factory=list)
    pending_approvals: list[PendingApproval] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None  # USD, when the model reports prices
    model: str = ""
    session_id: str | None = None
    output: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``run --json`` (DESIGN.md, "Command line")."""
        dump = getattr(self.output, "model_dump", None)
        data = {
            "status": self.status,
            "run_id": self.run_id,
            "answer": self.answer,
            "error": self.error,
            "pending_approvals": [p.to_dict() for p in self.pending_approvals],
            "steps": [s.to_dict() for s in self.steps],
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
            },
            "cost": self.cost,
            "model": self.model,
            "session_id": self.session_id,
        }
        if self.output is not None:  # only typed runs have the key
            data["output"] = dump(mode="json") if callable(dump) else self.output
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        usage = data.get("usage") or {}
        return cls(
            status=str(data["status"]),
            run_id=str(data["run_id"]),
            answer=data.get("answer"),
            error=data.get("error"),
            steps=[Step.from_dict(s) for s in data.get("steps") or []],
            pending_approvals=[
                PendingApproval.from_dict(p) for p in data.get("pending_approvals") or []
            ],
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            ),
            cost=data.get("cost"),
            model=str(data.get("model", "")),
            session_id=data.get("session_id"),
            output=data.get("output"),
        )


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted:
    """The planner is about to ask the model (``step`` is 1-based)."""

    kind: ClassVar[str] = "step"
    run_id: str
    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TextChunk:
    """A piece of answer text, when the model streams."""

    kind: ClassVar[str] = "text"
    run_id: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMResponded:
    """The model answered: text and/or tool calls (canonical names)."""

    kind: ClassVar[str] = "llm_response"
    run_id: str
    step: int
    content: str | None
    tool_calls: tuple[tuple[str, str], ...]  # (call id, tool name)
    usage: Usage
    latency_s: float
    cost_usd: float | None = None  # this call's, when the model reports prices


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolActivity:
    """A call in flight reported something: ``tool.progress`` (an MCP progress
    notification: progress, total, message) or ``tool.retry`` (attempt, delay_s)."""

    kind: ClassVar[str] = "tool_activity"
    run_id: str
    call_id: str
    tool: str
    event: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallStarted:
    kind: ClassVar[str] = "tool_call_started"
    run_id: str
    step: int
    call_id: str
    tool: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallFinished:
    """A call ended (or was refused); ``record`` is its trajectory entry."""

    kind: ClassVar[str] = "tool_call_finished"
    run_id: str
    record: Step


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalAnswer:
    kind: ClassVar[str] = "final_answer"
    run_id: str
    answer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Paused:
    """The run stopped before calls that need a human decision."""

    kind: ClassVar[str] = "paused"
    run_id: str
    pending_approvals: tuple[PendingApproval, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    """Always the last event of a stream: the run's result (also when paused)."""

    kind: ClassVar[str] = "run_finished"
    result: RunResult


PlannerEvent: TypeAlias = (
    StepStarted
    | TextChunk
    | LLMResponded
    | ToolCallStarted
    | ToolActivity
    | ToolCallFinished
    | FinalAnswer
    | Paused
    | RunFinished
)
