"""A run that needs a user's OAuth authorization pauses (kind `authorization`, with the URL),
and after `auth login` in another process, `resume` makes the call exactly once.

Every step is its own CLI process (run, auth login, resume), against the MCP
test server behind the tests' own authorization server (``testing.oauth_server``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from penguiflow_agents.testing.mcp_server import HttpServerProcess, running_http_server

# Longest a CLI process may take on a loaded machine (litellm and the mcp SDK import slowly).
CLI_TIMEOUT_S = 120.0
PYCACHE = Path(tempfile.gettempdir()) / "penguiflow-test-pycache"


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServerProcess]:
    with running_http_server(oauth=True) as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path: Path, server: HttpServerProcess) -> Path:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "remote.yaml").write_text(
        f"name: remote\ntransport: mcp_http\nurl: {server.url}\nauth: {{type: oauth}}\n"
        "tools: {flaky: {idempotent: false}}\n"
    )
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "acme.yaml").write_text('tenant: acme\nallow: ["remote.*"]\n')
    return tmp_path


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PENGUIFLOW_SECRET_KEY" and not k.endswith("_API_KEY")
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", *args],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=_env(),
    )


def login(workdir: Path, principal: str, *extra: str) -> None:
    """`auth login --no-browser` in its own process; the test plays the browser."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "penguiflow_agents", "auth", "login", "remote"),
            *("--no-browser", "--tenant", "acme", "--principal", principal, *extra),
        ],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    redirect = httpx.get(url, follow_redirects=False).headers["location"]
    _, err = proc.communicate(redirect + "\n", timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0, err


def flaky_calls(workdir: Path, key: str, *extra: str) -> int:
    """How many times the server ran `flaky` for ``key`` (asked as another user)."""
    done = cli(
        workdir,
        *("tools", "call", "remote.stats", "--tenant", "acme", "--principal", "bob", "--json"),
        *extra,
    )
    assert done.returncode == 0, done.stderr
    stats: dict[str, Any] = json.loads(done.stdout)["output"]
    return int(stats["flaky"].get(key, 0))


def test_a_run_pauses_for_authorization_and_runs_the_call_once_after_login(
    workdir: Path,
) -> None:
    key = uuid.uuid4().hex
    (workdir / "script.yaml").write_text(
        "turns:\n"
        "  - tool_calls:\n"
        f"      - {{name: remote.flaky, arguments: {{key: {key}, fail_times: 0}}, id: c1}}\n"
        "  - content: done\n"
    )
    login(workdir, "bob")  # someone authorized once: the source's tools are known

    run = ("--model", "replay:script.yaml", "--tenant", "acme", "--principal", "alice")
    paused = cli(workdir, "run", "call it", *run, "--json")
    assert paused.returncode == 3, paused.stderr
    doc = json.loads(paused.stdout)
    assert doc["status"] == "paused"
    [wait] = doc["pending_approvals"]
    assert wait["kind"] == "authorization" and wait["source"] == "remote"
    assert wait["principal"] == "alice" and wait["tool"] == "remote.flaky"
    assert wait["url"].startswith("http://127.0.0.1:") and "code_challenge=" in wait["url"]
    assert wait["authorize_command"].startswith(
        "penguiflow-agents auth login remote --tenant acme --principal alice"
    )
    assert doc["steps"] == [] and flaky_calls(workdir, key) == 0

    # Resumed before anyone logged in: still waiting, and still nothing ran.
    resume = shlex.split(doc["resume_command"])[1:]
    early = cli(workdir, *resume, "--principal", "alice", "--json")
    assert early.returncode == 3, early.stderr
    assert json.loads(early.stdout)["pending_approvals"][0]["kind"] == "authorization"
    assert flaky_calls(workdir, key) == 0

    login(workdir, "alice")
    done = cli(workdir, *resume, "--principal", "alice", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["answer"] == "done"
    assert [(s["tool"], s["outcome"]) for s in result["steps"]] == [("remote.flaky", "ok")]
    assert flaky_calls(workdir, key) == 1

    again = cli(workdir, *resume, "--principal", "alice", "--json")
    assert again.returncode != 3
    assert flaky_calls(workdir, key) == 1, "resuming again never calls twice"

    events = cli(workdir, "runs", "events", doc["run_id"], "--tenant", "acme", "--json")
    assert events.returncode == 0, events.stderr
    stored = [json.loads(line) for line in events.stdout.splitlines() if line.strip()]
    kinds = [e["kind"] for e in stored]
    assert "authorization_requested" in kinds and "authorization_applied" in kinds
    applied = next(e for e in stored if e["kind"] == "authorization_applied")
    assert applied["data"]["outcome"] == "ok" and applied["data"]["principal"] == "alice"


def test_the_live_output_names_the_source_the_url_and_the_command(workdir: Path) -> None:
    (workdir / "script.yaml").write_text(
        "turns:\n"
        "  - tool_calls:\n"
        "      - {name: remote.echo, arguments: {text: hi}, id: c1}\n"
        "  - content: done\n"
    )
    login(workdir, "bob")
    paused = cli(
        workdir, "run", "echo", "--model", "replay:script.yaml", "--tenant", "acme",
        "--principal", "carol",
    )  # fmt: skip
    assert paused.returncode == 3, paused.stderr
    out = paused.stdout
    assert "needs authorization" in out and "'remote'" in out and "'carol'" in out
    assert "waits for 1 authorization" in out
    assert "authorize: penguiflow-agents auth login remote --tenant acme --principal carol" in out
    assert "then:" in out and "resume" in out


@pytest.mark.timeout(400)
def test_serve_pauses_a_run_for_authorization_and_resumes_it_after_login(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run document and the SSE stream carry the wait; `auth login` (a CLI process on the
    same store) and POST /v1/runs/{id}/resume finish it, the call made once."""
    from penguiflow_agents.cli import main
    from tests.server.serve_process import start_serve

    key = uuid.uuid4().hex
    (workdir / "script.yaml").write_text(
        "turns:\n"
        "  - tool_calls:\n"
        f"      - {{name: remote.flaky, arguments: {{key: {key}, fail_times: 0}}, id: c1}}\n"
        "  - content: done\n"
    )
    keys = str(workdir / "keys.yaml")
    assert main(["keys", "add", "--tenant", "acme", "--principal", "dana", "--keys", keys]) == 0
    dana = capsys.readouterr().out.splitlines()[0]
    store = ("--store", f"sqlite:///{workdir / 'state.db'}")
    login(workdir, "bob", *store)
    serving = start_serve(workdir, "--model", "replay:script.yaml", env=_env())
    try:
        with serving.client(dana) as client:
            r = client.post("/v1/runs?wait=true", json={"query": "call it"})
            assert r.status_code == 200, r.text
            doc = r.json()
            assert doc["status"] == "paused", doc
            [wait] = doc["pending_approvals"]
            assert (wait["kind"], wait["source"], wait["principal"]) == (
                "authorization",
                "remote",
                "dana",
            )
            assert wait["url"].startswith("http://127.0.0.1:")
            run_id = doc["run_id"]
            events = client.get(f"/v1/runs/{run_id}/events").text
            assert "event: authorization_requested" in events
            paused = events.split("event: paused", 1)[1].split("\n\n", 1)[0]
            assert '"kind": "authorization"' in paused or '"kind":"authorization"' in paused

            login(workdir, "dana", *store)
            assert client.post(f"/v1/runs/{run_id}/resume").status_code < 300
            deadline = time.monotonic() + 90
            while (run := client.get(f"/v1/runs/{run_id}").json())["status"] != "completed":
                assert run["status"] in ("paused", "running"), run
                assert time.monotonic() < deadline, run
                time.sleep(0.2)
            assert run["answer"] == "done"
    finally:
        serving.stop()
    assert flaky_calls(workdir, key, *store) == 1
