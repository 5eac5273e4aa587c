"""`penguiflow-agents approvals list | approve | reject` on a SQLite file.

Most commands go through ``penguiflow_agents.cli.main(argv)`` in this process
(same parser, handlers, exit codes and output, without a second of start-up
each); the ones marked "subprocess" run the real console entry point.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.cli import main
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import ApprovalRecord, RunRecord, open_store
from penguiflow_agents.tools._types import ToolSpec

# Longest one CLI subprocess may take (start-up included) before the test fails.
CLI_TIMEOUT_S = 60

POLICY = """\
tenant: acme
allow: ["files.*"]
approvals:
  - match: "files.write_file"
    approvers: ["role:admin"]
    expires_in_s: 3600
    reason: "Writes a file"
"""
WRITE = ToolSpec(
    name="files.write_file",
    source="files",
    description="Write a text file.",
    input_schema={
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
        "additionalProperties": False,
    },
).with_hash()
ARGS = {"path": "/notes.txt", "content": "hello"}
ALICE = Headers(tenant="acme", principal="alice", roles=["admin"])


class Cli:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.dir = tmp_path
        self.url = f"sqlite:///{tmp_path}/state.db"
        self.policies_dir = tmp_path / "policies"
        self.policies_dir.mkdir()
        (self.policies_dir / "acme.yaml").write_text(POLICY, encoding="utf-8")
        self.policies = PolicySet.load_dir(self.policies_dir)
        self._capsys = capsys

    def argv(self, *argv: str) -> list[str]:
        where = [
            "--store",
            self.url,
            "--policies",
            str(self.policies_dir),
            "--tools",
            str(self.dir),
        ]
        return ["approvals", *argv, *where]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """``penguiflow-agents approvals ARGV`` through ``cli.main`` in this process."""
        self._capsys.readouterr()
        code = main(self.argv(*argv))
        out, err = self._capsys.readouterr()
        return subprocess.CompletedProcess(self.argv(*argv), code, out, err)

    def subprocess(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """The same through the real entry point, in a child process."""
        cmd = [sys.executable, "-m", "penguiflow_agents", *self.argv(*argv)]
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "200"}
        return subprocess.run(
            cmd, cwd=self.dir, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
        )

    def request(self, *, run_id: str = "run-1", age_s: float = 0.0) -> ApprovalRecord:
        return asyncio.run(self._request(run_id, age_s))

    async def _request(self, run_id: str, age_s: float) -> ApprovalRecord:
        store = await open_store(self.url)
        try:
            try:
                await store.create_run(
                    RunRecord(run_id=run_id, tenant="acme", principal="alice", status="paused")
                )
            except Exception:  # the run exists already
                pass
            svc = ApprovalService(store, self.policies, clock=lambda: time.time() - age_s)
            rule = self.policies.approval_rule(WRITE.name, ARGS, ALICE)
            assert rule is not None
            return await svc.request(
                headers=ALICE,
                run_id=run_id,
                call_id=f"call-{time.monotonic_ns()}",
                spec=WRITE,
                arguments=ARGS,
                rule=rule,
            )
        finally:
            await store.aclose()

    def get(self, approval_id: str) -> ApprovalRecord:
        async def go() -> ApprovalRecord:
            store = await open_store(self.url)
            try:
                return await store.get_approval("acme", approval_id)
            finally:
                await store.aclose()

        return asyncio.run(go())


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_list_json_has_the_design_shape(cli: Cli) -> None:
    record = cli.request()
    listed = as_json(cli.run("list", "--tenant", "acme", "--json"))
    assert len(listed) == 1
    item = listed[0]
    assert item["id"] == record.id and item["run_id"] == "run-1"
    assert item["tool"] == "files.write_file" and item["arguments"] == ARGS
    assert item["status"] == "pending" and item["requested_by"] == "alice"
    assert item["expires_at"].endswith("+00:00")
    assert as_json(cli.run("list", "--json")) == []  # the default tenant has none


def test_list_table_shows_requests_and_expired_ones_as_expired(cli: Cli) -> None:
    fresh = cli.request(run_id="run-1")
    old = cli.request(run_id="run-2", age_s=7200)
    proc = cli.run("list", "--tenant", "acme", "--status", "all")
    assert proc.returncode == 0, proc.stderr
    assert fresh.id in proc.stdout and old.id in proc.stdout and "files.write_file" in proc.stdout
    pending = cli.run("list", "--tenant", "acme")  # the default: pending only
    assert fresh.id in pending.stdout and old.id not in pending.stdout
    expired = as_json(cli.run("list", "--tenant", "acme", "--status", "expired", "--json"))
    assert [a["id"] for a in expired] == [old.id]


def test_an_admin_approves_and_is_told_the_resume_command(cli: Cli) -> None:
    """subprocess: the console entry point end to end."""
    record = cli.request()
    proc = cli.subprocess(
        "approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "acme"
    )
    assert proc.returncode == 0, proc.stderr
    assert "penguiflow-agents resume run-1 --tenant acme" in proc.stdout
    stored = cli.get(record.id)
    assert stored.status == "approved" and stored.decision is not None
    assert stored.decision.decided_by == "bob"


def test_approving_an_mcp_gateway_request_says_the_client_call_runs_it_not_resume(
    cli: Cli,
) -> None:
    from penguiflow_agents.cli._approvals import MCP_CALL_LOG_PREFIX
    from penguiflow_agents.server._mcp_calls import CALL_LOG_PREFIX, call_log_id

    assert MCP_CALL_LOG_PREFIX == CALL_LOG_PREFIX
    record = cli.request(run_id=call_log_id("acme", "alice", WRITE.name, ARGS))
    proc = cli.subprocess(
        "approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "acme"
    )
    assert proc.returncode == 0, proc.stderr
    assert "resume" not in proc.stdout and "same call" in proc.stdout
    assert cli.get(record.id).status == "approved"


def test_approve_with_args_is_an_edit_and_bad_args_are_refused(cli: Cli) -> None:
    record = cli.request()
    base = ["approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "acme"]
    not_json = cli.run(*base, "--args", "{nope")
    assert not_json.returncode == 2 and "--args" in not_json.stderr
    bad = cli.run(*base, "--args", json.dumps({"path": 3, "content": "x"}))
    assert bad.returncode == 1 and "$.path" in bad.stderr
    new = {"path": "/other.txt", "content": "edited"}
    decided = as_json(cli.run(*base, "--args", json.dumps(new), "--json"))
    assert decided["status"] == "approved"
    assert decided["decision"]["decision"] == "edit" and decided["decision"]["arguments"] == new
    assert decided["next"].startswith("penguiflow-agents resume run-1 --tenant acme")


def test_the_requester_and_a_wrong_role_cannot_approve(cli: Cli) -> None:
    record = cli.request()
    own = cli.run("approve", record.id, "--as", "alice", "--role", "admin", "--tenant", "acme")
    assert own.returncode == 1 and "alice" in own.stderr
    wrong = cli.run("approve", record.id, "--as", "carol", "--role", "viewer", "--tenant", "acme")
    assert wrong.returncode == 1 and "role:admin" in wrong.stderr
    assert (cli.get(record.id)).status == "pending"


def test_another_tenants_id_fails_exactly_like_an_unknown_one(cli: Cli) -> None:
    record = cli.request()
    foreign = cli.run("approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "globex")
    unknown = cli.run("approve", "apr_nope", "--as", "bob", "--role", "admin", "--tenant", "globex")
    assert foreign.returncode == unknown.returncode == 1
    assert foreign.stderr.replace(record.id, "ID") == unknown.stderr.replace("apr_nope", "ID")
    assert foreign.stdout == unknown.stdout == ""


def test_reject_then_a_second_decision_says_who_decided_what(cli: Cli) -> None:
    record = cli.request()
    proc = cli.run(
        "reject",
        record.id,
        "--as",
        "bob",
        "--role",
        "admin",
        "--tenant",
        "acme",
        "--reason",
        "Not now.",
    )
    assert proc.returncode == 0, proc.stderr
    assert "resume run-1" in proc.stdout
    again = cli.run("approve", record.id, "--as", "dan", "--role", "admin", "--tenant", "acme")
    assert again.returncode == 1
    assert "already decided" in again.stderr and "reject" in again.stderr and "bob" in again.stderr


def test_an_expired_request_cannot_be_approved(cli: Cli) -> None:
    record = cli.request(age_s=7200)
    proc = cli.run("approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "acme")
    assert proc.returncode == 1 and "expired" in proc.stderr


def test_a_bad_policy_file_is_a_configuration_error(cli: Cli) -> None:
    record = cli.request()
    (cli.policies_dir / "bad.yaml").write_text("tenant: x\nallow: [1]\n", encoding="utf-8")
    proc = cli.run("approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "acme")
    assert proc.returncode == 2 and "bad.yaml" in proc.stderr and "allow.0" in proc.stderr


def test_approvals_list_does_not_import_litellm(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from penguiflow_agents.cli import main\n"
        f"rc = main(['approvals', 'list', '--json', '--store', 'sqlite:///{tmp_path}/s.db'])\n"
        "assert rc == 0, rc\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
        "print('clean')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("clean")


def test_rejecting_or_listing_as_another_tenant_reveals_nothing(cli: Cli) -> None:
    record = cli.request()
    base = ["--as", "bob", "--role", "admin", "--tenant", "globex", "--reason", "no"]
    foreign = cli.run("reject", record.id, *base)
    unknown = cli.run("reject", "apr_nope", *base)
    assert foreign.returncode == unknown.returncode == 1
    assert foreign.stderr.replace(record.id, "ID") == unknown.stderr.replace("apr_nope", "ID")
    assert as_json(cli.run("list", "--tenant", "globex", "--json")) == []
    assert (cli.get(record.id)).status == "pending"


@pytest.mark.parametrize("spelled", ["Alice", "ALICE", "Ａｌｉｃｅ", "alice"])
def test_the_requester_cannot_approve_under_another_spelling_of_their_name(
    cli: Cli, spelled: str
) -> None:
    record = cli.request()
    own = cli.run("approve", record.id, "--as", spelled, "--role", "admin", "--tenant", "acme")
    assert own.returncode == 1 and "cannot decide" in own.stderr
    assert cli.get(record.id).status == "pending"


@pytest.mark.parametrize("tenant", ["acme ", "ａｃｍｅ", "ac\u200bme"])
def test_a_malformed_tenant_is_a_usage_error_not_the_default_policy(cli: Cli, tenant: str) -> None:
    record = cli.request()
    proc = cli.run("approve", record.id, "--as", "bob", "--role", "admin", "--tenant", tenant)
    assert proc.returncode == 2 and "tenant" in proc.stderr
    listed = cli.run("list", "--tenant", tenant)
    assert listed.returncode == 2 and "tenant" in listed.stderr


# -- the listing a new user meets: pending by default, one line each, who may decide ----------


def test_list_is_one_line_per_request_with_long_arguments_folded(cli: Cli) -> None:
    long = {"path": "/notes/a.txt", "content": "word " * 200}

    async def ask() -> ApprovalRecord:
        store = await open_store(cli.url)
        try:
            await store.create_run(
                RunRecord(run_id="run-long", tenant="acme", principal="alice", status="paused")
            )
            svc = ApprovalService(store, cli.policies)
            rule = cli.policies.approval_rule(WRITE.name, long, ALICE)
            assert rule is not None
            return await svc.request(
                headers=ALICE,
                run_id="run-long",
                call_id="call-long",
                spec=WRITE,
                arguments=long,
                rule=rule,
            )
        finally:
            await store.aclose()

    record = asyncio.run(ask())
    proc = cli.run("list", "--tenant", "acme")
    lines = [line for line in proc.stdout.splitlines() if record.id in line]
    assert len(lines) == 1, proc.stdout
    assert lines[0].endswith("…") and len(lines[0]) <= 160
    shown = cli.run("show", record.id, "--tenant", "acme")
    assert shown.returncode == 0, shown.stderr
    assert long["content"].strip() in shown.stdout, "show prints the whole arguments"
    assert "role:admin" in shown.stdout and "run-long" in shown.stdout


def test_show_of_an_unknown_or_foreign_id_fails_alike(cli: Cli) -> None:
    record = cli.request()
    foreign = cli.run("show", record.id, "--tenant", "globex")
    unknown = cli.run("show", "apr_nope", "--tenant", "globex")
    assert foreign.returncode == unknown.returncode == 1
    assert foreign.stderr.replace(record.id, "ID") == unknown.stderr.replace("apr_nope", "ID")


def test_can_decide_keeps_what_the_caller_may_decide(cli: Cli) -> None:
    """--principal/--role filter (they were accepted and ignored): a matching approver who is
    not the requester; the requester itself may decide nothing."""
    record = cli.request()
    admin = as_json(cli.run("list", "--tenant", "acme", "--role", "admin", "--json"))
    assert [a["id"] for a in admin] == [record.id]
    viewer = as_json(cli.run("list", "--tenant", "acme", "--role", "viewer", "--json"))
    assert viewer == []
    requester = cli.run("list", "--tenant", "acme", "--principal", "alice", "--role", "admin")
    assert record.id not in requester.stdout
    assert "'alice' with roles admin may decide" in requester.stdout
    flag = as_json(cli.run("list", "--tenant", "acme", "--can-decide", "--json"))
    assert flag == [], "cli-user without roles may decide nothing"


def test_every_approvals_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("list", "show", "approve", "reject"):
        assert main(["approvals", sub, "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("--can-decide", "--set KEY=VALUE", "REPLACE all arguments", "--status"):
        assert text in out


def test_approve_set_changes_one_argument_and_keeps_the_others(cli: Cli) -> None:
    record = cli.request()
    base = ["approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "acme"]
    decided = as_json(cli.run(*base, "--set", "content=goodbye", "--json"))
    assert decided["status"] == "approved"
    stored = cli.get(record.id)
    assert stored.decision is not None
    assert stored.decision.arguments == {"path": "/notes.txt", "content": "goodbye"}


def test_approve_set_parses_json_values_and_refuses_a_bad_setting(cli: Cli) -> None:
    record = cli.request()
    base = ["approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "acme"]
    bad = cli.run(*base, "--set", "content")
    assert bad.returncode == 2 and "--set takes KEY=VALUE, got 'content'" in bad.stderr
    wrong_type = cli.run(*base, "--set", "content=42")  # JSON 42 is a number: schema says string
    assert wrong_type.returncode == 1 and "content" in wrong_type.stderr
    assert cli.get(record.id).status == "pending"


def test_approve_also_suggests_the_workers_when_a_bus_is_configured(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = cli.request()
    monkeypatch.setenv("PENGUIFLOW_BUS", "redis://127.0.0.1:6379/0")
    proc = cli.run("approve", record.id, "--as", "bob", "--role", "admin", "--tenant", "acme")
    assert proc.returncode == 0, proc.stderr
    assert "next: penguiflow-agents resume run-1 --tenant acme" in proc.stdout
    assert (
        "or, on the workers: penguiflow-agents submit --resume run-1 --tenant acme" in proc.stdout
    )
