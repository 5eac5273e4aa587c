"""A call's arguments text is bounded (``ReactPlanner(max_argument_chars=...)``).

A model (or whatever answers in its name) that sends megabytes of arguments
gets them refused as ``invalid_arguments`` with the reason and the limit; the
text is never validated, shown to a policy or an approver, run, stored whole
or sent back to the provider whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.llm import LiteLLMClient
from penguiflow_agents.llm._types import LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool
from tests.planner.test_over_litellm import openai_turn

REPO = Path(__file__).resolve().parents[2]
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ALICE = Headers(tenant="acme", principal="alice", roles=["editor"])
MARK = "needle-7f3a"  # appears only inside the oversized text


@pytest.fixture(scope="module")
def litellm() -> object:
    from penguiflow_agents.llm._litellm_import import load_litellm

    return load_litellm()


@pytest.mark.parametrize("path", ["direct", "litellm"])
async def test_oversized_arguments_from_openai_are_refused_with_the_limit_and_the_retry_runs(
    litellm: object, path: str
) -> None:
    ran: list[int] = []

    @tool
    async def echo(text: str) -> int:
        """Count the characters of a text."""
        ran.append(len(text))
        return len(text)

    registry = ToolRegistry()
    registry.add_functions(echo, source="t")
    big = json.dumps({"text": MARK + "x" * 300_000})
    replies = iter(
        [
            openai_turn([("call_big", "t__echo", big), ("call_ok", "t__echo", '{"text": "hi"}')]),
            openai_turn([("call_small", "t__echo", '{"text": "abc"}')]),
            openai_turn(None, "done"),
        ]
    )
    with respx.mock(assert_all_mocked=True) as router:
        route = router.post(OPENAI_URL).mock(
            side_effect=lambda request: httpx.Response(200, json=next(replies))
        )
        llm = LiteLLMClient("openai/gpt-4.1-mini", api_key="sk-test-key-123456")
        if path == "litellm":
            llm._route = "litellm"
        else:
            assert llm.direct() is not None
        try:
            result = await ReactPlanner(llm=llm, registry=registry).run(
                "count", headers=Headers(tenant="acme")
            )
        finally:
            await llm.aclose()
    assert (result.status, result.answer) == ("completed", "done")
    outcomes = {s.call_id: s.outcome for s in result.steps}
    assert outcomes == {"call_big": "invalid_arguments", "call_ok": "ok", "call_small": "ok"}
    assert sorted(ran) == [2, 3]  # the oversized call never ran; its neighbour did
    second = route.calls[1].request.content
    assert len(second) < 20_000  # nothing of the 300 KB went back to the provider
    observation = {
        m["tool_call_id"]: m["content"]
        for m in json.loads(second)["messages"]
        if m["role"] == "tool"
    }["call_big"]
    assert "Error (invalid_arguments)" in observation
    compact = json.dumps(json.loads(big), separators=(",", ":"))
    assert f"{len(compact)} characters long" in observation
    assert "limit of 262144 (max_argument_chars)" in observation
    refused = next(s for s in result.steps if s.call_id == "call_big")
    assert refused.arguments == {}


def files_write(content: str) -> LLMToolCall:
    raw = json.dumps({"path": "/notes/big.txt", "content": content}, separators=(",", ":"))
    return LLMToolCall(
        id="w1",
        name="files.write_file",
        arguments=json.loads(raw),
        raw_arguments=raw,
    )


@pytest.fixture
def files(files_registry: ToolRegistry) -> ToolRegistry:
    return files_registry


async def test_an_oversized_gated_call_opens_no_approval_and_nothing_stores_its_text(
    files: ToolRegistry, tmp_path: Path
) -> None:
    store = MemoryStore()
    llm = ScriptedLLM(
        [
            LLMResponse(content=None, tool_calls=[files_write(MARK + "y" * 5_000)]),
            {"content": "Too long; not written."},
        ]
    )
    planner = ReactPlanner(
        llm=llm,
        registry=files,
        store=store,
        policies=PolicySet.load_dir(REPO / "policies"),
        max_argument_chars=4_096,
        record_events=True,
    )
    result = await planner.run("Write it.", headers=ALICE)
    # A write needs an editor's approval under policies/acme.yaml; this one never got that far.
    assert result.status == "completed", result.error
    assert [s.outcome for s in result.steps] == ["invalid_arguments"]
    assert await store.list_approvals("acme") == []
    assert not (tmp_path / "sandbox" / "notes" / "big.txt").exists()
    record = await store.get_run("acme", result.run_id)
    events = await store.list_events("acme", result.run_id)
    stored = json.dumps([record.state, [(e.kind, e.data) for e in events]], default=str)
    assert MARK in stored  # the text's first characters are kept, to show the model
    assert "y" * 600 not in stored and len(stored) < 20_000
    told = llm.requests[1].messages[-1]["content"]
    assert "limit of 4096 (max_argument_chars)" in told


async def test_arguments_at_the_limit_run_and_one_character_over_do_not(
    files: ToolRegistry, tmp_path: Path
) -> None:
    call = files_write("z" * 100)
    limit = len(call.raw_arguments)
    for max_chars, outcome in ((limit, "ok"), (limit - 1, "invalid_arguments")):
        llm = ScriptedLLM([LLMResponse(content=None, tool_calls=[call]), {"content": "ok"}])
        result = await ReactPlanner(llm=llm, registry=files, max_argument_chars=max_chars).run(
            "Write it.", headers=ALICE
        )
        assert [s.outcome for s in result.steps] == [outcome], max_chars


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_max_argument_chars_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(UserError, match="max_argument_chars must be a positive integer"):
        ReactPlanner(
            llm=ScriptedLLM([{"content": "x"}]),
            registry=ToolRegistry(),
            max_argument_chars=bad,  # type: ignore[arg-type]
        )


async def test_escaped_non_ascii_counts_as_the_characters_the_model_sent(
    files: ToolRegistry, tmp_path: Path
) -> None:
    """A provider may send every non-ASCII character as a six-character ``\\u`` escape (JSON
    text made with ``ensure_ascii``): 2,000 accented letters are 2,000 characters, not 12,000."""
    results = {}
    for letters in (2_000, 6_000):
        arguments = {"path": "/notes/accents.txt", "content": "\u00e9" * letters}
        raw = json.dumps(arguments)  # ASCII only: each letter is 6 characters of text
        assert len(raw) > 6 * letters
        call = LLMToolCall(id="w1", name="files.write_file", arguments=arguments, raw_arguments=raw)
        llm = ScriptedLLM([LLMResponse(content=None, tool_calls=[call]), {"content": "ok"}])
        result = await ReactPlanner(llm=llm, registry=files, max_argument_chars=5_000).run(
            "Write it.", headers=ALICE
        )
        [step] = result.steps
        results[letters] = step.outcome
        if step.outcome == "invalid_arguments":
            compact = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
            assert f"the arguments are {len(compact)} characters long" in str(step.result)
    assert results == {2_000: "ok", 6_000: "invalid_arguments"}
    written = (tmp_path / "sandbox" / "notes" / "accents.txt").read_text(encoding="utf-8")
    assert written == "\u00e9" * 2_000
