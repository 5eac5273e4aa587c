"""The README's "Write a policy" example loads and behaves as the README says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from penguiflow_agents._identity import Headers
from penguiflow_agents.policy import PolicySet

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_policy() -> dict[str, object]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Write a policy", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    data = yaml.safe_load(block)
    assert isinstance(data, dict)
    return data


def test_the_readme_policy_loads_and_does_what_its_comments_say() -> None:
    policies = PolicySet.from_documents([readme_policy()])
    acme = Headers(tenant="acme", principal="alice")
    viewer = Headers(tenant="acme", principal="vic", roles=["viewer"])
    assert policies.is_visible("files.write_text", acme)
    assert not policies.is_visible("files.delete_all", acme)  # deny wins
    assert not policies.is_visible("files.write_text", viewer)  # narrowed by role
    assert policies.is_visible("files.read_text", viewer)
    assert not policies.is_visible("time.now", Headers(tenant="globex"))  # no file: no tools
    rule = policies.approval_rule("files.write_text", {"path": "/shared/a"}, acme)
    assert rule is not None and rule.approvers == ("role:admin",)
    shouted = policies.approval_rule("files.write_text", {"path": "/SHARED/a"}, acme)
    assert shouted is not None and shouted.approvers == ("role:admin",)  # (?i): every spelling
    assert policies.approval_rule("files.write_text", {"path": "/home/a"}, acme) is None
