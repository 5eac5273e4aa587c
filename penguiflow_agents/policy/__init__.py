"""Tenant policies: which tools a caller sees, which calls need a human decision.

``PolicySet.load_dir("policies")`` loads every ``policies/*.yaml`` file (a bad
file raises ``PolicyError``: never run with half a policy). The evaluation
rules (default deny, deny wins, role narrowing, the ``*`` default, approval
rule order) are documented in ``penguiflow_agents.policy._set``.
"""

from __future__ import annotations

from penguiflow_agents.policy._check import PolicyFinding, check_policies
from penguiflow_agents.policy._document import (
    ApprovalRuleDoc,
    PolicyDocument,
    RoleDoc,
    load_policy_file,
    parse_policy,
)
from penguiflow_agents.policy._set import ApprovalRule, PolicySet, ToolView

__all__ = [
    "ApprovalRule",
    "ApprovalRuleDoc",
    "PolicyDocument",
    "PolicyFinding",
    "PolicySet",
    "RoleDoc",
    "ToolView",
    "check_policies",
    "load_policy_file",
    "parse_policy",
]
