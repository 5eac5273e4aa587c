"""Tool views: default deny, deny wins, role narrowing, the `*` default, caching."""

from __future__ import annotations

from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.policy import PolicySet, ToolView
from penguiflow_agents.tools._types import ToolSpec

NAMES = [
    "time.get_current_time",
    "time.convert_time",
    "files.read_text",
    "files.write_text",
    "files.delete_file",
    "Files.read_text",
]


def specs(names: list[str] = NAMES) -> list[ToolSpec]:
    return [
        ToolSpec(name=n, source=n.split(".")[0], description=n, input_schema={}).with_hash()
        for n in names
    ]


def visible(policies: PolicySet, **headers: Any) -> set[str]:
    return set(policies.view(specs(), Headers(**headers)).names)


ACME: dict[str, Any] = {
    "tenant": "acme",
    "allow": ["time.*", "files.*"],
    "deny": ["files.delete_*"],
    "roles": {
        "viewer": {"allow": ["time.*", "files.read_*"]},
        "clock": {"allow": ["time.*"], "deny": ["time.convert_*"]},
        "wide": {"allow": ["*"]},
    },
}


def test_no_policy_at_all_denies_every_tool() -> None:
    assert visible(PolicySet.from_documents([]), tenant="acme") == set()


def test_a_tenant_without_its_own_file_and_no_default_sees_nothing() -> None:
    policies = PolicySet.from_documents([ACME])
    assert visible(policies, tenant="globex") == set()


def test_the_star_policy_applies_to_tenants_without_their_own_file() -> None:
    policies = PolicySet.from_documents([ACME, {"tenant": "*", "allow": ["time.get_*"]}])
    assert visible(policies, tenant="globex") == {"time.get_current_time"}
    assert "files.read_text" in visible(policies, tenant="acme")


def test_deny_wins_over_allow() -> None:
    policies = PolicySet.from_documents([ACME])
    names = visible(policies, tenant="acme")
    assert "files.delete_file" not in names
    assert {"files.read_text", "files.write_text", "time.convert_time"} <= names


def test_globs_are_case_sensitive() -> None:
    policies = PolicySet.from_documents([ACME])
    assert "Files.read_text" not in visible(policies, tenant="acme")


def test_a_listed_role_narrows_the_tenant_view() -> None:
    policies = PolicySet.from_documents([ACME])
    assert visible(policies, tenant="acme", roles=["viewer"]) == {
        "time.get_current_time",
        "time.convert_time",
        "files.read_text",
    }


def test_a_role_deny_removes_names_from_the_narrowed_view() -> None:
    policies = PolicySet.from_documents([ACME])
    assert visible(policies, tenant="acme", roles=["clock"]) == {"time.get_current_time"}


def test_several_listed_roles_see_the_union_but_any_of_their_denies_wins() -> None:
    policies = PolicySet.from_documents([ACME])
    names = visible(policies, tenant="acme", roles=["viewer", "clock"])
    assert names == {"time.get_current_time", "files.read_text"}


def test_a_role_never_widens_the_tenant_view() -> None:
    policies = PolicySet.from_documents([ACME])
    assert "files.delete_file" not in visible(policies, tenant="acme", roles=["wide"])


def test_a_caller_with_no_listed_role_gets_the_tenant_view() -> None:
    policies = PolicySet.from_documents([ACME])
    assert visible(policies, tenant="acme", roles=["unknown"]) == visible(policies, tenant="acme")


def test_is_visible_agrees_with_the_view() -> None:
    policies = PolicySet.from_documents([ACME])
    who = Headers(tenant="acme", principal="p", roles=["viewer"])
    view = policies.view(specs(), who)
    for name in NAMES:
        assert policies.is_visible(name, who) is (name in view)


def test_a_view_keeps_the_tool_order_and_records_the_caller() -> None:
    policies = PolicySet.from_documents([ACME])
    view = policies.view(specs(), Headers(tenant="acme", roles=["viewer", "a"]))
    assert isinstance(view, ToolView)
    assert [t.name for t in view.tools] == [
        "time.get_current_time",
        "time.convert_time",
        "files.read_text",
    ]
    assert view.tenant == "acme" and view.roles == ("a", "viewer")
    assert view.policy_version == policies.version_for("acme")
    assert len(view) == 3 and "files.read_text" in view and "files.write_text" not in view


def test_the_same_caller_and_tool_set_get_the_cached_view() -> None:
    policies = PolicySet.from_documents([ACME])
    tools = specs()
    who = Headers(tenant="acme", principal="a")
    first = policies.view(tools, who)
    assert policies.view(tools, Headers(tenant="acme", principal="b")) is first
    assert policies.view(tools, Headers(tenant="acme", roles=["viewer"])) is not first


def test_a_new_tool_set_gets_a_fresh_view() -> None:
    policies = PolicySet.from_documents([ACME])
    who = Headers(tenant="acme")
    first = policies.view(specs(["time.get_current_time"]), who)
    second = policies.view(specs(["time.get_current_time", "files.read_text"]), who)
    assert first.names == {"time.get_current_time"}
    assert second.names == {"time.get_current_time", "files.read_text"}


def test_one_callers_view_does_not_change_anothers() -> None:
    policies = PolicySet.from_documents([ACME, {"tenant": "*", "allow": ["time.*"]}])
    tools = specs()
    viewer = policies.view(tools, Headers(tenant="acme", roles=["viewer"]))
    other = policies.view(tools, Headers(tenant="globex"))
    again = policies.view(tools, Headers(tenant="acme", roles=["viewer"]))
    assert viewer.names == again.names
    assert other.names == {"time.get_current_time", "time.convert_time"}
