"""Human approval of sensitive tool calls (see DESIGN.md, "Approvals (HITL)").

``ApprovalService(store, policies)`` creates requests bound to one call,
records decisions (approve, reject, edit) from allowed principals only, and
checks an approved call's binding again right before it runs.
"""

from __future__ import annotations

from penguiflow_agents.approvals._json import approval_to_json, effective_status, iso_utc
from penguiflow_agents.approvals._service import DECISIONS, ApprovalService, may_decide

__all__ = [
    "DECISIONS",
    "ApprovalService",
    "approval_to_json",
    "effective_status",
    "iso_utc",
    "may_decide",
]
