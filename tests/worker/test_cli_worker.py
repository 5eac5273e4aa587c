"""`penguiflow-agents worker | submit`: usage errors and an unreachable bus, in process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import structlog

from penguiflow_agents.bus import RedisBus
from penguiflow_agents.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from penguiflow_agents.store import RunRecord, open_store


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands configure structlog for their process; give the next test its own back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_submit_needs_exactly_one_of_a_question_and_resume(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["submit"]) == EXIT_USAGE
    assert "QUESTION or --resume" in capsys.readouterr().err
    assert main(["submit", "hi", "--resume", "run_1"]) == EXIT_USAGE


def test_a_process_local_bus_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "hi", "--bus", "memory://"]) == EXIT_USAGE
    assert "one process" in capsys.readouterr().err
    assert main(["worker", "--bus", "memory://", "--store", "memory://"]) == EXIT_USAGE


def test_worker_concurrency_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--concurrency", "0"]) == EXIT_USAGE
    assert "--concurrency" in capsys.readouterr().err


def test_submit_to_an_unreachable_bus_fails_without_showing_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["submit", "hi", "--bus", "redis://:hunter2@127.0.0.1:1/0", "--json"])
    out = capsys.readouterr()
    assert code == EXIT_FAILURE
    assert "hunter2" not in out.err + out.out
    doc = json.loads(out.out)
    assert doc["status"] == "failed" and "Redis" in doc["error"]


def test_submit_prints_the_run_id_it_enqueued(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    stream = f"pf-cli-test:{uuid.uuid4().hex[:12]}"
    url = f"{redis_url}?stream={stream}"
    assert main(["submit", "What day?", "--bus", url, "--tenant", "acme", "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "queued" and doc["run_id"].startswith("run_")

    async def check() -> None:
        bus = await RedisBus.open(url)
        try:
            [delivery] = await bus.consume("c1", block_s=1.0)
            assert delivery.job["run_id"] == doc["run_id"]
            assert delivery.job["tenant"] == "acme" and delivery.job["query"] == "What day?"
            assert delivery.job["principal"] == "cli-user"
        finally:
            await bus.aclose()
            client = aioredis.Redis.from_url(redis_url)
            await client.delete(stream, f"{stream}:dead")
            await client.aclose()

    asyncio.run(check())


def test_submit_resume_of_an_ended_run_prints_it_and_enqueues_nothing(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    stream = f"pf-cli-test:{uuid.uuid4().hex[:12]}"
    bus_url = f"{redis_url}?stream={stream}"

    async def seed() -> None:
        store = await open_store(store_url)
        try:
            await store.create_run(
                RunRecord(
                    run_id="run_done",
                    tenant="acme",
                    principal="alice",
                    status="completed",
                    state={"result": {"status": "completed", "run_id": "run_done", "answer": "42"}},
                )
            )
        finally:
            await store.aclose()

    async def backlog() -> int:
        bus = await RedisBus.open(bus_url)
        try:
            return int(await bus.backlog())
        finally:
            await bus.aclose()
            client = aioredis.Redis.from_url(redis_url)
            await client.delete(stream, f"{stream}:dead")
            await client.aclose()

    asyncio.run(seed())
    args = ["submit", "--resume", "run_done", "--bus", bus_url, "--store", store_url]
    assert main([*args, "--tenant", "acme", "--wait", "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert (doc["status"], doc["answer"], doc["run_id"]) == ("completed", "42", "run_done")
    assert main([*args, "--tenant", "globex"]) == EXIT_FAILURE  # another tenant's id: unknown
    assert "no run with id 'run_done'" in capsys.readouterr().err
    assert asyncio.run(backlog()) == 0


def test_submit_to_a_bus_off_this_host_needs_the_bus_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #12 §8: jobs on a shared Redis must be signed, so the secret is required there."""
    monkeypatch.delenv("PENGUIFLOW_BUS_SECRET", raising=False)
    code = main(["submit", "hi", "--bus", "redis://:hunter2@10.255.0.1:6379/0", "--json"])
    out = capsys.readouterr()
    assert code == EXIT_USAGE
    assert "PENGUIFLOW_BUS_SECRET" in out.err and "hunter2" not in out.err + out.out
    code = main(["worker", "--bus", "redis://10.255.0.1:6379/0", "--store", "memory://"])
    assert code == EXIT_USAGE
    assert "PENGUIFLOW_BUS_SECRET" in capsys.readouterr().err


def test_submit_signs_its_job_with_the_bus_secret(
    capsys: pytest.CaptureFixture[str], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "cli-bus-secret-0123456789"
    monkeypatch.setenv("PENGUIFLOW_BUS_SECRET", secret)
    stream = f"pf-cli-test:{uuid.uuid4().hex[:12]}"
    url = f"{redis_url}?stream={stream}"
    assert main(["submit", "What day?", "--bus", url, "--tenant", "acme", "--json"]) == EXIT_OK
    run_id = json.loads(capsys.readouterr().out)["run_id"]

    async def check() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        bus = await RedisBus.open(url, secret=secret)
        try:
            [(_id, fields)] = await client.xrange(stream)
            assert json.loads(fields["job"])["sig"].startswith("hmac-sha256:")
            [delivery] = await bus.consume("c1", block_s=1.0)
            assert delivery.job["run_id"] == run_id and "sig" not in delivery.job
        finally:
            await bus.aclose()
            await client.delete(stream, f"{stream}:dead")
            await client.aclose()

    asyncio.run(check())


def test_worker_notify_needs_a_usable_url_and_a_signing_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["worker", "--notify", "ftp://hooks.example.com/x"]) == EXIT_USAGE
    assert "--notify" in capsys.readouterr().err
    monkeypatch.delenv("PENGUIFLOW_WEBHOOK_SECRET", raising=False)
    for engine in ([], ["--engine", "temporal://127.0.0.1:1"]):
        code = main(
            ["worker", "--store", "memory://", "--notify", "https://hooks.example.com/x", *engine]
        )
        assert code == EXIT_USAGE
        assert "PENGUIFLOW_WEBHOOK_SECRET" in capsys.readouterr().err
