"""`penguiflow-agents policies check`: valid policy files that surely do not mean what they say."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from penguiflow_agents.cli import main
from penguiflow_agents.policy import PolicySet, check_policies

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tools").mkdir()
    for name in ("clock.yaml", "files.yaml"):
        shutil.copy(REPO / "tools" / name, tmp_path / "tools" / name)
    (tmp_path / "policies").mkdir()
    return tmp_path


def write(project: Path, name: str, text: str) -> None:
    (project / "policies" / name).write_text(text)


def check(project: Path, *extra: str) -> list[str]:
    argv = ["policies", "check", "--tools", str(project / "tools")]
    return [*argv, "--policies", str(project / "policies"), *extra]


def test_the_repositorys_own_policies_have_no_findings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    where = ["--tools", str(REPO / "tools"), "--policies", str(REPO / "policies")]
    argv = ["policies", "check", *where]
    assert main(argv) == 0, capsys.readouterr()
    assert "no findings" in capsys.readouterr().out


def test_a_misspelt_glob_is_found_and_exits_1(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project, "acme.yaml", 'tenant: acme\nallow: ["tiem.*", "clock.*"]\n')
    assert main(check(project)) == 1
    out = capsys.readouterr().out
    assert "acme.yaml: allow[0]: 'tiem.*' matches no registered tool" in out
    assert "allow[1]" not in out


def test_a_file_named_for_another_tenant_is_found_and_warned_at_load_time(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project, "nu.yaml", 'tenant: other\nallow: ["clock.*"]\n')
    assert main(check(project, "--json")) == 1
    [finding] = json.loads(capsys.readouterr().out)
    assert finding["key"] == "tenant" and "tenant 'nu' gets the '*' policy" in finding["message"]
    # Every command that loads the policies warns (here: a caller's view of the tools).
    argv = ["tools", "list", "--tenant", "other", "--tools", str(project / "tools")]
    assert main([*argv, "--policies", str(project / "policies")]) == 0
    assert "warning: " in capsys.readouterr().err
    assert len(PolicySet.load_dir(project / "policies").warnings) == 1


def test_rules_that_can_never_apply_are_found(project: Path) -> None:
    write(
        project,
        "acme.yaml",
        """\
tenant: acme
allow: ["clock.*", "files.read_*"]
deny: ["files.delete_*", "fiels.write_*"]
roles:
  editor: {allow: ["files.write_*"]}
approvals:
  - {match: "clock.*", approvers: ["role:admin"]}
  - {match: "clock.add_minutes", approvers: ["role:admin"]}
  - {match: "files.write_file", approvers: ["role:admin"]}
""",
    )
    tools = ["clock.add_minutes", "clock.day_of_week", "files.read_file", "files.write_file"]
    found = {f.key: f.message for f in check_policies(project / "policies", tools)}
    assert "approvals[0] ('clock.*', no 'when') catches its calls first" in found["approvals[1]"]
    assert "not in the tenant's view" in found["approvals[2].match"]
    assert "never widen" in found["roles.editor.allow[0]"]
    assert "deny[0]" not in found, "a guard on a real source is fine"
    assert "names no registered source ('fiels')" in found["deny[1]"]
    assert "allow[0]" not in found and "approvals[0]" not in found


def test_globs_on_a_source_that_is_down_are_not_reported(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tools" / "broken.yaml").write_text(
        "name: broken\ntransport: mcp_stdio\ncommand: [python, -m, penguiflow_no_such_module]\n"
    )
    write(project, "acme.yaml", 'tenant: acme\nallow: ["broken.*", "clock.*"]\n')
    assert main(check(project)) == 0
    captured = capsys.readouterr()
    assert "source 'broken' is down" in captured.err and "no findings" in captured.out


def test_a_bad_policy_file_is_a_configuration_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project, "acme.yaml", "tenant: acme\nallow: clock.*\n")
    assert main(check(project)) == 2
    assert "acme.yaml" in capsys.readouterr().err
