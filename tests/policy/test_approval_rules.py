"""Approval rules: first match wins, glob on the name plus an optional `when` schema."""

from __future__ import annotations

from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.policy import ApprovalRule, PolicySet

ACME: dict[str, Any] = {
    "tenant": "acme",
    "allow": ["files.*"],
    "approvals": [
        {
            "match": "files.write_*",
            "when": {"properties": {"path": {"pattern": "^/shared/"}}, "required": ["path"]},
            "approvers": ["role:admin"],
            "expires_in_s": 60,
            "reason": "Writes to the shared drive",
        },
        {"match": "files.*", "approvers": ["user:boss"]},
    ],
}
WHO = Headers(tenant="acme", principal="alice")


def test_the_first_matching_rule_applies() -> None:
    rule = PolicySet.from_documents([ACME]).approval_rule(
        "files.write_text", {"path": "/shared/a.txt"}, WHO
    )
    assert rule is not None
    assert rule.match == "files.write_*"
    assert rule.approvers == ("role:admin",)
    assert rule.expires_in_s == 60
    assert rule.reason == "Writes to the shared drive"


def test_a_rule_whose_when_rejects_the_arguments_is_skipped() -> None:
    rule = PolicySet.from_documents([ACME]).approval_rule(
        "files.write_text", {"path": "/tmp/a.txt"}, WHO
    )
    assert rule is not None and rule.match == "files.*"


def test_no_rule_matches_a_tool_outside_every_glob() -> None:
    assert PolicySet.from_documents([ACME]).approval_rule("time.now", {}, WHO) is None


def test_a_tenant_without_policy_has_no_rules() -> None:
    policies = PolicySet.from_documents([ACME])
    assert policies.approval_rule("files.write_text", {}, Headers(tenant="globex")) is None


def test_rules_come_from_the_default_policy_for_other_tenants() -> None:
    star = {**ACME, "tenant": "*"}
    policies = PolicySet.from_documents([star])
    assert policies.approval_rule("files.read", {}, Headers(tenant="globex")) is not None


def test_rule_defaults_and_to_dict() -> None:
    rule = PolicySet.from_documents(
        [{"tenant": "acme", "approvals": [{"match": "x.*", "approvers": ["role:admin"]}]}]
    ).approval_rule("x.y", {}, WHO)
    assert rule == ApprovalRule(match="x.*", approvers=("role:admin",))
    assert rule.to_dict() == {
        "match": "x.*",
        "when": None,
        "approvers": ["role:admin"],
        "expires_in_s": 3600.0,
        "reason": None,
    }


def test_an_approval_rule_built_in_code_evaluates_its_when() -> None:
    rule = ApprovalRule(
        match="a.*", when={"properties": {"n": {"maximum": 3}}}, approvers=("user:x",)
    )
    assert rule.matches("a.b", {"n": 2})
    assert not rule.matches("a.b", {"n": 4})
    assert not rule.matches("b.a", {"n": 2})
