"""examples/roadmap_status_updates/flow.py: exact status order per step, chunk sequence, final answer."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "roadmap_status_updates" / "flow.py"
RUN_TIMEOUT_S = 60.0  # a fresh interpreter importing pydantic/structlog on a busy machine
DOCS_QUERY = "How do I configure retries for a tool source?"
BUG_QUERY = "The export job fails with a timeout error since yesterday"


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("roadmap_status_updates_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


async def _frames(example: ModuleType, query: str) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []

    async def sink(frame: dict[str, Any]) -> None:
        frames.append(frame)

    async with example.build_flow() as flow:
        await example.run_query(flow, query, sink)
    return frames


def _check_run(
    frames: list[dict[str, Any]], branch: str, step_ids: list[str], sources: list[str]
) -> None:
    status = [f for f in frames if f["type"] == "status"]
    assert [f["seq"] for f in status] == list(range(len(status)))
    assert status[0] == {
        "type": "status",
        "seq": 0,
        "kind": "triage",
        "message": "Triaging your request",
    }
    roadmap = status[1]
    assert roadmap["kind"] == "roadmap" and roadmap["branch"] == branch
    assert [s["id"] for s in roadmap["roadmap"]] == step_ids
    assert all(s["name"] and s["description"] for s in roadmap["roadmap"])
    steps = [(f["step_id"], f["status"]) for f in status[2:]]
    assert steps == [(step, state) for step in step_ids for state in ("running", "ok")]
    for step in step_ids:  # nothing about a step after its `ok`
        ok_at = next(
            i for i, f in enumerate(frames) if f.get("step_id") == step and f["status"] == "ok"
        )
        assert all(f.get("step_id") != step for f in frames[ok_at + 1 :])

    last = step_ids[-1]
    running_at = frames.index(
        next(f for f in frames if f.get("step_id") == last and f["status"] == "running")
    )
    ok_at = frames.index(
        next(f for f in frames if f.get("step_id") == last and f["status"] == "ok")
    )
    chunks = [f for f in frames if f["type"] == "chunk"]
    assert chunks == [
        f for f in frames[running_at:ok_at] if f["type"] == "chunk"
    ]  # streamed by the last step
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert [c["done"] for c in chunks] == [False] * (len(chunks) - 1) + [True]

    final = frames[-1]
    assert final["type"] == "final" and frames.count(final) == 1
    assert final["data"]["branch"] == branch
    assert sorted(final["data"]["findings"]) == sorted(
        sources
    )  # the three parallel lookups, merged
    assert final["text"].strip() == "".join(c["text"] for c in chunks).strip()


async def test_a_how_to_question_takes_the_docs_branch(example: ModuleType) -> None:
    frames = await _frames(example, DOCS_QUERY)
    _check_run(
        frames, "docs", ["understand", "search", "answer"], ["guides", "api_reference", "examples"]
    )
    assert frames[-1]["text"].startswith("Documentation answer for")


async def test_a_bug_report_takes_the_bug_branch(example: ModuleType) -> None:
    frames = await _frames(example, BUG_QUERY)
    _check_run(
        frames, "bug", ["collect", "diagnose", "report"], ["logs", "known_issues", "recent_changes"]
    )
    assert frames[-1]["text"].startswith("Bug triage report for")


async def test_concurrent_queries_each_get_only_their_own_frames(example: ModuleType) -> None:
    docs: list[dict[str, Any]] = []
    bug: list[dict[str, Any]] = []

    def into(target: list[dict[str, Any]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def sink(frame: dict[str, Any]) -> None:
            target.append(frame)

        return sink

    async with example.build_flow() as flow:
        await asyncio.gather(
            example.run_query(flow, DOCS_QUERY, into(docs)),
            example.run_query(flow, BUG_QUERY, into(bug), tenant="other"),
        )
    _check_run(
        docs, "docs", ["understand", "search", "answer"], ["guides", "api_reference", "examples"]
    )
    _check_run(
        bug, "bug", ["collect", "diagnose", "report"], ["logs", "known_issues", "recent_changes"]
    )


def test_the_example_runs_as_a_script() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "[roadmap:docs]" in out and "[roadmap:bug]" in out
    assert out.count("[final]") == 2
    assert out.count("[status] Triaging your request") == 2
