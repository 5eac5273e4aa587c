"""Loading policies/*.yaml: a bad file names file, key and reason; nothing half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import ConfigError, PolicyError
from penguiflow_agents.policy import PolicySet

GOOD = """\
tenant: acme
allow: ["time.*", "files.read_*", "files.write_*"]
deny: ["files.delete_*"]
roles:
  viewer: {allow: ["time.*", "files.read_*"]}
approvals:
  - match: "files.write_*"
    when: {properties: {path: {pattern: "^/shared/"}}}
    approvers: ["role:admin"]
    expires_in_s: 3600
    reason: "Writes to the shared drive"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> PolicyError:
    write(tmp_path, "acme.yaml", text)
    with pytest.raises(PolicyError) as info:
        PolicySet.load_dir(tmp_path)
    return info.value


def test_the_design_example_loads_and_applies(tmp_path: Path) -> None:
    write(tmp_path, "acme.yaml", GOOD)
    policies = PolicySet.load_dir(tmp_path)
    acme = Headers(tenant="acme", principal="p")
    assert policies.is_visible("files.write_text", acme)
    assert not policies.is_visible("files.delete_all", acme)
    assert policies.tenants == frozenset({"acme"})


def test_a_missing_directory_is_an_empty_set_that_denies_everything(tmp_path: Path) -> None:
    policies = PolicySet.load_dir(tmp_path / "nowhere")
    assert not policies.is_visible("time.get_current_time", Headers(tenant="default"))


def test_a_policy_error_is_a_config_error_with_file_key_and_reason(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("deny:", "denny:"))
    assert isinstance(err, ConfigError)
    assert err.file == str(tmp_path / "acme.yaml")
    assert err.key == "denny"
    assert "not a known key" in err.reason and "deny" in err.reason
    assert str(err).startswith(f"{tmp_path / 'acme.yaml'}: denny: ")


def test_an_unknown_key_inside_a_role_is_refused_with_its_path(tmp_path: Path) -> None:
    err = error_of(tmp_path, "tenant: acme\nroles:\n  viewer: {allw: ['x']}\n")
    assert err.key == "roles.viewer.allw"
    assert "allow, deny" in err.reason


def test_an_unknown_key_inside_an_approval_rule_is_refused(tmp_path: Path) -> None:
    text = "tenant: acme\napprovals:\n  - {match: 'a.*', approvers: ['role:admin'], expire: 3}\n"
    err = error_of(tmp_path, text)
    assert err.key == "approvals.0.expire"


def test_a_glob_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "tenant: acme\nallow: ['time.*', 42]\n")
    assert err.key == "allow.1"
    assert "string" in err.reason and "42" in err.reason


def test_a_glob_list_written_as_a_string_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "tenant: acme\nallow: 'time.*'\n")
    assert err.key == "allow"
    assert "list" in err.reason and "'time.*'" in err.reason


def test_an_empty_glob_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "tenant: acme\ndeny: ['']\n")
    assert err.key == "deny.0"


def test_a_when_that_is_not_a_valid_json_schema_is_refused(tmp_path: Path) -> None:
    text = (
        "tenant: acme\napprovals:\n"
        "  - {match: 'files.*', approvers: ['role:admin'], when: {type: 12}}\n"
    )
    err = error_of(tmp_path, text)
    assert err.key == "approvals.0.when"
    assert "not a valid JSON Schema" in err.reason


def test_an_approver_that_is_neither_role_nor_user_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "tenant: acme\napprovals:\n  - {match: 'a.*', approvers: [admin]}\n")
    assert err.key == "approvals.0.approvers.0"
    assert "role:" in err.reason


def test_an_approval_rule_without_approvers_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "tenant: acme\napprovals:\n  - {match: 'a.*', approvers: []}\n")
    assert err.key == "approvals.0.approvers"


def test_a_non_positive_expiry_is_refused(tmp_path: Path) -> None:
    text = "tenant: acme\napprovals:\n  - {match: 'a.*', approvers: ['user:bo'], expires_in_s: 0}\n"
    assert error_of(tmp_path, text).key == "approvals.0.expires_in_s"


def test_a_missing_tenant_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "allow: ['time.*']\n")
    assert err.key == "tenant"
    assert "required" in err.reason


def test_a_tenant_name_with_glob_characters_is_refused(tmp_path: Path) -> None:
    assert error_of(tmp_path, "tenant: 'ac*'\n").key == "tenant"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, "tenant: acme\nallow: [time.*\n")
    assert err.key is None
    assert "not valid YAML" in err.reason and "line" in err.reason


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "- just\n- a list\n")
    assert "mapping" in err.reason


