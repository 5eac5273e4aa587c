"""A worker on a signed Redis bus runs signed jobs and never a forged one (issue #12 §8); a
worker logs an unexpected error with its traceback (§9)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from penguiflow_agents.bus import RedisBus
from penguiflow_agents.planner import ReactPlanner, RunResult
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.worker import Job, submit_run

from .conftest import ADMIN, Lab

SECRET = "worker-bus-secret-0123456789"


async def test_a_forged_job_never_runs_and_a_signed_one_does(redis_url: str) -> None:
    stream = f"pf-worker-test:{uuid.uuid4().hex[:12]}"
    bus = await RedisBus.open(redis_url, stream=stream, visibility_timeout_s=0.3, secret=SECRET)
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    lab = Lab(store=MemoryStore(), bus=bus)
    try:
        # Written straight to Redis: an admin job of tenant acme, without the secret.
        forged = Job.run("bump it", headers=ADMIN, run_id="run_" + "f" * 32)
        await raw.xadd(stream, {"job": json.dumps(forged.to_dict())})
        honest = await submit_run(bus, "bump it", headers=ADMIN)
        async with lab.running(lab.worker()):
            await lab.until(lambda: lab.counts[honest.run_id] == 1, "the signed job to run")
            await lab.acked()
        assert lab.counts[forged.run_id] == 0
        assert [r.run_id for r in await lab.store.list_runs("acme")] == [honest.run_id]
        [dead] = await bus.dead_letters()
        assert dead.reason.startswith("unsigned") and dead.job["run_id"] == forged.run_id
    finally:
        await bus.aclose()
        await raw.delete(stream, f"{stream}:dead")
        await raw.aclose()
        await lab.store.aclose()


async def test_an_unexpected_error_in_a_job_is_logged_with_its_traceback(lab: Lab) -> None:
    """Issue #12 §9: the worker's catch-all logs the traceback, not just the message."""

    class Broken(ReactPlanner):
        __slots__ = ()

        async def run(self, *args: Any, **kwargs: Any) -> RunResult:
            raise RuntimeError("a bug under the planner")

    planner = Broken(llm=lab.llm(), registry=lab.registry(), store=lab.store)
    with capture_logs() as logs:
        async with lab.running(lab.worker(planner)):
            await submit_run(lab.bus, "bump it", headers=ADMIN)
            await lab.until(lambda: any(e["event"] == "worker_job_error" for e in logs), "error")
    entry = next(e for e in logs if e["event"] == "worker_job_error")
    assert entry["log_level"] == "error" and entry["exc_info"] is True
    assert "RuntimeError: a bug under the planner" in entry["error"]
