"""`penguiflow-agents tools list | call`: operator and caller views, exit codes, no litellm."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from penguiflow_agents.cli import main

REPO = Path(__file__).resolve().parents[2]

POLICY = """\
tenant: acme
allow: ["clock.*", "files.*"]
deny: ["files.list_*"]
roles:
  viewer: {allow: ["clock.*"]}
approvals:
  - match: "files.write_*"
    when: {properties: {path: {pattern: "^/shared/"}}}
    approvers: ["role:admin"]
    expires_in_s: 3600
    reason: "Writes to the shared drive"
"""


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """The CLI configures logging to stderr; keep that out of other tests."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tools/ dir with the demo manifests, a policies/ dir for tenant acme, a sandbox."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("clock.yaml", "files.yaml"):
        shutil.copy(REPO / "tools" / name, tools / name)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "acme.yaml").write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("PENGUIFLOW_SANDBOX", str(tmp_path / "sandbox"))
    return tmp_path


def run(workdir: Path, *argv: str) -> list[str]:
    return [*argv, "--tools", str(workdir / "tools"), "--policies", str(workdir / "policies")]


def test_list_is_the_operator_view_with_every_tool_and_source_state(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run(workdir, "tools", "list")) == 0
    out = capsys.readouterr().out
    assert "operator view: all registered tools" in out
    assert "source clock (python" in out and "): up" in out
    for name in ("clock.add_minutes", "files.write_file", "files.list_files"):
        assert name in out
    assert "risk=high" in out


def test_list_json_has_the_design_shape(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(workdir, "tools", "list", "--json")) == 0
    tools = json.loads(capsys.readouterr().out)
    assert isinstance(tools, list) and len(tools) == 5
    write = next(t for t in tools if t["name"] == "files.write_file")
    assert {"name", "source", "description", "input_schema", "risk", "idempotent"} <= set(write)
    assert write["source"] == "files" and write["risk"] == "high" and write["idempotent"] is False
    assert write["input_schema"]["required"] == ["path", "content"]


def test_a_bad_manifest_is_reported_on_stderr_and_the_others_list(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "tools" / "broken.yaml").write_text("name: broken\ntransport: python\nmodul: x\n")
    assert main(run(workdir, "tools", "list", "--json")) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 5
    assert "broken.yaml" in captured.err and "modul" in captured.err


def test_list_exits_2_when_every_manifest_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "a.yaml").write_text("name: a\ntransport: carrier-pigeon\n")
    assert main(["tools", "list", "--tools", str(tools)]) == 2
    assert "a.yaml" in capsys.readouterr().err


def test_list_exits_2_for_a_missing_tools_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "list", "--tools", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_list_with_tenant_is_exactly_that_callers_view(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run(workdir, "tools", "list", "--tenant", "acme", "--json")) == 0
    names = {t["name"] for t in json.loads(capsys.readouterr().out)}
    assert names == {
        "clock.add_minutes",
        "clock.day_of_week",
        "files.read_file",
        "files.write_file",
    }, "deny wins over allow"
    assert main(run(workdir, "tools", "list", "--tenant", "acme")) == 0
    out = capsys.readouterr().out
    assert "caller view" in out and "operator view" not in out


def test_list_with_a_role_narrows_the_view(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(run(workdir, "tools", "list", "--tenant", "acme", "--role", "viewer", "--json")) == 0
    )
    names = {t["name"] for t in json.loads(capsys.readouterr().out)}
    assert names == {"clock.add_minutes", "clock.day_of_week"}


