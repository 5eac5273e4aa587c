"""`auth login|status|logout` against a local OAuth-protected MCP server, in separate processes.

The server is the fault-injecting MCP test server behind the tests' own
authorization server (``testing.oauth_server``), which approves at once: the
test plays the person's browser by following the printed URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from penguiflow_agents.testing.mcp_server import HttpServerProcess, running_http_server

# Longest a CLI process may take on a loaded machine (imports of the mcp SDK are slow).
CLI_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServerProcess]:
    with running_http_server(oauth=True) as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path: Path, server: HttpServerProcess) -> Path:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "remote.yaml").write_text(
        f"name: remote\ntransport: mcp_http\nurl: {server.url}\nauth: {{type: oauth}}\n"
    )
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "acme.yaml").write_text('tenant: acme\nallow: ["remote.*"]\n')
    return tmp_path


def cli(workdir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PENGUIFLOW_SECRET_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "penguiflow_agents.cli", *args],
        cwd=workdir,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
    )


def login(workdir: Path, principal: str) -> subprocess.CompletedProcess[str]:
    """`auth login --no-browser`: read the URL, 'authorize' in the browser, paste the redirect."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "penguiflow_agents.cli",
            "auth",
            "login",
            "remote",
            "--no-browser",
            "--tenant",
            "acme",
            "--principal",
            principal,
        ],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:") and "code_challenge_method=S256" in url
    redirect = httpx.get(url, follow_redirects=False).headers["location"]
    out, err = proc.communicate(redirect + "\n", timeout=CLI_TIMEOUT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, url + "\n" + out, err)


def usage(server: HttpServerProcess) -> dict[str, object]:
    base = server.url.rsplit("/mcp", 1)[0]
    result: dict[str, object] = httpx.get(f"{base}/_test/usage").json()
    return result


def test_login_status_call_logout_and_no_token_in_clear(
    workdir: Path, server: HttpServerProcess
) -> None:
    done = login(workdir, "alice")
    assert done.returncode == 0, done.stderr
    assert "authorized: source 'remote' for principal 'alice'" in done.stdout
    key_file = workdir / ".penguiflow" / "secret.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"

    status = cli(
        workdir, "auth", "status", "remote", "--tenant", "acme", "--principal", "alice", "--json"
    )
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["authorized"] is True and document["refreshable"] is True

    called = cli(
        workdir,
        "tools",
        "call",
        "remote.echo",
        "--args",
        '{"text": "hi"}',
        "--tenant",
        "acme",
        "--principal",
        "alice",
        "--json",
    )
    assert called.returncode == 0, called.stderr
    assert "hi" in called.stdout

    other = cli(workdir, "auth", "status", "remote", "--tenant", "acme", "--principal", "bob")
    assert other.returncode == 1 and "not authorized" in other.stdout

    # No token in clear: not in the store's bytes, nor in any output.
    tokens = usage(server)["tokens"]
    assert isinstance(tokens, list) and tokens
    stored = (workdir / ".penguiflow" / "state.db").read_bytes()
    for wal in (workdir / ".penguiflow").glob("state.db-*"):
        stored += wal.read_bytes()
    texts = [done.stdout, done.stderr, status.stdout, status.stderr, called.stdout, called.stderr]
    for token in tokens:
        assert token.encode() not in stored
        assert all(token not in text for text in texts)

    out = cli(workdir, "auth", "logout", "remote", "--tenant", "acme", "--principal", "alice")
    assert out.returncode == 0 and "logged out" in out.stdout
    gone = cli(workdir, "auth", "status", "remote", "--tenant", "acme", "--principal", "alice")
    assert gone.returncode == 1


def test_login_with_no_redirect_pasted_fails_and_says_what_to_do(workdir: Path) -> None:
    done = cli(workdir, "auth", "login", "remote", "--no-browser", "--tenant", "acme", stdin="")
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith("http://127.0.0.1:")
    assert "auth login" in done.stderr and "--no-browser" in done.stderr
