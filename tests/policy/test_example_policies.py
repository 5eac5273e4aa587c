"""The repository's policies/*.yaml load and fit the example tools in tools/*.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.tools._manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = Headers(tenant="default", principal="cli-user")


def manifest_tools() -> list[str]:
    names = []
    for path in sorted((ROOT / "tools").glob("*.yaml")):
        manifest = load_manifest(path)
        names += [f"{manifest.name}.{bare}" for bare in manifest.tools]
    return names


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return PolicySet.load_dir(ROOT / "policies")


def test_the_example_policies_load(policies: PolicySet) -> None:
    assert {"*", "acme"} <= policies.tenants


def test_the_default_tenant_sees_every_example_tool(policies: PolicySet) -> None:
    names = manifest_tools()
    assert "files.write_file" in names
    assert [n for n in names if not policies.is_visible(n, DEFAULT)] == []
    assert policies.is_visible("time.get_current_time", DEFAULT)


def test_the_default_policy_gates_the_file_write_behind_an_admin(policies: PolicySet) -> None:
    rule = policies.approval_rule("files.write_file", {"path": "/a.txt", "content": "x"}, DEFAULT)
    assert rule is not None and rule.approvers == ("role:admin",)
    assert policies.approval_rule("files.read_file", {"path": "/a.txt"}, DEFAULT) is None


def test_a_viewer_of_the_default_tenant_cannot_see_the_write(policies: PolicySet) -> None:
    viewer = Headers(tenant="default", principal="v", roles=["viewer"])
    assert not policies.is_visible("files.write_file", viewer)
    assert policies.is_visible("files.read_file", viewer)


def test_acme_needs_an_admin_for_shared_writes_only(policies: PolicySet) -> None:
    acme = Headers(tenant="acme", principal="a")
    shared = policies.approval_rule("files.write_file", {"path": "/shared/x"}, acme)
    local = policies.approval_rule("files.write_file", {"path": "/x"}, acme)
    assert shared is not None and shared.approvers == ("role:admin",)
    assert local is not None and local.approvers == ("role:admin", "role:editor")
