"""Property: for random policies, roles and tool names, the view equals a reference evaluation,
and a planner refuses at execution every call outside it.

The reference below is written separately from the implementation: its own
glob matcher (``*`` and ``?`` only) and a literal reading of the rules in
``penguiflow_agents.policy._set``. The execution half drives a real
``ReactPlanner`` whose scripted model names *every* registered tool, visible
or not, and counts which ones the catalog actually ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools._types import CallContext, ToolResult, ToolSpec

TENANTS = ["acme", "globex", "*"]
ROLES = ["viewer", "admin", "ops"]

segment = st.sampled_from(["a", "b", "ab", "a_b", "ba"])
tool_names = st.builds(lambda s, t: f"{s}.{t}", segment, segment)
# Mostly globs that hit the names above, some arbitrary ones.
globs = st.one_of(
    st.sampled_from(["*", "a.*", "b.*", "*.a", "*.b*", "a*", "?.?", "ab.a_b", "*_*", "?b.*"]),
    st.builds(lambda s, t: f"{s}.{t}", segment, st.sampled_from(["*", "?", "a*", "*b"])),
    st.text(alphabet="ab_.*?", min_size=1, max_size=6),
)
glob_lists = st.lists(globs, max_size=3)
role_docs = st.fixed_dictionaries({}, optional={"allow": glob_lists, "deny": glob_lists})
policy_docs = st.fixed_dictionaries(
    {"allow": glob_lists, "deny": glob_lists},
    optional={"roles": st.dictionaries(st.sampled_from(ROLES), role_docs, max_size=3)},
)
policy_sets = st.dictionaries(st.sampled_from(TENANTS), policy_docs, max_size=3)


def ref_match(glob: str, name: str) -> bool:
    if not glob:
        return not name
    head, rest = glob[0], glob[1:]
    if head == "*":
        return any(ref_match(rest, name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    return (head == "?" or head == name[0]) and ref_match(rest, name[1:])


def ref_visible(docs: dict[str, dict[str, Any]], tenant: str, roles: list[str], name: str) -> bool:
    doc = docs.get(tenant, docs.get("*"))
    if doc is None:
        return False

    def hit(patterns: list[str]) -> bool:
        return any(ref_match(p, name) for p in patterns)

    if not hit(doc["allow"]) or hit(doc["deny"]):
        return False
    listed = [doc["roles"][r] for r in roles if r in doc.get("roles", {})]
    if not listed:
        return True
    if any(hit(r.get("deny", [])) for r in listed):
        return False
    return any(hit(r.get("allow", [])) for r in listed)


@settings(max_examples=400, deadline=None)
@given(
    docs=policy_sets,
    tenant=st.sampled_from(["acme", "globex", "initech"]),
    roles=st.lists(st.sampled_from([*ROLES, "guest"]), max_size=3),
    names=st.lists(tool_names, max_size=8, unique=True),
)
def test_view_and_is_visible_equal_the_reference(
    docs: dict[str, dict[str, Any]], tenant: str, roles: list[str], names: list[str]
) -> None:
    policies = PolicySet.from_documents([{"tenant": t, **d} for t, d in docs.items()])
    who = Headers(tenant=tenant, principal="p", roles=roles)
    tools = [
        ToolSpec(name=n, source=n.split(".")[0], description="", input_schema={}) for n in names
    ]
    view = policies.view(tools, who)
    expected = {n for n in names if ref_visible(docs, tenant, roles, n)}
    assert view.names == expected
    assert [t.name for t in view.tools] == [n for n in names if n in expected]
    for name in names:
        assert policies.is_visible(name, who) is (name in expected)


class CountingCatalog:
    """A ToolCatalog whose every tool succeeds and records that it ran."""

    def __init__(self, names: list[str]) -> None:
        self.specs = [
            ToolSpec(name=n, source=n.split(".")[0], description=n, input_schema={}).with_hash()
            for n in names
        ]
        self.ran: list[str] = []

    async def list_tools(self) -> list[ToolSpec]:
        return self.specs

    async def call(
        self, name: str, arguments: Mapping[str, Any], ctx: CallContext | None = None
    ) -> ToolResult:
        self.ran.append(name)
        return ToolResult.success(name, "ran")


@settings(max_examples=150, deadline=None)
@given(
    docs=policy_sets,
    tenant=st.sampled_from(["acme", "globex", "initech"]),
    roles=st.lists(st.sampled_from([*ROLES, "guest"]), max_size=3),
    names=st.lists(tool_names, min_size=1, max_size=8, unique=True),
)
def test_a_planner_shows_only_the_reference_view_and_refuses_every_call_outside_it(
    docs: dict[str, dict[str, Any]], tenant: str, roles: list[str], names: list[str]
) -> None:
    expected = [n for n in names if ref_visible(docs, tenant, roles, n)]
    catalog = CountingCatalog(names)
    calls = [{"name": n, "arguments": {}, "id": f"c{i}"} for i, n in enumerate(names)]
    llm = ScriptedLLM([{"tool_calls": calls}, {"content": "done"}])
    store = MemoryStore()
    planner = ReactPlanner(
        llm=llm,
        registry=catalog,
        store=store,
        policies=PolicySet.from_documents([{"tenant": t, **d} for t, d in docs.items()]),
    )
    who = Headers(tenant=tenant, principal="p", roles=roles)

    async def go() -> tuple[Any, list[Any]]:
        result = await planner.run("call everything", headers=who)
        return result, await store.list_events(tenant, result.run_id)

    result, events = asyncio.run(go())
    assert [t.name for t in llm.requests[0].tools] == expected  # the catalog the model saw
    assert sorted(catalog.ran) == sorted(expected)  # nothing outside the view ran
    outcomes = {s.tool: s.outcome for s in result.steps}
    assert outcomes == {n: "ok" if n in expected else "denied" for n in names}
    denied = sorted(e.data["tool"] for e in events if e.kind == "policy_denied")
    assert denied == sorted(set(names) - set(expected))
    for message in llm.requests[1].messages:
        if message["role"] == "tool" and outcomes[names[int(message["tool_call_id"][1:])]] != "ok":
            assert "is not available" in message["content"]
