"""Approval rules on a tool's risk (`risk: high`), alone or with a name glob."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import PolicyError
from penguiflow_agents.policy import ApprovalRule, PolicySet, check_policies
from penguiflow_agents.tools._types import sha256_json

WHO = Headers(tenant="acme", principal="alice")


def _set(*rules: dict[str, Any]) -> PolicySet:
    return PolicySet.from_documents([{"tenant": "acme", "allow": ["*"], "approvals": list(rules)}])


def _error(tmp_path: Path, rule: str) -> PolicyError:
    (tmp_path / "acme.yaml").write_text(f"tenant: acme\napprovals:\n  - {rule}\n")
    with pytest.raises(PolicyError) as info:
        PolicySet.load_dir(tmp_path)
    return info.value


def test_a_rule_on_risk_alone_gates_every_tool_of_that_risk() -> None:
    policies = _set({"risk": "high", "approvers": ["role:admin"]})
    rule = policies.approval_rule("gh.delete_repo", {}, WHO, risk="high")
    assert rule is not None and rule.match == "*" and rule.risk == ("high",)
    assert policies.approval_rule("gh.delete_repo", {}, WHO, risk="medium") is None
    assert policies.approval_rule("gh.list_issues", {}, WHO, risk="low") is None


def test_a_list_of_levels_and_a_glob_must_both_hold() -> None:
    policies = _set({"match": "gh.*", "risk": ["medium", "high"], "approvers": ["user:boss"]})
    assert policies.approval_rule("gh.create_issue", {}, WHO, risk="medium") is not None
    assert policies.approval_rule("gh.create_issue", {}, WHO, risk="low") is None
    assert policies.approval_rule("jira.create_issue", {}, WHO, risk="high") is None


def test_an_unknown_risk_never_skips_a_rule_on_risk() -> None:
    policies = _set({"risk": "low", "approvers": ["user:boss"]})
    assert policies.approval_rule("gh.anything", {}, WHO) is not None


def test_rules_are_still_tried_in_order_with_risk_in_them() -> None:
    policies = _set(
        {"risk": "high", "approvers": ["role:admin"], "reason": "high risk"},
        {"match": "gh.*", "approvers": ["role:editor"]},
    )
    high = policies.approval_rule("gh.delete_repo", {}, WHO, risk="high")
    low = policies.approval_rule("gh.list_issues", {}, WHO, risk="low")
    assert high is not None and high.reason == "high risk"
    assert low is not None and low.approvers == ("role:editor",)


def test_to_dict_names_the_levels_only_when_the_rule_has_some() -> None:
    assert ApprovalRule(match="*", risk=("high",), approvers=("user:x",)).to_dict()["risk"] == [
        "high"
    ]
    assert "risk" not in ApprovalRule(match="a.*", approvers=("user:x",)).to_dict()


def test_a_rule_naming_neither_tools_nor_risk_is_refused(tmp_path: Path) -> None:
    err = _error(tmp_path, "{approvers: ['role:admin']}")
    assert err.key == "approvals.0"
    assert "'match'" in err.reason and "'risk'" in err.reason


def test_an_unknown_risk_level_is_refused_naming_the_levels(tmp_path: Path) -> None:
    err = _error(tmp_path, "{risk: severe, approvers: ['role:admin']}")
    assert err.key is not None and err.key.startswith("approvals.0.risk")
    assert "'low'" in err.reason and "'high'" in err.reason and "severe" in err.reason


def test_an_empty_risk_list_is_refused(tmp_path: Path) -> None:
    err = _error(tmp_path, "{risk: [], approvers: ['role:admin']}")
    assert err.key == "approvals.0.risk"


def test_a_policy_without_risk_rules_keeps_its_version() -> None:
    """Adding the `risk` key to the schema does not void the approvals of existing policies."""
    rule = {"match": "a.*", "approvers": ["user:x"]}
    doc = {"tenant": "acme", "allow": ["*"], "approvals": [rule]}
    with_risk = {**doc, "approvals": [{**rule, "risk": "high"}]}
    a = PolicySet.from_documents([doc]).version_for("acme")
    b = PolicySet.from_documents([with_risk]).version_for("acme")
    assert a != b
    # The version of the rule-without-risk is the one computed before `risk` existed.
    legacy = {
        "tenant": "acme",
        "allow": ["*"],
        "deny": [],
        "roles": {},
        "approvals": [
            {
                "match": "a.*",
                "when": None,
                "approvers": ["user:x"],
                "expires_in_s": 3600.0,
                "reason": None,
            }
        ],
    }
    assert a == sha256_json(legacy)


def test_policies_check_sees_a_rule_shadowed_by_a_wider_risk_rule(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        "tenant: acme\nallow: ['*']\napprovals:\n"
        "  - {risk: [medium, high], approvers: ['role:admin']}\n"
        "  - {match: 'gh.*', risk: high, approvers: ['role:editor']}\n"
        "  - {match: 'gh.*', approvers: ['role:editor']}\n"
    )
    found = [str(f) for f in check_policies(tmp_path)]
    assert len(found) == 1, found
    assert "approvals[1]" in found[0] and "(risk medium, high)" in found[0]
