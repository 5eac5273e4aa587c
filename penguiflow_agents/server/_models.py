"""Request and response bodies (pydantic: validated at the boundary, documented in OpenAPI).

Response models describe the documents the CLI prints (``run --json``,
``tools list --json``, ``approvals list --json``); they allow extra keys, so
a document that grows stays valid.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApprovalDocument",
    "DecisionBody",
    "ErrorBody",
    "RunAccepted",
    "RunCreate",
    "RunDocument",
    "ToolDocument",
    "UserRef",
]

# Longest question accepted (as for worker jobs).
MAX_QUERY_CHARS = 100_000
# Longest identifier in a body (session id, model, principal, role).
MAX_NAME = 256
# Longest rejection reason.
MAX_REASON_CHARS = 4_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Document(BaseModel):
    model_config = ConfigDict(extra="allow")


class UserRef(_Body):
    """The end user a key with ``act_for_users`` runs for."""

    principal: str = Field(min_length=1, max_length=MAX_NAME)
    roles: list[str] = Field(default_factory=list, max_length=64)


class RunCreate(_Body):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the question")
    session_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME,
        description="keeps conversation history across runs",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME,
        description="'default' (or none) for the server's model, or one it allows",
    )
    user: UserRef | None = Field(
        default=None, description="run for this end user (keys with act_for_users only)"
    )


class RunAccepted(_Document):
    run_id: str
    status: Literal["running"]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class StepDocument(_Document):
    tool: str
    arguments: dict[str, Any]
    outcome: str
    result: Any = None
    latency_s: float = 0.0
    call_id: str = ""
    step: int = 0
    approval_id: str | None = None


class PendingDocument(_Document):
    id: str
    tool: str
    arguments: dict[str, Any]
    call_id: str = ""
    approvers: list[str] = Field(default_factory=list)
    reason: str | None = None
    expires_at: str | float | None = None
    # approval | authorization (the run's owner must authorize `source` at `url`, then resume).
    kind: str = "approval"
    source: str | None = None
    principal: str | None = None
    url: str | None = None


class RunDocument(_Document):
    """The shape of ``penguiflow-agents run --json``."""

    status: Literal["running", "completed", "paused", "failed", "cancelled"]
    run_id: str
    answer: str | None = None
    error: str | None = None
    pending_approvals: list[PendingDocument] = Field(default_factory=list)
    steps: list[StepDocument] = Field(default_factory=list)
    usage: dict[str, int] = Field(default_factory=dict)
    cost: float | None = None
    model: str = ""
    session_id: str | None = None


class ToolDocument(_Document):
    """The shape of one entry of ``tools list --json``."""

    name: str
    source: str
    description: str
    input_schema: dict[str, Any]
    risk: str
    idempotent: bool
    definition_hash: str | None = None


class DecisionDocument(_Document):
    decision: str
    decided_by: str
    decided_at: str
    reason: str | None = None
    arguments: dict[str, Any] | None = None


class ApprovalDocument(_Document):
    """The shape of one entry of ``approvals list --json``, with ``can_decide`` for the caller."""

    id: str
    run_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    status: Literal["pending", "approved", "rejected", "expired"]
    requested_by: str
    approvers: list[str]
    reason: str | None = None
    created_at: str
    expires_at: str
    decision: DecisionDocument | None = None
    can_decide: bool


class DecisionBody(_Body):
    decision: Literal["approve", "reject", "edit"]
    reason: str | None = Field(
        default=None, max_length=MAX_REASON_CHARS, description="needed to reject: the model sees it"
    )
    arguments: dict[str, Any] | None = Field(
        default=None, description="the new arguments (edit only)"
    )
