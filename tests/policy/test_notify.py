"""An approval rule's `notify` list: validated, kept, and not part of the policy version."""

from __future__ import annotations

from typing import Any

import pytest

from penguiflow_agents.exceptions import PolicyError
from penguiflow_agents.policy import PolicySet, parse_policy


def doc(notify: Any) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "allow": ["files.*"],
        "approvals": [{"match": "files.write_*", "approvers": ["role:admin"], "notify": notify}],
    }


def test_notify_urls_are_kept_on_the_rule_once_each() -> None:
    urls = ["https://a.example/h", "http://127.0.0.1:9/h", "https://a.example/h"]
    policies = PolicySet.from_documents([doc(urls)])
    (rule,) = parse_policy(doc(urls), file="p.yaml").approvals
    assert rule.notify == urls[:2]
    assert policies.notify_urls() == urls[:2]
    assert PolicySet.from_documents([doc([])]).notify_urls() == []


@pytest.mark.parametrize(
    ("notify", "reason"),
    [
        ("https://a.example/h", "must be a YAML list"),
        (["ftp://a.example/h"], "is not an http(s) URL"),
        (["https://me:pw@a.example/h"], "carries credentials"),
        ([42], "input should be a valid string"),
    ],
)
def test_a_bad_notify_entry_names_the_file_the_key_and_the_reason(notify: Any, reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc(notify), file="policies/acme.yaml")
    assert info.value.file == "policies/acme.yaml"
    assert info.value.key is not None and info.value.key.startswith("approvals.0.notify")
    assert reason in info.value.reason
    assert "pw" not in str(info.value)


def test_changing_notify_urls_keeps_the_policy_version_so_pending_approvals_stay_valid() -> None:
    without = dict(doc([]))
    del without["approvals"][0]["notify"]
    versions = {
        PolicySet.from_documents([d]).version_for("acme")
        for d in (without, doc([]), doc(["https://a.example/h"]), doc(["https://b.example/h"]))
    }
    assert len(versions) == 1
