"""The definition hash covers everything that changes what a call does, and no secret.

Before, it covered name, description and schema only: an approved ``http``
call ran against ``/refund`` after the manifest's ``path: /charge`` was edited.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.llm._types import LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, ToolSpec, canonical_json

BASE = "http://pay.test/api"
HTTP = """\
name: pay
transport: http
url: {url}
headers: {{{headers}}}
tools:
  charge:
    description: Charge the customer's card.
    method: {method}
    path: {path}
    query: {query}
    risk: {risk}
    idempotent: {idempotent}
    input_schema:
      type: object
      properties: {{amount: {{type: integer}}, dry_run: {{type: boolean}}}}
      required: [amount]
"""
DEFAULTS = {
    "url": BASE,
    "headers": "Authorization: 'Bearer ${PF_TEST_PAY_TOKEN}'",
    "method": "POST",
    "path": "/charge",
    "query": "[]",
    "risk": "high",
    "idempotent": "false",
}
POLICY = {
    "tenant": "acme",
    "allow": ["pay.*"],
    "approvals": [{"match": "pay.*", "approvers": ["role:admin"]}],
}
ALICE = Headers(tenant="acme", principal="alice")


def write(directory: Path, **changes: str) -> Path:
    (directory / "pay.yaml").write_text(HTTP.format(**{**DEFAULTS, **changes}), encoding="utf-8")
    return directory


async def spec_of(directory: Path) -> ToolSpec:
    async with ToolRegistry.from_dir(directory) as registry:
        (spec,) = await registry.list_tools()
    return spec


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_PAY_TOKEN", "tok-1")


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.post("/charge").mock(return_value=httpx.Response(200, json={"charged": True}))
        router.post("/refund").mock(return_value=httpx.Response(200, json={"refunded": True}))
        yield router


async def test_an_approved_call_does_not_run_after_its_path_changed_and_asks_again(
    tmp_path: Path, api: respx.MockRouter
) -> None:
    store = MemoryStore()
    policies = PolicySet.from_documents([POLICY])
    call = LLMToolCall(id="c1", name="pay.charge", arguments={"amount": 5})
    llm = ScriptedLLM(
        [
            LLMResponse(content=None, tool_calls=[call]),
            LLMResponse(
                content=None,
                tool_calls=[LLMToolCall(id="c2", name="pay.charge", arguments={"amount": 5})],
            ),
            {"content": "Done."},
        ]
    )
    write(tmp_path)
    async with ToolRegistry.from_dir(tmp_path) as registry:
        planner = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
        paused = await planner.run("Charge 5.", headers=ALICE)
    (pending,) = paused.pending_approvals
    await ApprovalService(store, policies).decide(
        tenant="acme", approval_id=pending.id, principal="bob", roles=["admin"], decision="approve"
    )
    write(tmp_path, path="/refund")  # the manifest is edited after the approval
    async with ToolRegistry.from_dir(tmp_path) as registry:
        planner = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
        again = await planner.resume(paused.run_id, headers=ALICE)
    assert [s.outcome for s in again.steps] == ["approval_void"]
    assert "definition of tool 'pay.charge' changed" in str(again.steps[0].result)
    assert not api.calls  # neither /charge nor /refund was called
    # The model asked again: a new approval request, bound to the new definition.
    assert again.status == "paused"
    (second,) = again.pending_approvals
    assert second.id != pending.id
    old = await store.get_approval("acme", pending.id)
    new = await store.get_approval("acme", second.id)
    assert new.tool_hash != old.tool_hash


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("path", "/refund"),
        ("method", "PUT"),
        ("url", "http://other.test/api"),
        ("query", "[dry_run]"),
        ("headers", "Authorization: 'Bearer ${PF_TEST_PAY_TOKEN}', X-Account: acme"),
        ("risk", "low"),  # lowering a risk must not keep an approval
        ("idempotent", "true"),
    ],
)
async def test_each_part_of_an_http_binding_changes_the_hash(
    tmp_path: Path, key: str, value: str
) -> None:
    before = await spec_of(write(tmp_path))
    after = await spec_of(write(tmp_path, **{key: value}))
    assert before.definition_hash != after.definition_hash


async def test_a_secret_value_never_enters_the_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await spec_of(write(tmp_path))
    monkeypatch.setenv("PF_TEST_PAY_TOKEN", "tok-2-rotated")
    after = await spec_of(write(tmp_path))
    assert before.definition_hash == after.definition_hash
    assert "tok-" not in canonical_json(after.binding)


async def test_mcp_server_identity_and_python_function_are_in_the_binding(tmp_path: Path) -> None:
    from penguiflow_agents.tools._configured import manifest_binding
    from penguiflow_agents.tools._manifest import SourceManifest

    def mcp(command: str, risk: str = "high") -> SourceManifest:
        return SourceManifest.model_validate(
            {
                "name": "srv",
                "transport": "mcp_stdio",
                "command": command.split(),
                "env": {"TOKEN": "${PF_TEST_PAY_TOKEN}"},
            }
        )

    a = manifest_binding(mcp("python -m good_server"), "echo")
    b = manifest_binding(mcp("python -m evil_server"), "echo")
    assert a != b and a["command"] == ["python", "-m", "good_server"]
    assert a["env_names"] == ["TOKEN"] and "tok-1" not in canonical_json(a)
    from penguiflow_agents import demo_tools
    from penguiflow_agents.tools import PythonToolSource

    (spec,) = [
        s
        for s in await PythonToolSource("files", [demo_tools.write_file]).list_tools()
        if s.name == "files.write_file"
    ]
    assert spec.binding == {
        "transport": "python",
        "module": "penguiflow_agents.demo_tools",
        "function": "write_file",
    }


async def test_mcp_tool_annotations_are_hashed(tmp_path: Path) -> None:
    """A server that flips a tool's destructiveHint changes the tool's hash."""
    import mcp.types as types

    from penguiflow_agents.tools._manifest import SourceManifest
    from penguiflow_agents.tools._mcp import MCPToolSource

    manifest = SourceManifest.model_validate(
        {"name": "srv", "transport": "mcp_stdio", "command": ["true"]}
    )
    source = MCPToolSource.from_manifest(manifest)
    tool = types.Tool(name="echo", input_schema={"type": "object"})
    safe = source._spec(
        tool.model_copy(update={"annotations": types.ToolAnnotations(destructive_hint=False)})
    )
    harmful = source._spec(
        tool.model_copy(update={"annotations": types.ToolAnnotations(destructive_hint=True)})
    )
    assert safe.definition_hash != harmful.definition_hash