def test_list_for_a_tenant_without_policy_is_empty(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run(workdir, "tools", "list", "--tenant", "globex", "--json")) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_call_prints_the_result(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = run(workdir, "tools", "call", "clock.add_minutes", "--tenant", "acme")
    argv += ["--args", '{"time": "09:30", "minutes": 45}']
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == {"time": "10:15", "day_offset": 0}


def test_call_json_prints_the_whole_result(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = run(workdir, "tools", "call", "clock.day_of_week", "--tenant", "acme", "--json")
    assert main([*argv, "--args", '{"date": "2025-03-01"}']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["output"]["weekday"] == "Saturday"
    assert result["tool"] == "clock.day_of_week" and result["attempts"] == 1


def test_call_of_a_failing_tool_exits_1(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = run(workdir, "tools", "call", "clock.add_minutes", "--tenant", "acme", "--json")
    assert main([*argv, "--args", '{"time": "09:30"}']) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["error_kind"] == "invalid_arguments"
    argv = run(workdir, "tools", "call", "clock.add_minutes", "--tenant", "acme")
    assert main([*argv, "--args", '{"time": "09:30"}']) == 1
    assert "invalid_arguments" in capsys.readouterr().err


def test_call_with_bad_arguments_names_each_failing_path_and_calls_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = run(workdir, "tools", "call", "files.write_file", "--tenant", "acme")
    bad = '{"path": 7, "mode": "append"}'
    assert main([*argv, "--args", bad]) == 1
    err = capsys.readouterr().err
    for fragment in (
        "invalid_arguments",
        "$.path: 7 is not of type 'string' (type)",
        "$.content: is required (required)",
        "$.mode: is not allowed here; allowed: content, path (additionalProperties)",
    ):
        assert fragment in err, fragment
    assert main([*argv, "--json", "--args", bad]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["error_kind"] == "invalid_arguments" and len(result["structured"]["errors"]) == 3
    sandbox = workdir / "sandbox"
    assert not sandbox.exists() or not any(sandbox.iterdir()), "nothing was written"


def test_list_shows_each_tools_arguments_from_its_schema(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run(workdir, "tools", "list")) == 0
    out = capsys.readouterr().out
    assert "args: time: string, minutes: integer" in out
    assert "args: directory?: string" in out, "optional arguments are marked"


def test_list_json_stdout_is_only_json_even_after_logging_was_configured_elsewhere(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A library (or a test helper) configured structlog's stdout default first: the
    command still sends its logs to stderr."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
    )
    assert main(run(workdir, "tools", "list", "--json", "--verbose")) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 5
    assert "tool_source.up" in captured.err


def test_call_of_a_tool_the_caller_cannot_see_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = workdir / "sandbox"
    argv = run(workdir, "tools", "call", "files.list_files", "--tenant", "acme", "--args", "{}")
    assert main(argv) == 1
    assert "not available" in capsys.readouterr().err
    argv = run(workdir, "tools", "call", "files.read_file", "--tenant", "acme", "--role", "viewer")
    assert main([*argv, "--args", '{"path": "/a.txt"}']) == 1
    assert "not available" in capsys.readouterr().err
    argv = run(workdir, "tools", "call", "clock.add_minutes", "--args", "{}")
    assert main(argv) == 1, "the default tenant has no policy: deny"
    assert not sandbox.exists() or not any(sandbox.iterdir())


def test_call_that_needs_an_approval_is_refused_and_does_not_run(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = run(workdir, "tools", "call", "files.write_file", "--tenant", "acme")
    assert main([*argv, "--args", '{"path": "/shared/x.txt", "content": "hi"}']) == 1
    assert "needs an approval" in capsys.readouterr().err
    assert not (workdir / "sandbox" / "shared" / "x.txt").exists()
    assert main([*argv, "--args", '{"path": "/private/x.txt", "content": "hi"}']) == 0
    assert (workdir / "sandbox" / "private" / "x.txt").read_text() == "hi"


@pytest.mark.parametrize(
    "path", ["/x/../shared/y.txt", "//shared/y.txt", "shared/y.txt", "/./shared//y.txt"]
)
def test_a_crafted_path_does_not_slip_past_an_approval_rule(
    workdir: Path, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    """The rule is matched against the path the tool writes to (its canonical form), not the
    text given: every spelling of /shared/y.txt needs the approval."""
    argv = run(workdir, "tools", "call", "files.write_file", "--tenant", "acme")
    args = json.dumps({"path": path, "content": "hi"})
    assert main([*argv, "--args", args]) == 1
    assert "needs an approval (Writes to the shared drive)" in capsys.readouterr().err
    assert not (workdir / "sandbox" / "shared").exists()


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '"text"'])
def test_call_with_bad_args_json_exits_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    argv = run(workdir, "tools", "call", "clock.add_minutes", "--tenant", "acme", "--args", bad)
    assert main(argv) == 2
    assert "--args" in capsys.readouterr().err


def test_tools_list_does_not_import_litellm(workdir: Path) -> None:
    script = (
        "import sys\n"
        "from penguiflow_agents.cli import main\n"
        f"code = main(['tools', 'list', '--json', '--tools', {str(workdir / 'tools')!r}])\n"
        "assert code == 0, code\n"
        "leaked = sorted(m for m in sys.modules if m == 'litellm' or m.startswith('litellm.'))\n"
        "print('LEAKED' if leaked else 'CLEAN', file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CLEAN" in proc.stderr, proc.stderr
    assert len(json.loads(proc.stdout)) == 5
