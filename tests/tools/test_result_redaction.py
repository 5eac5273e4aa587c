"""A tool that echoes a ``${VAR}`` secret back (issue #12 §7): the value is masked in its result
before the result is stored, printed (``run --json``) or sent to the model.

The echo comes from a real MCP stdio server (``getenv`` returns a variable the manifest set from
``${PF_ECHO_SECRET}``), through the ``run`` command with a SQLite store and the replay model,
whose second turn branches on whether the secret reached the model's context.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from penguiflow_agents.tools import CallContext, ToolRegistry
from penguiflow_agents.tools._manifest import SourceManifest
from penguiflow_agents.tools._redact import encoded_forms

SECRET = "s3cr3t value/+42"  # a space and URL/base64-special characters
CLI_TIMEOUT_S = 120

SCRIPT = """
turns:
  - tool_calls:
      - {name: srv.getenv, arguments: {name: GIVEN}}
  - branches:
      - match: "s3cr3t"
        content: "LEAKED into the model's context"
      - match: "czNjcjN0"
        content: "LEAKED as base64"
      - content: "clean"
"""


def _stdio_command() -> list[str]:
    return [sys.executable, "-m", "penguiflow_agents.testing.mcp_server", "--transport", "stdio"]


def test_an_echoed_secret_never_reaches_store_json_or_model(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "srv.yaml").write_text(
        json.dumps(
            {
                "name": "srv",
                "transport": "mcp_stdio",
                "command": _stdio_command(),
                "env": {"GIVEN": "token=${PF_ECHO_SECRET}"},
            }
        )
    )
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "all.yaml").write_text('tenant: "*"\nallow: ["srv.*"]\n')
    (tmp_path / "script.yaml").write_text(SCRIPT)
    db = tmp_path / "state.db"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(PF_ECHO_SECRET=SECRET, LITELLM_LOCAL_MODEL_COST_MAP="True")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "penguiflow_agents",
            "run",
            "What is the token?",
            "--model",
            "replay:script.yaml",
            "--store",
            f"sqlite:///{db}",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["answer"] == "clean"  # the model saw neither the value nor an encoding of it
    [step] = doc["steps"]
    assert step["tool"] == "srv.getenv" and step["outcome"] == "ok"
    assert "token=***" in json.dumps(step)
    stored = db.read_bytes()
    for form in encoded_forms(SECRET):
        assert form not in done.stdout and form not in done.stderr, form
        assert form.encode() not in stored, form
    assert b"token=***" in stored  # the masked result is what was kept


async def test_the_registry_masks_output_structured_and_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PF_ECHO_SECRET", SECRET)
    manifest = SourceManifest(
        name="srv",
        transport="mcp_stdio",
        command=_stdio_command(),
        env={"GIVEN": "${PF_ECHO_SECRET}"},
        path="srv.yaml",
    )
    registry = ToolRegistry()
    registry.add_manifest(manifest)
    try:
        ok = await registry.call("srv.getenv", {"name": "GIVEN"})
        assert ok.ok and SECRET not in json.dumps([ok.output, ok.structured])
        assert "***" in json.dumps(ok.output)
        failed = await registry.call("srv.fail", {"message": f"bad key {SECRET} (json)"})
        assert not failed.ok and failed.error is not None
        assert SECRET not in failed.error and "***" in failed.error
        echoed = await registry.call("srv.echo", {"text": "nothing secret here"})
        assert echoed.ok and "nothing secret here" in json.dumps(echoed.output)
    finally:
        await registry.aclose()


async def test_progress_messages_are_masked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_ECHO_SECRET", SECRET)
    server = Path(__file__).with_name("big_mcp_server.py")
    manifest = SourceManifest(
        name="srv",
        transport="mcp_stdio",
        command=[sys.executable, str(server)],
        env={"GIVEN": "${PF_ECHO_SECRET}"},
        path="srv.yaml",
    )
    registry = ToolRegistry()
    registry.add_manifest(manifest)
    seen: list[tuple[str, dict[str, object]]] = []
    try:
        result = await registry.call(
            "srv.env_progress",
            {"name": "GIVEN"},
            CallContext(on_event=lambda name, payload: seen.append((name, dict(payload)))),
        )
    finally:
        await registry.aclose()
    assert result.ok and result.output == "done with ***"
    progress = [p for name, p in seen if name == "tool.progress"]
    assert progress and progress[0]["message"] == "working with ***"
    assert SECRET not in json.dumps(seen)
