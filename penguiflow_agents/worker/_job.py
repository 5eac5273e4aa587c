"""``Job``: what a submitter puts on the bus for a worker, checked at the boundary.

A job names a run and the caller's identity; it carries no secret (no key,
no token, no store or bus URL): the worker has its own configuration. The
submitter allocates the run id, so it can poll the store for the run.

```
{"kind": "run", "tenant": "acme", "principal": "alice", "roles": ["viewer"],
 "query": "What time is it in Tokyo?", "run_id": "run_...", "model": null, "session_id": null}
{"kind": "resume", "tenant": "acme", "principal": "bob", "roles": ["admin"], "run_id": "run_..."}
```
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import UserError

__all__ = ["JOB_KINDS", "Job", "new_run_id"]

JOB_KINDS = ("run", "resume")
# Longest accepted identifier (tenant, principal, role, run id, session id, model).
_MAX_NAME = 512
# Longest accepted question.
_MAX_QUERY = 100_000


def new_run_id() -> str:
    """A fresh run id in the planner's format (``run_`` + 32 hex digits)."""
    return "run_" + uuid.uuid4().hex


class _JobModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # newer submitters may add keys

    kind: Literal["run", "resume"]
    tenant: str = Field(min_length=1, max_length=_MAX_NAME)
    principal: str = Field(default="anonymous", min_length=1, max_length=_MAX_NAME)
    roles: list[str] = Field(default_factory=list, max_length=64)
    run_id: str = Field(min_length=1, max_length=_MAX_NAME)
    query: str | None = Field(default=None, max_length=_MAX_QUERY)
    model: str | None = Field(default=None, max_length=_MAX_NAME)
    session_id: str | None = Field(default=None, max_length=_MAX_NAME)
    # W3C trace context of the submitter (traceparent, tracestate): one trace across processes.
    trace: dict[str, str] = Field(default_factory=dict, max_length=4)


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A run to start (``kind="run"``, with ``query``) or a paused run to continue (``"resume"``)."""

    kind: str
    tenant: str
    principal: str
    run_id: str
    roles: tuple[str, ...] = field(default=())
    query: str | None = None
    model: str | None = None  # a --model value; None: the worker's default
    session_id: str | None = None
    trace: Mapping[str, str] = field(default_factory=dict)  # W3C trace context of the submitter

    @property
    def headers(self) -> Headers:
        """The identity the job acts as (its tenant bounds every run it touches)."""
        return Headers(tenant=self.tenant, principal=self.principal, roles=self.roles)

    @classmethod
    def run(
        cls,
        query: str,
        *,
        headers: Headers,
        run_id: str | None = None,
        model: str | None = None,
        session_id: str | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> Job:
        """A job that starts a run (a fresh run id unless one is given)."""
        return cls.from_dict(
            {
                "kind": "run",
                **headers.to_dict(),
                "query": query,
                "run_id": run_id or new_run_id(),
                "model": model,
                "session_id": session_id,
                "trace": dict(trace or {}),
            }
        )

    @classmethod
    def resume(
        cls, run_id: str, *, headers: Headers, trace: Mapping[str, str] | None = None
    ) -> Job:
        """A job that continues a paused run once its approvals are decided."""
        return cls.from_dict(
            {"kind": "resume", **headers.to_dict(), "run_id": run_id, "trace": dict(trace or {})}
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """Validate a job from the bus; ``UserError`` saying what is wrong."""
        try:
            model = _JobModel.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "job"
            shown = repr(dict(data))
            shown = shown if len(shown) <= 300 else shown[:299] + "…"
            raise UserError(f"job field {where!r}: {first['msg']} (got {shown}).") from None
        if model.kind == "run" and not (model.query and model.query.strip()):
            raise UserError(f"a run job needs a non-empty 'query', got {model.query!r}.")
        return cls(
            kind=model.kind,
            tenant=model.tenant,
            principal=model.principal,
            roles=tuple(sorted(set(model.roles))),
            run_id=model.run_id,
            query=model.query,
            model=model.model,
            session_id=model.session_id,
            trace=dict(model.trace),
        )

    def to_dict(self) -> dict[str, Any]:
        """The job as published (JSON values only)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "tenant": self.tenant,
            "principal": self.principal,
            "roles": list(self.roles),
            "run_id": self.run_id,
        }
        if self.kind == "run":
            out.update(query=self.query, model=self.model, session_id=self.session_id)
        if self.trace:
            out["trace"] = dict(self.trace)
        return out
