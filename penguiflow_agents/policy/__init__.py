"""Tenant policies: which tools a caller sees, which calls need a human decision.

``PolicySet.load_dir("policies")`` loads every ``policies/*.yaml`` file (a bad
file raises ``PolicyError``: never run with half a policy). The evaluation
rules (default deny, deny wins, role narrowing, the ``*`` default, approval
rule order) are documented in ``penguiflow_agents.policy._set``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from penguiflow_agents.policy._check import PolicyFinding, check_policies
from penguiflow_agents.policy._document import (
    ApprovalRuleDoc,
    PolicyDocument,
    QuotasDoc,
    RoleDoc,
    load_policy_file,
    parse_policy,
)
from penguiflow_agents.policy._set import ApprovalRule, PolicySet, ToolView

if TYPE_CHECKING:
    from penguiflow_agents.policy._quotas import LocalQuotaLedger, QuotaLedger, TenantQuotas
    from penguiflow_agents.policy._quotas_redis import RedisQuotaLedger

__all__ = [
    "ApprovalRule",
    "ApprovalRuleDoc",
    "LocalQuotaLedger",
    "PolicyDocument",
    "PolicyFinding",
    "PolicySet",
    "QuotaLedger",
    "QuotasDoc",
    "RedisQuotaLedger",
    "RoleDoc",
    "TenantQuotas",
    "ToolView",
    "check_policies",
    "load_policy_file",
    "parse_policy",
]

# The quota gate wraps planners and models, and the Redis ledger needs redis: loaded on use.
_LAZY = {
    "LocalQuotaLedger": "penguiflow_agents.policy._quotas",
    "QuotaLedger": "penguiflow_agents.policy._quotas",
    "TenantQuotas": "penguiflow_agents.policy._quotas",
    "RedisQuotaLedger": "penguiflow_agents.policy._quotas_redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
