"""Per-caller tool views on one shared planner, and multi-turn sessions per (tenant, session)."""

from __future__ import annotations

import asyncio
from typing import Any

from penguiflow_agents._identity import Headers, session_key
from penguiflow_agents.llm._types import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry

POLICIES = [
    {"tenant": "acme", "allow": ["math.*"]},
    {"tenant": "globex", "allow": ["text.*"], "roles": {"viewer": {"allow": ["text.echo"]}}},
]


async def test_overlapping_runs_of_different_callers_each_see_only_their_view(
    registry: ToolRegistry,
) -> None:
    """Both runs are in flight at once (a rendezvous in the model) and still keep their own views."""
    both_asked = asyncio.Event()
    asked: list[str] = []
    seen: dict[str, list[str]] = {}

    async def first_turn(request: LLMRequest) -> LLMResponse:
        tenant = str(request.metadata["tenant"]) + "/" + request.messages[1]["content"]
        seen[tenant] = [t.name for t in request.tools]
        asked.append(tenant)
        if len(asked) == 3:
            both_asked.set()
        await asyncio.wait_for(both_asked.wait(), timeout=5)
        # Every caller tries math.add: only acme may run it.
        return LLMResponse(
            content=None,
            tool_calls=(LLMToolCall(id="c1", name="math.add", arguments={"a": 1, "b": 2}),),
        )

    def second_turn(request: LLMRequest) -> LLMResponse:
        return LLMResponse(content=request.messages[-1]["content"])

    llm = ScriptedLLM([first_turn, second_turn])
    store = MemoryStore()
    planner = ReactPlanner(
        llm=llm, registry=registry, store=store, policies=PolicySet.from_documents(POLICIES)
    )
    acme, globex, viewer = await asyncio.gather(
        planner.run("a", headers=Headers(tenant="acme", principal="ann")),
        planner.run("g", headers=Headers(tenant="globex", principal="gus")),
        planner.run("v", headers=Headers(tenant="globex", principal="val", roles=["viewer"])),
    )
    assert seen == {
        "acme/a": ["math.add"],
        "globex/g": ["text.echo", "text.big"],
        "globex/v": ["text.echo"],
    }
    assert acme.answer == "3"
    assert globex.steps[0].outcome == "denied" and "not available" in (globex.answer or "")
    assert viewer.steps[0].outcome == "denied"
    assert "Available tools: text.echo." in (viewer.answer or "")
    denied = [
        e for e in await store.list_events("globex", viewer.run_id) if e.kind == "policy_denied"
    ]
    assert [e.data["tool"] for e in denied] == ["math.add"]


async def test_a_session_carries_history_between_runs_of_the_same_tenant_only(
    registry: ToolRegistry,
) -> None:
    store = MemoryStore()
    llm = ScriptedLLM([{"content": "Nice to meet you, Ada."}, {"content": "Your name is Ada."}])
    planner = ReactPlanner(llm=llm, registry=registry, store=store)
    ada = Headers(tenant="acme", principal="ada")
    first = await planner.run("My name is Ada.", headers=ada, session_id="s1")
    second = await planner.run("What is my name?", headers=ada, session_id="s1")
    assert (first.answer, second.answer) == ("Nice to meet you, Ada.", "Your name is Ada.")
    history = [(m["role"], m["content"]) for m in llm.requests[1].messages[1:]]
    assert history == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
    ]
    assert len(await store.load_session("acme", session_key("ada", "s1"))) == 4
    # The same session id under another tenant starts empty.
    other: list[Any] = []
    llm2 = ScriptedLLM([lambda r: (other.extend(r.messages), LLMResponse(content="Hi."))[1]])
    await ReactPlanner(llm=llm2, registry=registry, store=store).run(
        "Who am I?", headers=Headers(tenant="globex"), session_id="s1"
    )
    assert [m["role"] for m in other] == ["system", "user"]
    assert await store.load_session("globex", session_key("anonymous", "s1")) == [
        {"role": "user", "content": "Who am I?"},
        {"role": "assistant", "content": "Hi."},
    ]


async def test_a_session_belongs_to_one_principal_unless_its_id_says_shared(
    registry: ToolRegistry,
) -> None:
    """Bob reusing Ada's session id does not see her history; a ``shared:`` id is shared."""
    store = MemoryStore()
    seen: list[list[str]] = []
    replies = {
        "My secret is 42.": "Noted.",
        "What is the secret?": "I don't know.",
        "And again?": "Ada's again.",
        "Team note.": "Hi.",
        "Seen the note?": "Yes.",
    }

    def answer(request: Any) -> LLMResponse:
        seen.append([str(m["content"]) for m in request.messages[1:]])
        return LLMResponse(content=replies[seen[-1][-1]])

    llm = ScriptedLLM([answer] * 10)  # turns are chosen by position in the conversation
    planner = ReactPlanner(llm=llm, registry=registry, store=store)
    ada = Headers(tenant="acme", principal="ada")
    bob = Headers(tenant="acme", principal="bob")
    await planner.run("My secret is 42.", headers=ada, session_id="s1")
    await planner.run("What is the secret?", headers=bob, session_id="s1")
    assert seen[1] == ["What is the secret?"]
    # The same principal under another spelling is the same principal.
    await planner.run(
        "And again?", headers=Headers(tenant="acme", principal="ADA"), session_id="s1"
    )
    assert seen[2][:2] == ["My secret is 42.", "Noted."]
    # A shared session is seen by every principal of the tenant.
    await planner.run("Team note.", headers=ada, session_id="shared:team")
    assert len(await store.load_session("acme", "shared:team")) == 2
    await planner.run("Seen the note?", headers=bob, session_id="shared:team")
    assert seen[4] == ["Team note.", "Hi.", "Seen the note?"]
