"""MCP tool annotations give a tool its default risk and idempotency; policies gate on risk.

Against a real stdio MCP server (tests/tools/annotated_server.py) whose tools
declare readOnlyHint / destructiveHint / idempotentHint, through the source,
the `tools call` CLI and a `run` on the replay model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.cli import main
from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._mcp import MCPToolSource
from penguiflow_agents.tools._types import ToolSpec

SERVER = Path(__file__).with_name("annotated_server.py")
# Longest one CLI process may take (litellm's import alone takes seconds on a busy machine).
CLI_TIMEOUT_S = 120
PYCACHE = Path(tempfile.gettempdir()) / "penguiflow-test-pycache"

POLICY = """\
tenant: acme
allow: ["ann.*"]
approvals:
  - risk: high
    approvers: ["role:admin"]
    reason: "A destructive tool"
"""


def _manifest(**extra: Any) -> SourceManifest:
    command = [sys.executable, str(SERVER), *extra.pop("argv", [])]
    return SourceManifest(
        name="ann", transport="mcp_stdio", command=command, path="ann.yaml", **extra
    )


async def _specs(manifest: SourceManifest) -> dict[str, ToolSpec]:
    source = MCPToolSource(manifest)
    try:
        return {s.bare_name: s for s in await source.list_tools()}
    finally:
        await source.aclose()


async def test_the_hints_set_risk_and_idempotency_and_unannotated_is_medium() -> None:
    specs = await _specs(_manifest())
    got = {name: (s.risk, s.idempotent) for name, s in specs.items()}
    assert got == {
        "read_notes": ("low", True),  # read-only: nothing to repeat
        "delete_all": ("high", True),  # destructive, idempotentHint
        "append_note": ("medium", False),  # destructiveHint: false (additive)
        "plain": ("medium", False),  # no annotations: not "low"
    }


async def test_the_manifest_overrides_the_hints() -> None:
    specs = await _specs(
        _manifest(
            idempotent=False,  # written in the file: wins over read_notes' readOnlyHint
            tools={
                "delete_all": {"risk": "medium", "idempotent": False},
                "plain": {"risk": "low"},
            },
        )
    )
    assert (specs["read_notes"].risk, specs["read_notes"].idempotent) == ("low", False)
    assert (specs["delete_all"].risk, specs["delete_all"].idempotent) == ("medium", False)
    assert (specs["plain"].risk, specs["plain"].idempotent) == ("low", False)


async def test_the_annotations_are_in_the_definition_hash() -> None:
    before = await _specs(_manifest())
    after = await _specs(_manifest(argv=["--flip"]))  # read_notes is no longer read-only
    assert before["read_notes"].definition_hash != after["read_notes"].definition_hash
    assert after["read_notes"].risk == "medium"
    # Same risk through an override, so only the annotations differ: still a new hash.
    pinned = {"tools": {"read_notes": {"risk": "low", "idempotent": True}}}
    a = await _specs(_manifest(**pinned))
    b = await _specs(_manifest(argv=["--flip"], **pinned))
    assert (a["read_notes"].risk, a["read_notes"].idempotent) == ("low", True)
    assert (b["read_notes"].risk, b["read_notes"].idempotent) == ("low", True)
    assert a["read_notes"].definition_hash != b["read_notes"].definition_hash
    assert before["plain"].definition_hash == after["plain"].definition_hash


def _project(tmp_path: Path) -> Path:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "ann.yaml").write_text(
        f"name: ann\ntransport: mcp_stdio\ncommand: {json.dumps([sys.executable, str(SERVER)])}\n"
    )
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "acme.yaml").write_text(POLICY)
    return tmp_path


def test_tools_call_refuses_a_high_risk_tool_that_a_risk_rule_gates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path)
    monkeypatch.chdir(project)
    common = ["--tenant", "acme", "--tools", "tools", "--policies", "policies"]
    assert main(["tools", "call", "ann.delete_all", *common]) == 1
    err = capsys.readouterr().err
    assert "needs an approval (A destructive tool)" in err
    assert main(["tools", "call", "ann.plain", *common, "--args", '{"text": "hi"}']) == 0
    assert json.loads(capsys.readouterr().out) == {"result": "hi"}
    assert main(["tools", "list", "--json", "--tools", "tools"]) == 0
    listed = {t["name"]: t["risk"] for t in json.loads(capsys.readouterr().out)}
    assert listed == {
        "ann.read_notes": "low",
        "ann.delete_all": "high",
        "ann.append_note": "medium",
        "ann.plain": "medium",
    }


def test_a_run_pauses_only_for_the_call_of_the_high_risk_tool(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "script.yaml").write_text(
        "turns:\n"
        "  - tool_calls:\n"
        "      - {name: ann.read_notes, arguments: {}, id: read}\n"
        "      - {name: ann.append_note, arguments: {text: x}, id: append}\n"
        "      - {name: ann.delete_all, arguments: {}, id: delete}\n"
        "  - content: done\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "penguiflow_agents", "run", "tidy the notes"),
            *("--model", "replay:script.yaml", "--tenant", "acme", "--json"),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "paused"
    assert [p["tool"] for p in doc["pending_approvals"]] == ["ann.delete_all"]
    assert doc["pending_approvals"][0]["reason"] == "A destructive tool"
    ran = {s["tool"]: s["outcome"] for s in doc["steps"]}
    assert ran == {"ann.read_notes": "ok", "ann.append_note": "ok"}
