"""``transport: a2a`` sources against a real A2A agent (the service's app on uvicorn on
127.0.0.1): a skill is a tool that gets the agent's answer; a remote question is asked like
an elicitation; a refusal, a paused task without anyone to ask and bad credentials are tool
errors the model sees; manifests refuse what an a2a source does not take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from penguiflow_agents.exceptions import ManifestError
from penguiflow_agents.tools import CallContext, ToolRegistry, load_manifest
from tests.server.conftest import KEYS, Service, live_service

pytestmark = pytest.mark.timeout(120)


def manifest(tmp_path: Path, url: str, *extra: str) -> Path:
    path = tmp_path / "remote.yaml"
    lines = [
        "name: remote",
        "transport: a2a",
        f"url: {url}",
        'auth: {type: bearer, token: "${REMOTE_KEY}"}',
        "timeout_s: 60",
        *extra,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def registry_for(
    tmp_path: Path, svc: Service, monkeypatch: pytest.MonkeyPatch, who: str = "alice", *extra: str
) -> ToolRegistry:
    monkeypatch.setenv("REMOTE_KEY", KEYS[who])
    registry = ToolRegistry()
    registry.add_manifest(load_manifest(manifest(tmp_path, str(svc.client.base_url), *extra)))
    return registry


async def test_each_skill_of_the_card_is_a_tool_that_answers_with_the_agents_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service() as svc:
        async with await registry_for(tmp_path, svc, monkeypatch) as registry:
            specs = await registry.list_tools()
            assert [s.name for s in specs] == ["remote.run"]
            assert specs[0].input_schema["required"] == ["message"]
            seen: list[tuple[str, Any]] = []
            ctx = CallContext(on_event=lambda name, data: seen.append((name, data)))
            result = await registry.call("remote.run", {"message": "add 2 3"}, ctx)
        assert result.ok, result
        assert result.output == "done: 5"
        task_id = result.structured["task_id"]
        run = (await svc.get(f"/v1/runs/{task_id}")).json()
        assert run["status"] == "completed"


async def test_skills_exclude_drops_a_skill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service() as svc:
        registry = await registry_for(
            tmp_path, svc, monkeypatch, "alice", "skills: {exclude: [run]}"
        )
        async with registry:
            assert await registry.list_tools() == []


async def test_a_remote_question_is_asked_like_an_elicitation_and_the_answer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service() as svc:
        asked: list[str] = []

        async def person(question: Any) -> tuple[str, dict[str, Any] | None]:
            asked.append(question.message)
            approvals = (await svc.get("/v1/approvals?status=pending", "boss")).json()
            approval_id = approvals[0]["id"]
            r = await svc.post(
                f"/v1/approvals/{approval_id}/decision", "boss", {"decision": "approve"}
            )
            assert r.status_code == 200, r.text
            return "accept", {"answer": "approved, go on"}

        async with await registry_for(tmp_path, svc, monkeypatch) as registry:
            await registry.list_tools()
            ctx = CallContext(extra={"elicit": person})
            result = await registry.call("remote.run", {"message": "write hello"}, ctx)
        assert len(asked) == 1 and "approval" in asked[0]
        assert result.ok, result
        assert "wrote 5 characters" in result.output


async def test_a_remote_question_with_no_one_to_ask_is_a_tool_error_quoting_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service() as svc:
        async with await registry_for(tmp_path, svc, monkeypatch) as registry:
            await registry.list_tools()
            result = await registry.call("remote.run", {"message": "write hello"}, CallContext())
        assert not result.ok
        assert result.error_kind == "tool_error"
        assert "asks for input" in (result.error or "") and "approval" in (result.error or "")


async def test_a_refused_key_is_a_tool_error_that_says_so_without_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service() as svc:
        async with await registry_for(tmp_path, svc, monkeypatch, "revoked") as registry:
            await registry.list_tools()
            result = await registry.call("remote.run", {"message": "add 1 1"}, CallContext())
        assert not result.ok
        assert result.error_kind == "tool_error"
        assert "refused the credentials" in (result.error or "")
        assert KEYS["revoked"] not in (result.error or "")


async def test_an_agent_that_cannot_be_reached_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.server.serve_process import free_port

    monkeypatch.setenv("REMOTE_KEY", "k")
    registry = ToolRegistry()
    registry.add_manifest(load_manifest(manifest(tmp_path, f"http://127.0.0.1:{free_port()}")))
    async with registry:
        result = await registry.call("remote.run", {"message": "hi"}, CallContext())
    assert result.error_kind == "unavailable"
    assert "could not be reached" in (result.error or "")


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        (["auth: {type: oauth}"], "auth.type", "bearer"),
        (["transport: http", "skills: {include: [x]}"], "skills", "only for transport 'a2a'"),
        (["skills: {include: ['(']}"], "skills.include.0", "regular expression"),
    ],
)
def test_manifests_refuse_what_an_a2a_source_does_not_take(
    tmp_path: Path, extra: list[str], key: str, words: str
) -> None:
    path = tmp_path / "bad.yaml"
    base = {"name": "remote", "transport": "a2a", "url": "http://127.0.0.1:1"}
    lines = [f"{k}: {v}" for k, v in base.items() if not any(e.startswith(k + ":") for e in extra)]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert caught.value.key == key
    assert words in str(caught.value)


async def test_a_cancelled_call_cancels_the_remote_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    async with live_service() as svc:
        async with await registry_for(tmp_path, svc, monkeypatch) as registry:
            await registry.list_tools()
            call = asyncio.ensure_future(
                registry.call("remote.run", {"message": "wait"}, CallContext())
            )
            deadline = asyncio.get_running_loop().time() + 60
            while not (runs := (await svc.get("/v1/runs")).json()["runs"]):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            run = (await svc.get(f"/v1/runs/{runs[0]['run_id']}")).json()
        assert run["status"] == "cancelled"


async def test_the_same_call_made_again_reattaches_to_its_task_instead_of_sending_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from penguiflow_agents._identity import Headers
    from penguiflow_agents.store import MemoryStore

    store = MemoryStore()
    async with live_service() as svc:
        async with await registry_for(tmp_path, svc, monkeypatch) as registry:
            specs = await registry.list_tools()
            assert specs[0].resumable

            def ctx() -> CallContext:
                return CallContext(
                    headers=Headers(tenant="acme", principal="p"),
                    run_id="run-1",
                    call_id="call-1",
                    store=store,
                )

            first = await registry.call("remote.run", {"message": "add 2 3"}, ctx())
            again = await registry.call("remote.run", {"message": "add 2 3"}, ctx())
        runs = (await svc.get("/v1/runs")).json()["runs"]
    assert first.ok and again.ok, (first, again)
    assert first.output == again.output == "done: 5"
    assert len(runs) == 1  # the task ran once
    bound = await store.get_remote("acme", "run-1", "tool:remote.run:call-1")
    assert bound is not None and bound.task_id == runs[0]["run_id"]
