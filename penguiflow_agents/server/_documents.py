"""The documents the service answers with, built by the same code as the CLI's ``--json``.

- a run: ``result_document`` of ``cli._run_output`` over the run's stored
  result (``worker.result_of``), exactly what ``run --json`` / ``resume
  --json`` print; a run still executing has status ``running`` and the steps
  of its last checkpoint;
- a tool: the entry of ``tools list --json``;
- an approval: the entry of ``approvals list --json`` plus ``can_decide`` for
  the caller (``ApprovalService.can_decide``).
"""

from __future__ import annotations

from typing import Any

from penguiflow_agents.approvals import ApprovalService, approval_to_json
from penguiflow_agents.cli._run_output import Locations, result_document
from penguiflow_agents.cli._tools import tool_json
from penguiflow_agents.planner import RunResult
from penguiflow_agents.planner._state import RunState
from penguiflow_agents.server._auth import Caller
from penguiflow_agents.server._settings import ServerSettings
from penguiflow_agents.store import RunRecord
from penguiflow_agents.store._base import ApprovalRecord
from penguiflow_agents.worker._submit import result_of

__all__ = ["approval_document", "queued_document", "run_document", "tool_json"]


def _locations(tenant: str, settings: ServerSettings) -> Locations:
    # The server's own locations count as the defaults: printed commands never name its files.
    where = (settings.store, settings.tools, settings.policies)
    return Locations(
        tenant=tenant,
        store=settings.store,
        tools=settings.tools,
        policies=settings.policies,
        defaults=where,
    )


def _running_result(record: RunRecord) -> RunResult:
    state = record.state if isinstance(record.state, dict) else {}
    if state.get("messages") is not None:
        try:
            return RunState.from_dict(state, run_id=record.run_id).result(record.run_id, "running")
        except Exception:  # a checkpoint of a newer format: show the bare run
            pass
    return RunResult(
        status="running", run_id=record.run_id, model=record.model, session_id=record.session_id
    )


def run_document(record: RunRecord, settings: ServerSettings) -> dict[str, Any]:
    """The ``run --json`` document of a stored run."""
    result = result_of(record) or _running_result(record)
    return result_document(
        result,
        _locations(record.tenant, settings),
        record.principal,
        replay=(record.model or "").startswith(("replay", "scripted")),
    )


def queued_document(
    run_id: str, model: str | None, session_id: str | None = None
) -> dict[str, Any]:
    """A run accepted for the workers that none has started yet."""
    doc = RunResult(
        status="running", run_id=run_id, model=model or "", session_id=session_id
    ).to_dict()
    doc.update(resume_command=None, model_is_replay=False)
    return doc


def approval_document(
    record: ApprovalRecord, service: ApprovalService, who: Caller
) -> dict[str, Any]:
    doc = approval_to_json(record)
    doc["status"] = service.effective_status(record)
    doc["can_decide"] = service.can_decide(record, who.headers.principal, who.headers.roles)
    return doc
