"""`penguiflow-agents runs list | show | events | usage | prune` through the CLI.

The history is made by real runs (``ReactPlanner`` over a SQLite store, scripted model,
real Python tools, an approval policy): a completed run with calls and token usage, a
failed one, a paused one, and a run of another tenant. The commands run in process
through ``main`` (as the other CLI tests), and ``runs list`` once more in a subprocess
through the installed entry point.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents._identity import Headers
from penguiflow_agents.cli import main
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import SQLiteStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

DAY = 86_400.0
POLICIES = [
    {
        "tenant": "acme",
        "allow": ["math.*", "files.*"],
        "approvals": [{"match": "files.write", "approvers": ["role:admin"]}],
    },
    {"tenant": "globex", "allow": ["math.*"]},
]
USAGE = {"prompt_tokens": 100, "completion_tokens": 20}


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
async def write(path: str, text: str) -> str:
    """Write a text file."""
    return f"wrote {path}"


async def _history(path: Path) -> dict[str, str]:
    registry = ToolRegistry()
    registry.add_functions(add, source="math")
    registry.add_functions(write, source="files")
    store = SQLiteStore(path)
    policies = PolicySet.from_documents(POLICIES)

    async def one(turns: list[Any], tenant: str = "acme", query: str = "q") -> str:
        planner = ReactPlanner(
            llm=ScriptedLLM(turns, model="scripted-model"),
            registry=registry,
            store=store,
            policies=policies,
            max_consecutive_errors=1,
        )
        result = await planner.run(query, headers=Headers(tenant=tenant, principal="alice"))
        return result.run_id

    ids = {
        "completed": await one(
            [
                {
                    "tool_calls": [
                        {"name": "math.add", "arguments": {"a": 2, "b": 3}},
                        {"name": "math.add", "arguments": {"a": "x", "b": 3}},
                    ],
                    "usage": USAGE,
                },
                {"content": "5", "usage": USAGE},
            ],
            query="what is 2 + 3?",
        ),
        "failed": await one(
            [{"tool_calls": [{"name": "math.nope", "arguments": {}}], "usage": USAGE}]
        ),
        "paused": await one(
            [{"tool_calls": [{"name": "files.write", "arguments": {"path": "/a", "text": "t"}}]}]
        ),
        "globex": await one([{"content": "hi"}], tenant="globex"),
    }
    await store.aclose()
    return ids


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    path = tmp_path_factory.mktemp("runs") / "runs.db"
    ids = asyncio.run(_history(path))
    return f"sqlite:///{path}", ids


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_list_shows_the_tenants_runs_and_filters_them(
    history: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, ids = history
    code, out, _ = _cli(capsys, "runs", "list", "--store", store, "--tenant", "acme", "--json")
    assert code == 0
    docs = json.loads(out)
    assert {d["run_id"]: d["status"] for d in docs} == {
        ids["completed"]: "completed",
        ids["failed"]: "failed",
        ids["paused"]: "paused",
    }  # not the other tenant's run
    created = [d["created_at"] for d in docs]
    assert created == sorted(created, reverse=True)  # newest first
    done = next(d for d in docs if d["run_id"] == ids["completed"])
    assert done["tools"] == ["math.add"] and done["steps"] == 2
    assert done["usage"] == {"prompt_tokens": 200, "completion_tokens": 40, "total_tokens": 240}

    _, out, _ = _cli(
        capsys, "runs", "list", "--store", store, "--tenant", "acme", "--json", "--status", "paused"
    )
    assert [d["run_id"] for d in json.loads(out)] == [ids["paused"]]
    _, out, _ = _cli(
        capsys, "runs", "list", "--store", store, "--tenant", "acme", "--json", "--tool", "files.*"
    )
    assert json.loads(out) == []  # the gated call never ran: the run called no files tool
    _, out, _ = _cli(
        capsys, "runs", "list", "--store", store, "--tenant", "acme", "--json", "--tool", "math.*"
    )
    assert {d["run_id"] for d in json.loads(out)} == {ids["completed"], ids["failed"]}
    _, out, _ = _cli(
        capsys, "runs", "list", "--store", store, "--tenant", "acme", "--json", "--limit", "1"
    )
    assert len(json.loads(out)) == 1
    _, out, _ = _cli(
        capsys, "runs", "list", "--store", store, "--tenant", "acme", "--json", "--since", "1h"
    )
    assert len(json.loads(out)) == 3

    code, out, _ = _cli(capsys, "runs", "list", "--store", store, "--tenant", "acme")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith(ids["completed"]))
    assert (
        "completed" in line
        and "calls=2" in line
        and "tokens=240" in line
        and "tools=math.add" in line
    )
    code, out, _ = _cli(capsys, "runs", "list", "--store", store, "--tenant", "nobody")
    assert code == 0 and "no runs for tenant 'nobody' match." in out


def test_runs_list_rejects_a_bad_age_with_exit_2(
    history: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = history
    code, _, err = _cli(capsys, "runs", "list", "--store", store, "--since", "soon")
    assert code == 2
    assert "--since" in err and "soon" in err


def test_runs_show_has_calls_usage_and_outcomes(
    history: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, ids = history
    run_id = ids["completed"]
    code, out, _ = _cli(
        capsys, "runs", "show", run_id, "--store", store, "--tenant", "acme", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["status"] == "completed" and doc["answer"] == "5"
    assert doc["query"] == "what is 2 + 3?" and doc["model"] == "scripted-model"
    assert sorted(c["outcome"] for c in doc["calls"]) == ["invalid_arguments", "ok"]
    assert doc["usage"]["total_tokens"] == 240 and doc["events"] >= 2

    code, out, _ = _cli(capsys, "runs", "show", run_id, "--store", store, "--tenant", "acme")
    assert code == 0
    assert f"run {run_id}  completed" in out
    assert "usage: 200 prompt + 40 completion tokens" in out
    assert "math.add  ok" in out and "math.add  invalid_arguments" in out
    assert "answer: 5" in out

    paused = ids["paused"]
    _, out, _ = _cli(capsys, "runs", "show", paused, "--store", store, "--tenant", "acme", "--json")
    doc = json.loads(out)
    assert doc["status"] == "paused"
    assert [p["tool"] for p in doc["pending_approvals"]] == ["files.write"]
    assert [a["status"] for a in doc["approvals"]] == ["pending"]


def test_another_tenants_run_is_reported_like_an_unknown_one(
    history: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, ids = history
    code, out, foreign = _cli(
        capsys, "runs", "show", ids["globex"], "--store", store, "--tenant", "acme"
    )
    assert code == 1 and out == ""
    code, _, unknown = _cli(
        capsys, "runs", "show", "run-nosuch", "--store", store, "--tenant", "acme"
    )
    assert code == 1
    assert foreign.replace(ids["globex"], "ID") == unknown.replace("run-nosuch", "ID")
    code, _, _ = _cli(capsys, "runs", "events", ids["globex"], "--store", store, "--tenant", "acme")
    assert code == 1


def test_runs_events_prints_the_stored_events_and_json_lines(
    history: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, ids = history
    run_id = ids["paused"]
    code, out, _ = _cli(
        capsys, "runs", "events", run_id, "--store", store, "--tenant", "acme", "--json"
    )
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert [e["kind"] for e in lines] == ["run_started", "approval_requested", "paused"]
    assert all(e["run_id"] == run_id for e in lines)
    seqs = [e["seq"] for e in lines]
    assert seqs == sorted(seqs)
    _, out, _ = _cli(
        capsys,
        "runs",
        "events",
        run_id,
        "--store",
        store,
        "--tenant",
        "acme",
        "--json",
        "--after",
        str(seqs[0]),
    )
    assert [json.loads(x)["kind"] for x in out.splitlines()] == ["approval_requested", "paused"]
    code, out, _ = _cli(capsys, "runs", "events", run_id, "--store", store, "--tenant", "acme")
    assert code == 0 and len(out.splitlines()) == 3 and "paused" in out.splitlines()[-1]


def test_runs_usage_sums_the_tenants_runs(
    history: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = history
    code, out, _ = _cli(
        capsys, "runs", "usage", "--store", store, "--tenant", "acme", "--since", "7d", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["tenant"] == "acme"
    assert doc["runs"] == {"total": 3, "completed": 1, "failed": 1, "paused": 1}
    assert doc["usage"] == {"prompt_tokens": 300, "completion_tokens": 60, "total_tokens": 360}
    assert doc["tool_calls"]["total"] == 3
    assert doc["tool_calls"]["ok"] == 1 and doc["tool_calls"]["invalid_arguments"] == 1
    code, out, _ = _cli(capsys, "runs", "usage", "--store", store, "--tenant", "acme")
    assert code == 0 and "runs: 3 (" in out and "tokens: 360 (300 prompt, 60 completion)" in out


def test_runs_prune_deletes_old_ended_runs_of_every_tenant_and_keeps_paused_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "runs.db"
    ids = asyncio.run(_history(path))
    store = f"sqlite:///{path}"
    # Age every run by 40 days (the store's clock is the wall clock).
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET updated_at = updated_at - ?", (40 * DAY,))
    code, out, _ = _cli(capsys, "runs", "prune", "--store", store, "--older-than", "60d", "--json")
    assert code == 0 and json.loads(out) == {"deleted": 0, "older_than": "60d"}
    code, out, _ = _cli(
        capsys, "runs", "prune", "--store", store, "--older-than", "30d", "--batch-size", "1"
    )
    assert code == 0
    assert "deleted 3 run(s) that ended more than 30d ago" in out  # acme's two and globex's
    with sqlite3.connect(path) as conn:
        left = {r[0]: r[1] for r in conn.execute("SELECT run_id, status FROM runs")}
        events = {r[0] for r in conn.execute("SELECT DISTINCT run_id FROM events")}
    assert left == {ids["paused"]: "paused"}
    assert events == {ids["paused"]}
    code, _, err = _cli(capsys, "runs", "prune", "--store", store, "--older-than", "0d")
    assert code == 2 and "--older-than" in err


def test_runs_list_through_the_installed_command(history: tuple[str, dict[str, str]]) -> None:
    store, ids = history
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PENGUIFLOW_STORE"] = store
    proc = subprocess.run(
        [sys.executable, "-m", "penguiflow_agents", "runs", "list", "--tenant", "globex", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [d["run_id"] for d in json.loads(proc.stdout)] == [ids["globex"]]
