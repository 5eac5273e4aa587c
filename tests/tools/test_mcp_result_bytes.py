"""Big MCP answers (issue #12 §5): the source's ``max_result_bytes`` bounds what the trajectory,
the store, ``run --json`` and the model get, with a truncation marker; ``--json`` prints a result
once. An answer too large to read at all (over 4 x max_result_bytes + 64 KiB on stdio) fails its
call at once instead of hanging until the timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from penguiflow_agents.tools import ToolRegistry
from penguiflow_agents.tools._manifest import SourceManifest

SERVER = Path(__file__).with_name("big_mcp_server.py")
CLI_TIMEOUT_S = 120
LIMIT = 100_000
BIG = 300_000  # read whole (under the stdio line limit), then cut to LIMIT
HUGE = 3_000_000  # dropped while read

SCRIPT = f"""
turns:
  - tool_calls:
      - {{name: big.big, arguments: {{n: {BIG}}}, id: big}}
      - {{name: big.big, arguments: {{n: {HUGE}}}, id: huge}}
  - content: "done"
"""


def _manifest() -> dict[str, object]:
    return {
        "name": "big",
        "transport": "mcp_stdio",
        "command": [sys.executable, str(SERVER)],
        "max_result_bytes": LIMIT,
        "timeout_s": 60,
    }


def test_big_answers_are_kept_to_max_result_bytes_everywhere(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "big.yaml").write_text(json.dumps(_manifest()))
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "all.yaml").write_text('tenant: "*"\nallow: ["big.*"]\n')
    (tmp_path / "script.yaml").write_text(SCRIPT)
    db = tmp_path / "state.db"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "penguiflow_agents",
            "run",
            "Fetch it",
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
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    steps = {s["call_id"]: s for s in doc["steps"]}
    big, huge = steps["big"], steps["huge"]
    assert big["outcome"] == "ok"
    assert len(big["result"].encode()) < LIMIT + 300
    assert big["result"].endswith(
        f"[truncated: the result was {BIG - BIG % 101 + 3} bytes; only its first {LIMIT} are "
        "kept (max_result_bytes of source 'big')]"
    )
    assert huge["outcome"] == "tool_error"
    assert "larger than 465536 bytes" in huge["result"] and "max_result_bytes" in huge["result"]
    assert huge["latency_s"] < 50  # answered when dropped, not at the 60 s timeout
    assert done.stdout.count("BIGTEXT-") == LIMIT // 101 + 1  # the result is printed once
    assert len(done.stdout) < 2 * LIMIT
    assert db.stat().st_size < 10 * LIMIT  # a few bounded copies, never megabytes


async def test_structured_content_over_the_limit_is_dropped_with_the_marker() -> None:
    registry = ToolRegistry()
    registry.add_manifest(SourceManifest.model_validate({**_manifest(), "path": "big.yaml"}))
    try:
        result = await registry.call("big.big_json", {"n": 150_000})
        assert result.ok and result.structured is None
        assert isinstance(result.output, str) and result.output.startswith('{"rows":["row-000000-')
        assert "[truncated: the result was" in result.output
        assert len(result.output.encode()) < LIMIT + 300
        small = await registry.call("big.big_json", {"n": 1000})
        assert small.ok and small.structured == small.output and len(small.output["rows"]) == 10
    finally:
        await registry.aclose()


@pytest.fixture(params=["sse", "json"])
def http_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The big server over streamable HTTP, answering with SSE events or JSON bodies."""
    cmd = [sys.executable, str(SERVER), "--http"] + (["--json"] if request.param == "json" else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until READY (or EOF if it failed)
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(30)


async def test_over_http_an_answer_is_bounded_while_read_and_cut_after(http_url: str) -> None:
    manifest = {"name": "big", "transport": "mcp_http", "url": http_url, "path": "big.yaml"}
    manifest.update(max_result_bytes=LIMIT, timeout_s=60)
    registry = ToolRegistry()
    registry.add_manifest(SourceManifest.model_validate(manifest))
    try:
        cut = await registry.call("big.big", {"n": BIG})
        assert cut.ok and "[truncated: the result was" in cut.output
        assert len(cut.output.encode()) < LIMIT + 300
        huge = await registry.call("big.big", {"n": HUGE})
        assert not huge.ok
        assert huge.error is not None and "465536" in huge.error, huge.error
        assert huge.latency_s < 50  # refused while read, not at the 60 s timeout
        after = await registry.call("big.big", {"n": 1000})  # the source still works
        assert after.ok and after.output.endswith("END")
    finally:
        await registry.aclose()