def test_two_files_for_one_tenant_are_an_error_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "tenant: acme\nallow: ['time.*']\n")
    write(tmp_path, "b.yaml", "tenant: acme\nallow: ['files.*']\n")
    with pytest.raises(PolicyError) as info:
        PolicySet.load_dir(tmp_path)
    assert info.value.key == "tenant"
    assert str(first) in info.value.reason
    assert info.value.file == str(tmp_path / "b.yaml")


def test_one_bad_file_refuses_the_whole_directory(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "tenant: '*'\nallow: ['time.*']\n")
    write(tmp_path, "b.yaml", "tenant: acme\nallow: [1]\n")
    with pytest.raises(PolicyError):
        PolicySet.load_dir(tmp_path)


def test_yml_files_are_read_too(tmp_path: Path) -> None:
    write(tmp_path, "acme.yml", "tenant: acme\nallow: ['time.*']\n")
    assert PolicySet.load_dir(tmp_path).tenants == frozenset({"acme"})


def test_from_documents_validates_like_files() -> None:
    with pytest.raises(PolicyError) as info:
        PolicySet.from_documents([{"tenant": "acme", "allow": ["x"], "extra": 1}])
    assert info.value.key == "extra"
    assert info.value.file == "<document 0>"


def test_the_version_ignores_comments_and_key_order(tmp_path: Path) -> None:
    write(tmp_path, "acme.yaml", "tenant: acme\nallow: ['time.*']\ndeny: []\n")
    before = PolicySet.load_dir(tmp_path).version_for("acme")
    write(tmp_path, "acme.yaml", "# a comment\ndeny: []\nallow: ['time.*']\ntenant: acme\n")
    assert PolicySet.load_dir(tmp_path).version_for("acme") == before


def test_editing_one_tenant_changes_only_its_own_version(tmp_path: Path) -> None:
    write(tmp_path, "default.yaml", "tenant: '*'\nallow: ['time.*']\n")
    write(tmp_path, "acme.yaml", "tenant: acme\nallow: ['time.*']\n")
    before = PolicySet.load_dir(tmp_path)
    write(tmp_path, "acme.yaml", "tenant: acme\nallow: ['time.*', 'files.*']\n")
    after = PolicySet.load_dir(tmp_path)
    assert after.version_for("acme") != before.version_for("acme")
    assert after.version_for("globex") == before.version_for("globex")


def test_tenants_without_a_file_share_the_default_policy_version() -> None:
    policies = PolicySet.from_documents(
        [{"tenant": "*", "allow": ["time.*"]}, {"tenant": "acme", "allow": ["time.*"]}]
    )
    assert policies.version_for("globex") == policies.version_for("initech")
    assert policies.version_for("acme") != policies.version_for("globex")


def test_a_key_written_twice_is_refused_rather_than_silently_dropping_a_deny(
    tmp_path: Path,
) -> None:
    err = error_of(
        tmp_path, "tenant: acme\ndeny: ['files.delete_*']\nallow: ['files.*']\ndeny: []\n"
    )
    assert "'deny' appears twice" in err.reason and "line 4" in err.reason


def test_a_key_written_twice_inside_a_role_is_refused(tmp_path: Path) -> None:
    text = "tenant: acme\nroles:\n  viewer:\n    allow: ['time.*']\n    allow: ['files.*']\n"
    assert "'allow' appears twice" in error_of(tmp_path, text).reason


def test_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = (
        "tenant: acme\nallow: ['files.*']\n"
        "roles:\n  viewer: &base {allow: ['files.read_*']}\n  auditor: {<<: *base, deny: ['x']}\n"
    )
    write(tmp_path, "acme.yaml", text)
    policies = PolicySet.load_dir(tmp_path)
    auditor = Headers(tenant="acme", principal="p", roles=["auditor"])
    assert policies.is_visible("files.read_text", auditor)
    assert not policies.is_visible("files.write_text", auditor)


def test_an_empty_file_is_refused_saying_what_to_write(tmp_path: Path) -> None:
    err = error_of(tmp_path, "# nothing yet\n")
    assert "empty" in err.reason and "tenant:" in err.reason


def test_an_empty_list_or_role_says_how_to_write_it(tmp_path: Path) -> None:
    assert "[] for none" in error_of(tmp_path, "tenant: acme\nallow:\n").reason
    err = error_of(tmp_path, "tenant: acme\nroles:\n  viewer:\n")
    assert err.key == "roles.viewer" and "mapping" in err.reason and "RoleDoc" not in err.reason
