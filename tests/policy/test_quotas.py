"""Tenant quotas (``quotas:`` of a policy): parsed strictly, counted in process or in Redis.

- a bad quota is refused naming the file, the key and the value;
- ``concurrent_runs``, ``runs_per_minute``, ``tokens_per_day`` and ``cost_usd_per_day``
  refuse a run before it starts, with a sentence and a Retry-After, on both ledgers
  (Redis: shared by several ledgers, as by several processes); another tenant goes on;
- a running run that crosses ``tokens_per_day`` stops at its next model turn with that
  sentence; a finished run no longer counts among the concurrent ones;
- the service answers 429 with Retry-After and the sentence.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import BusError, PolicyError, QuotaExceededError
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall, Usage
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import (
    LocalQuotaLedger,
    PolicySet,
    QuotaLedger,
    RedisQuotaLedger,
    TenantQuotas,
    load_policy_file,
)
from penguiflow_agents.server import ServerSettings, create_app
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

ACME = Headers(tenant="acme", principal="alice", roles=[])
GLOBEX = Headers(tenant="globex", principal="gus", roles=[])


def policies(**quotas: float) -> PolicySet:
    return PolicySet.from_documents(
        [
            {"tenant": "acme", "allow": ["t.*"], "quotas": quotas},
            {"tenant": "globex", "allow": ["t.*"]},
        ]
    )


def test_a_bad_quota_is_refused_naming_file_key_and_value(tmp_path: Path) -> None:
    file = tmp_path / "acme.yaml"
    file.write_text("tenant: acme\nquotas: {tokens_per_day: -5}\n")
    with pytest.raises(PolicyError) as info:
        load_policy_file(file)
    text = str(info.value)
    assert str(file) in text and "quotas.tokens_per_day" in text and "-5" in text
    file.write_text("tenant: acme\nquotas: {runs_per_hour: 5}\n")
    with pytest.raises(PolicyError, match="runs_per_minute, tokens_per_day"):
        load_policy_file(file)
    file.write_text("tenant: acme\nquotas: {concurrent_runs: many}\n")
    with pytest.raises(PolicyError, match=r"quotas.concurrent_runs.*'many'"):
        load_policy_file(file)


def test_quotas_do_not_change_the_policy_version_approvals_are_bound_to() -> None:
    assert policies(concurrent_runs=1).version_for("acme") == policies().version_for("acme")


@pytest.fixture(params=["local", "redis"])
async def ledgers(request: pytest.FixtureRequest) -> AsyncIterator[list[QuotaLedger]]:
    """Two ledgers that see the same counts: one in-process ledger twice, or two on Redis."""
    if request.param == "local":
        one = LocalQuotaLedger()
        yield [one, one]
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"pf-quota-test:{uuid.uuid4().hex[:10]}"
    made = [RedisQuotaLedger(url, prefix=prefix) for _ in range(2)]
    yield list(made)
    client = aioredis.Redis.from_url(url)
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    for ledger in made:
        await ledger.aclose()


async def test_concurrent_runs_are_refused_until_one_ends(ledgers: list[QuotaLedger]) -> None:
    one, two = (TenantQuotas(policies(concurrent_runs=2), ledger) for ledger in ledgers)
    await one.admit("acme", "r1")
    await two.admit("acme", "r2")
    with pytest.raises(QuotaExceededError) as info:
        await two.admit("acme", "r3")
    assert info.value.quota == "concurrent_runs" and info.value.retry_after_s >= 1
    assert "already has 2 runs in progress" in str(info.value)
    await two.admit("globex", "g1")  # another tenant goes on
    await one.ledger.release("acme", "r1")
    await two.admit("acme", "r3")


async def test_runs_per_minute_is_a_bucket_and_a_refusal_takes_nothing(
    ledgers: list[QuotaLedger],
) -> None:
    one, two = (
        TenantQuotas(policies(runs_per_minute=2, concurrent_runs=3), ledger) for ledger in ledgers
    )
    await one.admit("acme", "r1")
    await two.admit("acme", "r2")
    with pytest.raises(QuotaExceededError) as info:
        await one.admit("acme", "r3")
    assert info.value.quota == "runs_per_minute" and 1 <= info.value.retry_after_s <= 60
    assert "runs_per_minute" in str(info.value)


async def test_day_quotas_refuse_new_runs_until_midnight(ledgers: list[QuotaLedger]) -> None:
    one, two = (
        TenantQuotas(policies(tokens_per_day=100, cost_usd_per_day=1.0), ledger)
        for ledger in ledgers
    )
    await one.admit("acme", "r1")
    await one.charge(
        "acme",
        LLMResponse(
            content="x", usage=Usage(prompt_tokens=60, completion_tokens=40), cost_usd=0.01
        ),
    )
    with pytest.raises(QuotaExceededError) as info:
        await two.admit("acme", "r2")
    assert info.value.quota == "tokens_per_day" and info.value.retry_after_s <= 86_400
    assert "used 100 tokens today (UTC)" in str(info.value) and "midnight UTC" in str(info.value)
    costly = TenantQuotas(policies(cost_usd_per_day=0.5), ledgers[0])
    await costly.charge("acme", LLMResponse(content="x", cost_usd=0.5))
    with pytest.raises(QuotaExceededError, match="cost_usd_per_day"):
        await costly.admit("acme", "r3")


@tool
async def look(what: str) -> str:
    """Look something up."""
    return f"saw {what}"


def turn_with_call(request: LLMRequest) -> LLMResponse:
    call = LLMToolCall(id="c1", name="t.look", arguments={"what": "x"})
    return LLMResponse(
        content=None, tool_calls=[call], usage=Usage(prompt_tokens=100, completion_tokens=50)
    )


def planner(gate: TenantQuotas) -> ReactPlanner:
    registry = ToolRegistry()
    registry.add_functions(look, source="t")
    llm = ScriptedLLM(
        [
            turn_with_call,
            LLMResponse(content="the answer", usage=Usage(prompt_tokens=10, completion_tokens=5)),
        ]
    )
    made = ReactPlanner(llm=llm, registry=registry, store=MemoryStore(), policies=gate.policies)
    instrumented: ReactPlanner = gate.instrument(made)
    return instrumented


async def test_a_running_run_that_crosses_tokens_per_day_stops_at_its_next_model_turn() -> None:
    gate = TenantQuotas(policies(tokens_per_day=120))
    result = await planner(gate).run("look", headers=ACME)
    assert result.status == "failed"
    assert [s.tool for s in result.steps] == ["t.look"]  # the turn that crossed it ran its call
    assert result.error is not None
    assert result.error.startswith("the run stopped before its next model turn")
    assert "tokens_per_day: 120" in result.error and "150 tokens" in result.error
    other = await planner(gate).run("look", headers=GLOBEX)  # no quota: goes on
    assert other.status == "completed" and other.answer == "the answer"


async def test_usage_counted_by_one_process_stops_a_run_in_another(
    ledgers: list[QuotaLedger],
) -> None:
    """The day's tokens are the fleet's: a turn charged through one ledger stops the next
    model turn of a run whose planner uses the other."""
    here, there = (TenantQuotas(policies(tokens_per_day=1000), ledger) for ledger in ledgers)
    await here.charge("acme", LLMResponse(content="x", usage=Usage(prompt_tokens=990)))
    result = await planner(there).run("look", headers=ACME)  # its first turn: 150 more
    assert result.status == "failed" and "tokens_per_day: 1000" in (result.error or "")
    assert "1140 tokens" in (result.error or "")


async def test_an_unreachable_quota_ledger_refuses_rather_than_runs_unchecked() -> None:
    down = TenantQuotas(
        policies(tokens_per_day=10, concurrent_runs=1),
        RedisQuotaLedger("redis://127.0.0.1:1/0", prefix="nowhere"),
    )
    try:
        with pytest.raises(BusError, match="tenant quotas are kept in Redis"):
            await down.admit("acme", "r1")
        result = await planner(down).run("look", headers=ACME)
        assert result.status == "failed"
        assert "quotas of tenant 'acme' could not be checked" in (result.error or "")
        assert result.steps == []  # no model turn was made
    finally:
        await down.aclose()


async def test_a_run_counts_among_concurrent_runs_only_while_it_runs() -> None:
    gate = TenantQuotas(policies(concurrent_runs=1))
    await gate.admit("acme", "run_one")
    result = await planner(gate).run("look", headers=ACME, run_id="run_one")
    assert result.status == "completed"
    for _ in range(100):  # the release is scheduled when the run closes
        if not gate.ledger._runs.get("acme"):  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)  # a task of the gate releases it: nothing to await here
    await gate.admit("acme", "run_two")


async def test_the_service_refuses_a_run_over_quota_with_429_and_retry_after() -> None:
    from tests.server.conftest import KEYS, QuestionLLM, key_ring, tool_registry

    app = create_app(
        ServerSettings(poll_s=0.2),
        store=MemoryStore(),
        registry=tool_registry(),
        policies=PolicySet.from_documents(
            [
                {"tenant": "acme", "allow": ["math.*"], "quotas": {"runs_per_minute": 1}},
                {"tenant": "globex", "allow": ["math.*"]},
            ]
        ),
        keys=key_ring(),
        llm=QuestionLLM(),
    )
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:

        async def start(who: str) -> httpx.Response:
            return await client.post(
                "/v1/runs?wait=true",
                json={"query": "hello"},
                headers={"Authorization": f"Bearer {KEYS[who]}"},
            )

        assert (await start("alice")).status_code == 200
        refused = await start("alice")
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        body = refused.json()["error"]
        assert body["code"] == "quota_exceeded" and "runs_per_minute" in body["message"]
        chat = await client.post(  # the OpenAI-compatible route is refused alike
            "/v1/chat/completions",
            json={"model": "default", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {KEYS['alice']}"},
        )
        assert chat.status_code == 429 and chat.headers["Retry-After"], chat.text
        for _ in range(2):  # another tenant's runs go on
            assert (await start("globex")).status_code == 200
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def test_cli_run_counts_with_the_fleet_and_exits_2_over_a_quota(
    tmp_path: Path, redis_url: str
) -> None:
    """`run` with $PENGUIFLOW_BUS admits in the bus's Redis: the second run of the minute is
    refused with exit 2 and one sentence; another tenant's run goes on."""
    import subprocess
    import sys

    from tests.cli.test_run_cli import env_for

    (tmp_path / "tools").mkdir()  # no tools: the answer needs none
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "acme.yaml").write_text(
        "tenant: acme\nallow: []\nquotas: {runs_per_minute: 1}\n"
    )
    (tmp_path / "policies" / "default.yaml").write_text('tenant: "*"\nallow: []\n')
    (tmp_path / "answer.yaml").write_text("turns:\n  - content: fine\n")
    stream = f"pf-quota-cli:{uuid.uuid4().hex[:10]}"
    env = env_for(tmp_path) | {"PENGUIFLOW_BUS": f"{redis_url}?stream={stream}"}

    def run(tenant: str) -> subprocess.CompletedProcess[str]:
        args = ["run", "hello", "--tenant", tenant, "--model", "replay:answer.yaml"]
        return subprocess.run(
            [sys.executable, "-m", "penguiflow_agents", *args, "--store", "sqlite:///s.db"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        first = run("acme")
        assert first.returncode == 0, first.stderr
        refused = run("acme")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        [sentence] = refused.stderr.strip().splitlines()
        assert "runs_per_minute" in sentence and "tenant 'acme'" in sentence
        assert run("globex").returncode == 0
    finally:

        async def clean() -> None:
            client = aioredis.Redis.from_url(redis_url)
            keys = [k async for k in client.scan_iter(f"{stream}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

        asyncio.run(clean())
