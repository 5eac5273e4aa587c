"""Approval records as people and scripts see them: status and JSON shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from penguiflow_agents.store._base import ApprovalRecord

__all__ = ["approval_to_json", "effective_status", "iso_utc"]


def iso_utc(ts: float) -> str:
    """``ts`` (``time.time()``) as ISO-8601 in UTC, e.g. ``2025-01-31T12:00:00+00:00``."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def effective_status(record: ApprovalRecord, now: float) -> str:
    """The stored status, except that a pending request past its expiry is ``expired``.

    An expired request counts as rejected: it can no longer be decided.
    """
    if record.status == "pending" and now > record.expires_at:
        return "expired"
    return record.status


def approval_to_json(record: ApprovalRecord, *, now: float | None = None) -> dict[str, Any]:
    """The ``approvals list --json`` shape of DESIGN.md, plus the decision details.

    ``status`` is the record's status; pass ``now`` to report a pending
    request past its expiry as ``expired`` (``ApprovalService.list`` already
    does this for the records it returns). A record whose stored row is
    damaged carries a ``damaged`` key saying why.
    """
    status = record.status if now is None else effective_status(record, now)
    decision = record.decision
    extra = {} if record.damaged is None else {"damaged": record.damaged}
    return {
        "id": record.id,
        "run_id": record.run_id,
        "call_id": record.call_id,
        "tool": record.tool,
        "arguments": record.arguments,
        "status": status,
        "requested_by": record.requested_by,
        "approvers": list(record.approvers),
        "reason": record.rule.get("reason"),
        "created_at": iso_utc(record.created_at),
        "expires_at": iso_utc(record.expires_at),
        "decision": None
        if decision is None
        else {
            "decision": decision.decision,
            "decided_by": decision.decided_by,
            "decided_at": iso_utc(decision.decided_at),
            "reason": decision.reason,
            "arguments": decision.arguments,
        },
        **extra,  # "damaged": why the stored row could not be read whole (only when it is)
    }
